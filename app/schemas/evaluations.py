"""JSON shapes of evaluations: creating a run, its results, the leaderboard."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.models.evaluation import Judges
from app.models.labeling import K_MAX
from app.schemas import DbId, Text

MAX_SYSTEMS = K_MAX
MAX_OUTPUTS = 10_000
MAX_PROMPTS = 10_000


class UploadedOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt_id: DbId
    text: Text


def _version_or_uploads(schema: dict[str, Any]) -> None:
    """The document's ``oneOf``: a model version (``name`` optional, no ``outputs``) or an
    external system (a name that is not blank and at least one output, no version); the
    service answers the same rule with a 422 naming ``systems.<i>``. Null stands for absent."""
    props = schema.pop("properties")
    schema.pop("additionalProperties", None)
    null = {"type": "null"}

    def not_null(prop: dict[str, Any]) -> dict[str, Any]:
        return dict(next(o for o in prop["anyOf"] if o.get("type") != "null"))

    name = not_null(props["name"]) | {"pattern": r"\S"}
    outputs = not_null(props["outputs"]) | {"minItems": 1}
    schema["oneOf"] = [
        {
            "title": "model version",
            "type": "object",
            "properties": {
                "name": props["name"],
                "model_version_id": not_null(props["model_version_id"]),
                "outputs": null,
            },
            "required": ["model_version_id"],
            "additionalProperties": False,
        },
        {
            "title": "uploaded outputs",
            "type": "object",
            "properties": {"name": name, "model_version_id": null, "outputs": outputs},
            "required": ["name", "outputs"],
            "additionalProperties": False,
        },
    ]


class SystemIn(BaseModel):
    """A registered model version (``model_version_id``: its outputs are sampled) or an
    external system's outputs (``name`` + ``outputs``)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_version_or_uploads)

    name: Text | None = Field(None, min_length=1, max_length=255)
    model_version_id: DbId | None = None
    outputs: list[UploadedOutput] | None = Field(None, max_length=MAX_OUTPUTS)


class SamplingIn(BaseModel):
    """How the model versions' outputs are sampled (trainer/config.py's SampleConfig)."""

    model_config = ConfigDict(extra="forbid")

    max_new_tokens: int = Field(128, ge=1, le=4096)
    temperature: float = Field(1.0, ge=0, le=10, allow_inf_nan=False)
    top_p: float = Field(1.0, gt=0, le=1, allow_inf_nan=False)
    max_length: int = Field(512, ge=8, le=32768)
    batch_size: int = Field(16, ge=1, le=1024)
    seed: int = Field(0, ge=0, le=2**31 - 1)


class EvaluationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Text = Field(min_length=1, max_length=255)
    systems: list[SystemIn] = Field(min_length=2, max_length=MAX_SYSTEMS)
    # index into systems
    baseline: int = Field(0, ge=0, le=MAX_SYSTEMS - 1)
    # omitted: the prompts of the uploaded outputs
    prompt_count: int | None = Field(None, ge=1, le=MAX_PROMPTS)
    split: Literal["train", "val", "test"] = "test"
    use_case: Text | None = Field(None, max_length=64)
    judges: Judges = Judges.any
    overlap: int = Field(1, ge=1, le=5)
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    # the reward model whose view of the outputs is reported (default: a PPO system's RM)
    rm_model_version_id: DbId | None = None
    sampling: SamplingIn = Field(default_factory=lambda: SamplingIn.model_validate({}))


class EvaluationCreated(BaseModel):
    evaluation_id: int
    job_id: int | None


class TaskCounts(BaseModel):
    total: int
    judged: int
    judgments: int


class SystemResult(BaseModel):
    name: str
    model_version_id: int | None = None
    is_baseline: bool = False
    judgments: int
    prompts: int
    win_rate: float | None
    win_rate_ci95: list[float] | None
    likert_mean: float | None
    likert_ci95: list[float] | None
    likert_judgments: int
    likert_distribution: dict[str, int]
    flag_rates: dict[str, float | None]
    # the reward model's and the KL-to-SFT view of the same outputs
    rm_score_mean: float | None = None
    kl_mean: float | None = None
    outputs: int = 0


class RmView(BaseModel):
    model_version_id: int
    # pairwise agreement of the RM's order with the judges' (ties count half)
    agreement_with_judges: float | None
    agreement_ci95: list[float] | None
    judgments: int


class EvaluationOut(BaseModel):
    evaluation_id: int
    name: str
    status: Literal["sampling", "judging", "done", "failed"]
    error: str | None
    job_id: int | None
    judges: str
    overlap: int
    split: str
    use_case: str | None
    prompt_count: int | None
    seed: int
    created_at: datetime
    tasks: TaskCounts
    baseline: str
    systems: list[SystemResult]
    by_use_case: dict[str, list[SystemResult]]
    by_judges: dict[str, list[SystemResult]]
    rm: RmView | None


class EvaluationListItem(BaseModel):
    evaluation_id: int
    name: str
    status: str
    baseline: str
    systems: list[str]
    tasks: TaskCounts
    created_at: datetime


class Standing(BaseModel):
    name: str
    model_version_id: int | None
    # win probability against an average system of the board
    strength: float
    ci95: list[float] | None
    # log-strength: P(a beats b) = sigmoid(logit_a - logit_b)
    logit: float
    judgments: int
    evaluations: int
