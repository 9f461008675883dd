"""Job parameters, one Pydantic schema per kind, shared by the JSON API and the launch form.

The hyper-parameters, their types, bounds and defaults come from trainer/config.py, so the
form, the API, the CLI and the trainer never disagree. The schema's defaults are the method's;
a job on the `tiny` preset (or a model trained from it) gets the preset's own for the fields
it leaves out (filled in by app/services/jobs.py). Job-level fields (which models, which
data, how many GPUs) are declared here.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, create_model, field_validator

from app.models.labeling import K_MAX, K_MIN
from app.schemas import INT32_MAX, NOT_A_SWITCH, DbId, IsoDateTime, Text, aware_utc
from trainer.config import PPOConfig, RMConfig, SampleConfig, SFTConfig


class JobKind(enum.StrEnum):
    """The kinds of job; what each one takes and does is in app/schemas/job_kinds.py."""

    sft = "sft"
    rm = "rm"
    ppo = "ppo"
    sample = "sample"
    export_snapshot = "export-snapshot"
    evaluation_sample = "evaluation-sample"
    rm_cv = "rm-cv"


_SNAPSHOT = "A frozen export snapshot; empty: the current data, with the filters below."
# a switch is JSON true or false, as the document says (lax Pydantic would read 0 and "yes");
# numbers stay lax: the launch form sends them as text
StrictSwitch = Annotated[bool, Field(strict=True)]
# a count: a number (text too, from the form), never true or false
Count = Annotated[int, NOT_A_SWITCH]


class DataFilters(BaseModel):
    """Which labeled data a training job reads when no snapshot is given (the split is the
    job's: train for training, val for validation)."""

    model_config = ConfigDict(extra="forbid")

    since: IsoDateTime | None = Field(None, title="Since", description="Created at or after (UTC).")
    until: IsoDateTime | None = Field(None, title="Until", description="Created before (UTC).")
    use_case: Text | None = Field(None, title="Use case", description="Only this use case.")
    labeler_id: DbId | None = Field(None, title="Labeler", description="Only this labeler's.")
    include_held_out_labelers: StrictSwitch = Field(
        False,
        title="Include held-out labelers",
        description="Held-out labelers' work is left out of training unless asked for.",
    )

    @field_validator("since", "until")
    @classmethod
    def _aware_utc(cls, value: datetime | None) -> datetime | None:
        # a time without a zone (the form's datetime-local) is read as UTC
        return aware_utc(value)


class JobOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # > 1: the worker runs the trainer under `accelerate launch` on that many processes
    num_gpus: Count = Field(
        1,
        ge=1,
        le=1024,
        title="GPUs",
        description="More than 1 runs the trainer under accelerate launch.",
    )
    filters: DataFilters = Field(default_factory=DataFilters)


# what each hyper-parameter is called on the launch form and in the OpenAPI document, and what
# it does: (title, description); "<Config>.<name>" overrides "<name>" for one kind
HYPERPARAMETER_DOCS: dict[str, tuple[str, str]] = {
    "seed": ("Random seed", "Same seed, same data order and initialisation."),
    "cpu": ("CPU only", "Train on the CPU even when an accelerator is present."),
    "mixed_precision": ("Mixed precision", "no, fp16 or bf16 (Accelerate)."),
    "gradient_accumulation_steps": (
        "Gradient accumulation",
        "Micro-batches summed into one optimiser step.",
    ),
    "max_length": ("Max length (tokens)", "Prompt + response tokens; longer ones are cut."),
    "use_lora": (
        "LoRA",
        "Train low-rank adapters (peft) instead of every weight; they are "
        "merged before saving, so the checkpoint stays a plain model.",
    ),
    "lora_r": ("LoRA rank", "Rank of the adapters."),
    "lora_alpha": ("LoRA alpha", "Scaling of the adapters (alpha / rank)."),
    "lora_dropout": ("LoRA dropout", "Dropout on the adapters' input."),
    "lora_target_modules": ("LoRA modules", "Modules that get adapters (peft's default)."),
    "epochs": ("Epochs", "Passes over the training data."),
    "SFTConfig.epochs": ("Epochs", "Passes over the demonstrations (the method: 16)."),
    "RMConfig.epochs": (
        "Epochs",
        "Passes over the comparisons; one, since the comparisons "
        "of a prompt are correlated and more passes overfit.",
    ),
    "lr": ("Learning rate", "Peak learning rate of AdamW (cosine decay)."),
    "PPOConfig.lr": ("Policy learning rate", "Learning rate of the policy."),
    "value_lr": ("Value learning rate", "Learning rate of the value head."),
    "batch_size": ("Batch size", "Examples per device per micro-batch."),
    "RMConfig.batch_size": (
        "Batch size",
        "Prompts (each with all K outputs) per device per micro-batch.",
    ),
    "SampleConfig.batch_size": ("Generation batch", "Sequences per generate() call."),
    "eval_batch_size": ("Evaluation batch size", "Examples per validation batch."),
    "warmup_ratio": ("Warm-up", "Share of the steps with a linear warm-up."),
    "min_lr_ratio": (
        "Minimum learning rate",
        "Floor of the cosine decay, as a share of the learning rate.",
    ),
    "weight_decay": ("Weight decay", "AdamW weight decay."),
    "max_grad_norm": ("Gradient clipping", "Largest gradient norm; larger ones are scaled."),
    "residual_dropout": ("Residual dropout", "The method: 0.2; empty keeps the checkpoint's."),
    "val_samples": (
        "Validation samples",
        "Validation prompts answered each epoch to score the checkpoint with the reward model.",
    ),
    "val_max_new_tokens": ("Validation answer length", "Tokens per validation answer."),
    "val_temperature": ("Validation temperature", "Sampling temperature of those answers."),
    "iterations": ("Iterations", "Rounds of rollout + optimisation."),
    "rollout_batch_size": ("Rollout batch", "Prompts answered per iteration, per device."),
    "minibatch_size": ("Minibatch", "Rollouts per optimisation step (at most the rollout batch)."),
    "ppo_epochs": ("PPO epochs", "Optimisation passes over each rollout batch."),
    "kl_coef": ("KL coefficient (beta)", "Per-token KL penalty from the SFT policy."),
    "adaptive_kl": ("Adaptive KL", "Adjust beta towards the KL target (Ziegler et al. 2019)."),
    "kl_target": ("KL target", "The KL the adaptive controller aims for."),
    "kl_horizon": ("KL horizon", "How fast the adaptive controller reacts (steps)."),
    "ptx_coef": (
        "Pre-training coefficient (gamma)",
        "More than 0 mixes pre-training gradients into PPO (PPO-ptx).",
    ),
    "ptx_batch_size": ("Pre-training batch", "Pre-training texts per optimisation step."),
    "gae_gamma": ("Discount (gamma)", "1: the bandit has one reward, at the end."),
    "gae_lambda": ("GAE lambda", "Bias/variance trade-off of the advantages."),
    "clip_coef": ("Policy clip (epsilon)", "PPO's ratio clip."),
    "vf_clip_coef": ("Value clip", "Clip of the value update."),
    "vf_coef": ("Value loss weight", "Weight of the value loss."),
    "ent_coef": ("Entropy bonus", "Weight of the entropy bonus."),
    "whiten_advantages": ("Whiten advantages", "Normalise advantages per batch."),
    "temperature": ("Temperature", "Sampling temperature; 0 is greedy."),
    "top_p": ("Top-p", "Nucleus sampling: the smallest set of tokens with this probability."),
    "max_new_tokens": ("Answer length (tokens)", "Most new tokens per answer."),
}


def _hyperparameter_fields(config_cls: type) -> dict[str, Any]:
    """The trainer config's fields with their types and bounds (annotated there: one source
    for the CLI, YAML files and this API) and the method's defaults. A field the request
    leaves out gets the defaults that fit the job's model (app/services/jobs.py)."""
    hints = typing.get_type_hints(config_cls, include_extras=True)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(config_cls):
        default = f.default if f.default is not dataclasses.MISSING else None
        hint: Any = hints[f.name]
        extra: dict[str, Any] = {}
        base = _plain_type(hint)
        if base in (int, float):
            hint = Annotated[hint, NOT_A_SWITCH]
        if base is str:
            hint = Text
        elif base is float:  # params are stored as JSON, which has no NaN or Infinity
            extra["allow_inf_nan"] = False
        elif base is bool:
            extra["strict"] = True  # JSON true or false (see StrictSwitch)
        elif base is int:
            # counts reach INTEGER columns (progress, metric steps): 32-bit on PostgreSQL
            extra["le"] = INT32_MAX
        title, description = HYPERPARAMETER_DOCS.get(
            f"{config_cls.__name__}.{f.name}", HYPERPARAMETER_DOCS.get(f.name, (None, None))
        )
        extra.update(title=title, description=description)
        fields[f.name] = (hint, Field(default, **extra))
    return fields


def _plain_type(hint: Any) -> Any:
    """int for Annotated[int, Ge(1)] and Annotated[int, ...] | None; other hints as they are."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = args[0] if len(args) == 1 else hint
    if typing.get_origin(hint) is typing.Annotated:
        hint = typing.get_args(hint)[0]
    return hint


def _hyperparameters(config_cls: type) -> type[BaseModel]:
    return create_model(
        f"{config_cls.__name__}Params",
        __config__=ConfigDict(extra="forbid"),
        **_hyperparameter_fields(config_cls),
    )


_SFTHyper = _hyperparameters(SFTConfig)
_RMHyper = _hyperparameters(RMConfig)
_PPOHyper = _hyperparameters(PPOConfig)
_SampleHyper = _hyperparameters(SampleConfig)


class SFTParams(JobOptions, _SFTHyper):  # type: ignore[misc, valid-type]
    """Fine-tune a base model on demonstrations."""

    base_model: Text | DbId = Field(
        title="Base model",
        description="A registered model version, or 'tiny', a hub ID or a local path.",
    )
    rm_model_version_id: DbId | None = Field(
        None,
        title="Reward model for checkpoint selection",
        description="Optional: keep the epoch whose validation answers this RM scores best.",
    )
    train_snapshot_id: DbId | None = Field(None, title="Training data", description=_SNAPSHOT)
    val_snapshot_id: DbId | None = Field(None, title="Validation data", description=_SNAPSHOT)

    @field_validator("base_model")
    @classmethod
    def _not_blank(cls, value: str | int) -> str | int:
        if isinstance(value, str):
            value = value.strip()
            if not value:
                raise ValueError("base_model must not be empty")
            if value.isascii() and value.isdigit():
                if int(value) > INT32_MAX:
                    raise ValueError(f"base_model: a model version id is at most {INT32_MAX}")
                return int(value)
        return value


class RMParams(JobOptions, _RMHyper):  # type: ignore[misc, valid-type]
    """Train a reward model from an SFT model on comparisons."""

    sft_model_version_id: DbId = Field(
        title="SFT model", description="The reward model starts from this SFT model."
    )
    train_snapshot_id: DbId | None = Field(None, title="Training data", description=_SNAPSHOT)
    val_snapshot_id: DbId | None = Field(None, title="Validation data", description=_SNAPSHOT)


class PPOParams(JobOptions, _PPOHyper):  # type: ignore[misc, valid-type]
    """PPO (PPO-ptx when ptx_coef > 0) from an SFT policy against a reward model."""

    sft_model_version_id: DbId = Field(
        title="Starting policy", description="The SFT (or PPO) policy PPO starts from."
    )
    rm_model_version_id: DbId = Field(title="Reward model", description="Scores the answers.")
    prompts_snapshot_id: DbId | None = Field(None, title="Prompts", description=_SNAPSHOT)
    # the method's PPO data set is API prompts only; False also uses labeler-written prompts
    api_prompts_only: StrictSwitch = Field(
        True,
        title="API prompts only",
        description="The method's PPO data set: customer prompts, no labeler-written ones.",
    )

    @field_validator("minibatch_size")
    @classmethod
    def _minibatch_fits_rollout(cls, value: int, info: ValidationInfo) -> int:
        rollout = info.data.get("rollout_batch_size")
        if rollout is not None and value > rollout:
            raise ValueError("minibatch_size must not exceed rollout_batch_size")
        return value


class SampleParams(JobOptions, _SampleHyper):  # type: ignore[misc, valid-type]
    """K completions per prompt from one or more policies, as new ranking tasks."""

    model_version_ids: list[DbId] = Field(
        min_length=1,
        title="Policies",
        description="Each answers every prompt; the K outputs are shared between them.",
    )
    k: Count = Field(
        ge=K_MIN, le=K_MAX, title="Outputs per prompt (K)", description="4 to 9 per task."
    )
    prompt_count: Count = Field(
        ge=1, le=100_000, title="Prompts", description="How many prompts to answer."
    )
    # explicit prompts; otherwise accepted prompts of `split` that have no ranking task yet
    prompt_ids: list[DbId] | None = None
    split: Literal["train", "val", "test"] = Field(
        "train", title="Split", description="Accepted prompts of it without a ranking task."
    )
    overlap: Count = Field(
        1, ge=1, le=20, title="Labelers per task", description="Distinct labelers per task."
    )
    hold_for_review: StrictSwitch = Field(
        True,
        title="Preview before labelers see them",
        description="Hold the new tasks until a researcher releases them on the job's page.",
    )

    @field_validator("model_version_ids")
    @classmethod
    def _distinct_versions(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise ValueError("model_version_ids repeats a version")
        return value


class EvaluationSampleParams(_SampleHyper):  # type: ignore[misc, valid-type]
    """One output per model version per prompt of an evaluation run, every output scored by
    its reward model; then the run's tasks. Created by POST /api/v1/evaluations."""

    evaluation_id: DbId
    prompt_ids: list[DbId] = Field(min_length=1)


class RmCvParams(JobOptions, _RMHyper):  # type: ignore[misc, valid-type]
    """How well a reward model generalises to labelers it never saw: k-fold cross-validation
    over groups of labelers, next to the labelers' own agreement (the ceiling)."""

    sft_model_version_id: DbId
    folds: Count = Field(5, ge=2, le=20)


class ExportSnapshotParams(BaseModel):
    """Freeze an export into a content-hashed snapshot file."""

    model_config = ConfigDict(extra="forbid")

    dataset: Literal["comparisons", "demonstrations", "prompts"]
    format: Literal["rankings", "pairs"] | None = None
    split: Literal["train", "val", "test"] | None = None
    filters: DataFilters = Field(default_factory=DataFilters)
    # for prompts: "ppo" is API prompts only
    prompts_dataset: Literal["ppo"] | None = None


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: JobKind
    params: dict[str, Any] = Field(default_factory=dict)


class SampledTasksOut(BaseModel):
    job_id: int
    # how many held tasks were released (or discarded)
    tasks: int


class JobCreated(BaseModel):
    job_id: int
    status: str


class Progress(BaseModel):
    step: int
    total: int
    fraction: float
    eta_s: float | None


class JobOut(BaseModel):
    job_id: int
    kind: str
    status: str
    progress: Progress
    # latest value of each metric (full series: GET /api/v1/jobs/{id}/metrics)
    metrics: dict[str, float]
    model_version_id: int | None
    error: str | None
    params: dict[str, Any]
    snapshot_ids: dict[str, int]
    log_tail: str
    cancel_requested: bool
    rerun_of: int | None
    created_by: str | None
    worker: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None


class ModelOut(BaseModel):
    model_version_id: int
    kind: str
    name: str
    parents: list[int]
    path: str
    metrics: dict[str, Any]
    snapshot_ids: dict[str, int]
    job_id: int | None
    is_current: bool
    created_at: datetime


class WorkerOut(BaseModel):
    hostname: str
    queues: str
    pid: int | None
    started_at: datetime
    last_seen: datetime
    alive: bool
