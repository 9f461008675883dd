"""JSON shapes of labeler quality: gold tasks, screening, agreement, labeler statistics,
and the overlap settings researchers change in the app (docs/quality.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.models.labeling import FlagName
from app.schemas import ID_KEYS, JSON_NUMBER, DbId, IsoDateTime, Text, aware_utc

# the overlap settings' ranges, for the settings in force and for a change alike
Share = Annotated[float, Field(ge=0.0, le=1.0)]
AgreementOverlap = Annotated[int, Field(ge=2, le=20)]
OverlapMax = Annotated[int, Field(ge=1, le=20)]
# a change sent by a client: a number that is a number (JSON true is not 1, "9" is not 9)
_STRICT = JSON_NUMBER


class OverlapSettings(BaseModel):
    """How many labelers a task gets; the environment gives the defaults (PREFLOOP_...)."""

    model_config = ConfigDict(extra="forbid")

    # share of new tasks (by prompt id) that need `agreement_overlap` labelers
    agreement_share: Share
    agreement_overlap: AgreementOverlap
    # a ranking task whose labelers agree less than this gets one more labeler ...
    adaptive_agreement_min: Share
    # ... up to this many labelers in all
    adaptive_overlap_max: OverlapMax


class OverlapSettingsIn(BaseModel):
    """A change to some of the overlap settings (the others stay), each within its range."""

    model_config = ConfigDict(extra="forbid")

    agreement_share: Annotated[Share, _STRICT] | None = None
    agreement_overlap: Annotated[AgreementOverlap, _STRICT] | None = None
    adaptive_agreement_min: Annotated[Share, _STRICT] | None = None
    adaptive_overlap_max: Annotated[OverlapMax, _STRICT] | None = None


class OverlapSettingsOut(OverlapSettings):
    # the settings changed in the app (the rest come from the environment)
    overridden: list[str]


# the flags each output should get, keyed by completion id (outputs left out: none)
ReferenceFlags = dict[DbId, list[FlagName]]


class GoldTaskIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt_id: DbId
    completion_ids: list[DbId]
    # tie groups, best first, every completion exactly once: [[3], [7, 5], [9]]
    reference_ranking: list[list[DbId]]
    reference_flags: ReferenceFlags | None = Field(default=None, json_schema_extra=ID_KEYS)
    # part of the screening set (labelers in screening receive only that set)
    screening: bool = False


class GoldFromTaskIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reference_ranking: list[list[DbId]]
    reference_flags: ReferenceFlags | None = Field(default=None, json_schema_extra=ID_KEYS)
    screening: bool = False


class GoldDemonstrationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt_id: DbId
    reference_text: Text
    # gold demonstrations are only served in screening, so they are part of its set
    screening: bool = True


class GoldTaskOut(BaseModel):
    task_id: int


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: Text = Field(default="", max_length=2000)
    # approve only: put the labeler in the held-out group (their work never trains a model)
    held_out: bool | None = None


class GroupIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    group: Literal["training", "held_out"]


class AgreementOut(BaseModel):
    pairwise_agreement: float | None
    ci95: list[float] | None
    # labeler pairs compared (two labelers on one task count once)
    pairs: int
    output_pairs: int
    tasks: int
    kendall_tau_b: float | None
    likert_alpha: float | None
    flag_kappa: dict[str, float | None]


class LabelerStatsOut(BaseModel):
    labeler_id: int
    username: str
    group: str
    status: str
    rankings: int
    demonstrations: int
    median_seconds: float | None
    median_demonstration_seconds: float | None
    skip_rate: float | None
    gold_accuracy: float | None
    gold_judgments: int
    # Cohen's kappa of their flags against the gold tasks' reference flags
    flag_kappa: float | None
    agreement_with_others: float | None
    # output pairs their agreement with others rests on
    agreement_pairs: int
    position_bias: float | None
    # how many standard deviations the first-shown-best count lies above chance
    position_bias_z: float | None
    contradiction_rate: float | None
    # ranked pairs with both Likert scores (what the contradiction rate rests on)
    likert_pairs: int
    untouched_rate: float | None
    # tasks submitted or skipped (what the skip rate rests on)
    finished: int
    # the figures that stand out (docs/quality.md "Outliers")
    outliers: list[str]


class QualityFilters(BaseModel):
    """Which judgments a figure is over: ``since`` inclusive, ``until`` exclusive (submission
    time), the prompts' use case, and the labelers' group."""

    model_config = ConfigDict(extra="forbid")

    since: IsoDateTime | None = Field(
        default=None, description="inclusive, ISO 8601 (UTC when no zone)"
    )
    until: IsoDateTime | None = Field(default=None, description="exclusive, ISO 8601; after since")
    use_case: Text | None = Field(
        default=None, min_length=1, max_length=64, description="only prompts of this use case"
    )
    group: Literal["training", "held_out"] | None = Field(
        default=None, description="training or held_out labelers only"
    )

    @field_validator("since", "until")
    @classmethod
    def _aware_utc(cls, value: datetime | None) -> datetime | None:
        return aware_utc(value)
