"""Request and response bodies of the prompt intake and curation API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.schemas import INT32_MAX, INT32_MIN, Text

MAX_PROMPTS_PER_CALL = 1000
# query/response pairs a few-shot prompt may hold
MAX_FEW_SHOT_EXAMPLES = 10


class PromptIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # any JSON value: a non-string is answered per item as "rejected", not as a 422
    text: Any = Field(description="The prompt text.")
    user_id: str = Field(min_length=1, max_length=255, description="The customer's user ID.")
    external_id: str | None = Field(default=None, max_length=255)
    use_case: str | None = None
    metadata: dict[str, Any] | None = None


class IngestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompts: list[PromptIn] = Field(min_length=1, max_length=MAX_PROMPTS_PER_CALL)


class IngestResult(BaseModel):
    external_id: str | None
    status: Literal["accepted", "duplicate", "over_cap", "rejected"]
    prompt_id: int | None
    split: Literal["train", "val", "test"] | None
    reason: str | None


class IngestResponse(BaseModel):
    results: list[IngestResult]


class PromptOut(BaseModel):
    prompt_id: int
    text: str
    split: str | None
    source: str
    kind: str
    user_id: str
    external_id: str | None
    use_case: str | None
    status: str
    reason: str | None
    duplicate_of: int | None
    pii: dict[str, int] | None = Field(description="Entity type -> count; null when not scanned.")
    structure: dict[str, Any] | None
    metadata: dict[str, Any] | None
    created_at: datetime


class FewShotExample(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: Text
    response: Text


_NOT_BLANK = {"type": "string", "pattern": r"\S"}
_BLANK = {"type": "string", "pattern": r"^\s*$"}


def _one_form_per_kind(schema: dict[str, Any]) -> None:
    """The document's ``oneOf`` on ``kind``: what each kind needs, as the service checks it
    (app/services/intake_labeler.py, a 422 naming the field). Plain: a text; use case: a text
    and the use case; few-shot: an instruction and 2..10 query/response pairs, each both
    written (pairs left wholly blank, as a form's spare rows, are dropped). A kind's unused
    fields may be sent and are ignored."""
    props = schema.pop("properties")
    schema.pop("additionalProperties", None)
    examples = props["examples"]
    pair = {"$ref": examples["items"]["$ref"]}
    written = {"allOf": [pair, {"properties": {"query": _NOT_BLANK, "response": _NOT_BLANK}}]}
    spare = {"allOf": [pair, {"properties": {"query": _BLANK, "response": _BLANK}}]}
    needs: dict[str, dict[str, Any]] = {
        "plain": {"text": _NOT_BLANK},
        "use_case": {"text": _NOT_BLANK, "use_case": _NOT_BLANK},
        "few_shot": {
            "instruction": _NOT_BLANK,
            "examples": {
                "type": "array",
                "items": {"anyOf": [written, spare]},
                "contains": written,
                "minContains": 2,
                "maxContains": MAX_FEW_SHOT_EXAMPLES,
            },
        },
    }
    schema["oneOf"] = [
        {
            "title": f"{kind} prompt",
            "type": "object",
            "properties": {**props, "kind": {"const": kind}, **own},
            "required": ["kind", *own],
            "additionalProperties": False,
        }
        for kind, own in needs.items()
    ]


class LabelerPromptIn(BaseModel):
    """A labeler-written prompt: plain, few-shot (instruction + examples) or for a use case."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_one_form_per_kind)

    kind: Literal["plain", "few_shot", "use_case"]
    text: Text = ""
    instruction: Text = ""
    examples: list[FewShotExample] = Field(default_factory=list)
    use_case: Text | None = None


class LabelerPromptOut(BaseModel):
    result: IngestResult
    prompt: PromptOut | None


class PromptUseCaseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    use_case: Text | None


class PromptUseCaseOut(BaseModel):
    """What a labeler's task page shows of the change: nothing else of the stored prompt."""

    prompt_id: int
    use_case: str | None


class UseCaseOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str
    position: int
    active: bool


class UseCaseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Text = Field(min_length=1, max_length=64)
    description: Text = ""


class UseCasePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Text | None = Field(default=None, min_length=1, max_length=64)
    description: Text | None = None
    active: bool | None = None
    position: int | None = Field(default=None, ge=INT32_MIN, le=INT32_MAX)


class SplitPinIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    split: Literal["train", "val", "test"]
    # the account that ingested this user ID (its username); "" for the command-line
    # import; absent: the caller's own account
    client: Text | None = Field(default=None, max_length=64)


class SplitPinOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    client: str
    user_id: str
    split: str
    created_at: datetime
    moved: int | None = Field(default=None, description="Prompts moved by this pin.")
