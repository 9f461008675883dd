"""Every kind of job in one place: what it takes, where it runs, what it reads and produces.

The jobs service (validation, reference checks, the queue), the worker (trainer config and
function, the model version to register), the launch form (title, model and snapshot choices),
and the CLI read ``JOB_KINDS``. Adding a kind: its name in ``JobKind`` and its parameters'
schema (app/schemas/jobs.py), its entry below, and the runner that does the work
(app/worker/runners.py).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, create_model

from app.schemas.jobs import (
    EvaluationSampleParams,
    ExportSnapshotParams,
    JobKind,
    PPOParams,
    RmCvParams,
    RMParams,
    SampleParams,
    SFTParams,
)
from trainer.config import PPOConfig, RMConfig, SampleConfig, SFTConfig

# model versions a policy may come from (labelers rank their outputs; one is current)
POLICY_KINDS = ("base", "sft", "ppo")
MODEL_KIND_LABELS = {
    "base": "base model",
    "sft": "SFT policy",
    "rm": "reward model",
    "ppo": "PPO policy",
}


@dataclass(frozen=True)
class JobKindSpec:
    title: str
    # what the API, the CLI and the launch form accept (validated once, in app/services/jobs)
    params: type[BaseModel]
    # "gpu" for training and sampling, "cpu" for the rest
    queue: Literal["cpu", "gpu"]
    # the trainer's config dataclass: its fields are the job's hyper-parameters
    trainer_config: type[Any] | None = None
    # "module:function" of the trainer entry point, imported only where it runs (torch is
    # heavy: the web app and the CLI never load it to validate or list a job)
    trainer_function: str | None = None
    # the model version a successful job registers ("sft", "rm", "ppo"), if any
    output_model: str | None = None
    # parameter -> model version kinds it may name (a str names a base model: "tiny", a hub
    # ID or a path); a list parameter names several
    model_refs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # parameter -> data set of the snapshot it may name (comparisons: in rankings format)
    snapshot_refs: Mapping[str, str] = field(default_factory=dict)
    # parameters listing prompt ids, each an accepted prompt
    prompt_refs: tuple[str, ...] = ()
    # the parameter naming the model whose defaults apply to hyper-parameters left out (the
    # tiny preset and models trained from it have their own; other models the method's)
    defaults_from: str | None = None
    # the trainer may run on several processes (`num_gpus` > 1: accelerate launch)
    distributed: bool = False
    # what its data filters select by creation time: labels, or prompts (nothing labeled yet)
    filters_select: Literal["labels", "prompts"] = "labels"
    # offered on the launch form and POST /api/v1/jobs; False: created by another service
    # (an evaluation's sampling), which may still be re-run
    launchable: bool = True
    # parameters its trainer does not use (shared config fields), left off its launch form
    unused_params: tuple[str, ...] = ()

    def hyperparameters(self, params: BaseModel) -> dict[str, Any]:
        """The part of ``params`` that is the trainer's config (its dataclass fields)."""
        if self.trainer_config is None:
            return {}
        names = {f.name for f in dataclasses.fields(self.trainer_config)}
        return {k: v for k, v in params.model_dump().items() if k in names}

    def trainer_config_of(self, params: BaseModel) -> Any:
        """The trainer's config object for ``params``."""
        if self.trainer_config is None:
            raise ValueError(f"{self.title} has no trainer config")
        return self.trainer_config.from_dict(self.hyperparameters(params))

    def trainer(self) -> Callable[..., Any]:
        """The trainer entry point (imports it)."""
        if self.trainer_function is None:
            raise ValueError(f"{self.title} calls no trainer function")
        module, _, name = self.trainer_function.partition(":")
        fn: Callable[..., Any] = getattr(importlib.import_module(module), name)
        return fn


JOB_KINDS: dict[JobKind, JobKindSpec] = {
    JobKind.sft: JobKindSpec(
        title="Supervised fine-tuning (SFT)",
        params=SFTParams,
        queue="gpu",
        trainer_config=SFTConfig,
        trainer_function="trainer.sft:train_sft",
        output_model="sft",
        model_refs={"base_model": POLICY_KINDS, "rm_model_version_id": ("rm",)},
        defaults_from="base_model",
        snapshot_refs={"train_snapshot_id": "demonstrations", "val_snapshot_id": "demonstrations"},
        distributed=True,
    ),
    JobKind.rm: JobKindSpec(
        title="Reward model (RM)",
        params=RMParams,
        queue="gpu",
        trainer_config=RMConfig,
        trainer_function="trainer.reward:train_reward_model",
        output_model="rm",
        model_refs={"sft_model_version_id": ("sft",)},
        defaults_from="sft_model_version_id",
        snapshot_refs={"train_snapshot_id": "comparisons", "val_snapshot_id": "comparisons"},
        distributed=True,
    ),
    JobKind.ppo: JobKindSpec(
        title="PPO / PPO-ptx",
        params=PPOParams,
        queue="gpu",
        trainer_config=PPOConfig,
        trainer_function="trainer.ppo:train_ppo",
        output_model="ppo",
        model_refs={"sft_model_version_id": ("sft", "ppo"), "rm_model_version_id": ("rm",)},
        defaults_from="sft_model_version_id",
        snapshot_refs={"prompts_snapshot_id": "prompts"},
        distributed=True,
        filters_select="prompts",
    ),
    JobKind.sample: JobKindSpec(
        title="Sample completions into ranking tasks",
        params=SampleParams,
        queue="gpu",
        trainer_config=SampleConfig,
        trainer_function="trainer.sample:sample_completions",
        model_refs={"model_version_ids": POLICY_KINDS},
        defaults_from="model_version_ids",
        prompt_refs=("prompt_ids",),
        filters_select="prompts",
        # sampling trains nothing
        unused_params=(
            "use_lora",
            "lora_r",
            "lora_alpha",
            "lora_dropout",
            "lora_target_modules",
            "gradient_accumulation_steps",
        ),  # fmt: skip
    ),
    JobKind.export_snapshot: JobKindSpec(
        title="Export snapshot",
        params=ExportSnapshotParams,
        queue="cpu",
    ),
    JobKind.evaluation_sample: JobKindSpec(
        title="Evaluation sampling",
        params=EvaluationSampleParams,
        queue="gpu",
        trainer_config=SampleConfig,
        trainer_function="trainer.sample:sample_completions",
        prompt_refs=("prompt_ids",),
        launchable=False,
    ),
    JobKind.rm_cv: JobKindSpec(
        title="Reward model cross-validation by labeler (rm-cv)",
        params=RmCvParams,
        queue="gpu",
        trainer_config=RMConfig,
        trainer_function="trainer.reward:train_reward_model",
        model_refs={"sft_model_version_id": ("sft",)},
        defaults_from="sft_model_version_id",
    ),
}
if set(JOB_KINDS) != set(JobKind):  # pragma: no cover - a programming error, caught at import
    raise RuntimeError(f"job kinds without a spec: {set(JobKind) - set(JOB_KINDS)}")


def _launch_request(kind: JobKind, spec: JobKindSpec) -> type[BaseModel]:
    """``{"kind": kind, "params": <the kind's params>}``: one member of ``JobRequest``."""
    params_required = any(f.is_required() for f in spec.params.model_fields.values())
    params: Any = (spec.params, ...) if params_required else (spec.params, Field(default={}))
    name = spec.params.__name__.removesuffix("Params")
    tag: Any = Literal[kind.value]
    return create_model(
        f"{name}JobRequest",
        __config__=ConfigDict(extra="forbid", title=f"{spec.title}: kind {kind.value}"),
        __doc__=spec.title,
        kind=(tag, ...),
        params=params,
    )


# What POST /api/v1/jobs accepts, as the OpenAPI document shows it: one member per launchable
# kind, told apart by ``kind``. The route reads ``JobCreate`` (``params`` any object) and the
# jobs service validates ``params`` against the kind's schema, so its 422s name
# ``params.<field>`` whatever the kind; this union is that same rule written as a schema.
JobRequest: Any = Annotated[
    Union[tuple(_launch_request(k, s) for k, s in JOB_KINDS.items() if s.launchable)],  # noqa: UP007
    Field(discriminator="kind"),
]


def spec_of(kind: str) -> JobKindSpec:
    """The spec of a stored job's kind (``KeyError`` for a kind no longer known)."""
    return JOB_KINDS[JobKind(kind)]
