"""JSON shapes of the labeling API: completions, ranking tasks, the next task, submissions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.schemas import ID_KEYS, INT32_MAX, DbId, Text


class CompletionIn(BaseModel):
    text: Text
    origin: Text
    model_version_id: DbId | None = None


class CompletionsIn(BaseModel):
    prompt_id: DbId
    completions: list[CompletionIn]


class CompletionOut(BaseModel):
    completion_id: int
    text: str
    origin: str


class CompletionsOut(BaseModel):
    completions: list[CompletionOut]


class RankingTaskIn(BaseModel):
    prompt_id: DbId
    completion_ids: list[DbId]
    # omitted: 1, or `agreement_overlap` for the configured share of prompts
    overlap: int | None = None


class RankingTaskOut(BaseModel):
    task_id: int
    kind: str
    prompt_id: int
    completion_ids: list[int]
    k: int
    overlap: int
    status: str


class PromptOut(BaseModel):
    prompt_id: int
    text: str
    kind: str
    # few-shot prompts: {"instruction", "examples": [{"query", "response"}]}
    structure: dict[str, Any] | None = None
    use_case: str | None = None


class ShownCompletion(BaseModel):
    completion_id: int
    text: str


class NextTaskOut(BaseModel):
    task_id: int
    # demonstration, ranking or evaluation: which form to fill
    kind: str
    prompt: PromptOut
    # rankings and evaluations, in the order shown to this labeler (stored with the assignment)
    completions: list[ShownCompletion] | None = None
    # every output needs a 1-7 Likert score (evaluations)
    likert_required: bool = False
    lock_expires_at: datetime


class Rating(BaseModel):
    model_config = ConfigDict(extra="forbid")

    likert: int | None = None
    flags: list[str] = Field(default_factory=list)


class Skip(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Text = Field(json_schema_extra={"pattern": r"\S"})  # not blank (the service says so)


SUBMISSION_FORMS = {"text": ["text"], "ranking": ["ranking", "ratings"], "skip": ["skip"]}


def _one_of_three_forms(schema: dict[str, Any]) -> None:
    """The document says what ``submit`` accepts: exactly one of the three forms (``{}`` and
    ``{"text", "skip"}`` are not a submission), ``ratings`` only beside a ``ranking``, and
    text that is not blank."""
    _one_of_forms(schema, SUBMISSION_FORMS)


def _one_of_two_forms(schema: dict[str, Any]) -> None:
    """What ``revise`` accepts: a text or a ranking, never a skip (``skip`` may only be null)."""
    _one_of_forms(schema, {k: v for k, v in SUBMISSION_FORMS.items() if k != "skip"})


def _one_of_forms(schema: dict[str, Any], forms: dict[str, list[str]]) -> None:
    props = schema["properties"]
    variants = []
    for form, own in forms.items():
        variant = {
            k: v for k, v in props.items() if k not in ("text", "ranking", "ratings", "skip")
        }
        for key in ("text", "ranking", "ratings", "skip"):
            # another form's key may be sent as null (the service reads it as absent)
            variant[key] = props[key] if key in own else {"type": "null"}
        variant[form] = _not_null(props[form])
        variants.append(
            {
                "title": f"{form} submission",
                "type": "object",
                "properties": variant,
                "required": [form],
                "additionalProperties": False,
            }
        )
    schema.pop("properties")
    schema.pop("additionalProperties", None)
    schema["oneOf"] = variants


def _not_null(prop: dict[str, Any]) -> dict[str, Any]:
    options = [o for o in prop.get("anyOf", [prop]) if o.get("type") != "null"]
    chosen = dict(options[0])
    if chosen.get("type") == "string":
        chosen["pattern"] = r"\S"  # not blank
    return chosen


class SubmissionIn(BaseModel):
    """Exactly one of ``text`` (demonstration), ``ranking`` (+ ``ratings``) or ``skip``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_one_of_three_forms)

    text: Text | None = None
    # tie groups, best first: [[3], [7, 5], [9]]
    ranking: list[list[DbId]] | None = None
    # keyed by completion id (JSON object keys are strings)
    ratings: dict[DbId, Rating] | None = Field(default=None, json_schema_extra=ID_KEYS)
    skip: Skip | None = None
    # a ranking left exactly in the order shown, with no score or flag, is refused as
    # untouched unless the client confirms that the shown order is the labeler's answer
    confirmed_order: bool = False
    # measured by the page; the server uses the time since assignment when absent
    time_spent_ms: int | None = Field(default=None, ge=0, le=INT32_MAX)


class RevisionIn(SubmissionIn):
    """A replacement for your own submission: ``text`` (demonstration) or ``ranking``
    (+ ``ratings``); a skip cannot be edited (the service answers 422 naming ``skip``)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_one_of_two_forms)


class SubmissionOut(BaseModel):
    task_id: int
    kind: str
    status: str
    demonstration_id: int | None = None
    ranking_id: int | None = None
    # true when this repeated an earlier identical submission (nothing new was stored)
    replayed: bool = False
