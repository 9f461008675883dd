"""The error bodies every JSON route answers, as the OpenAPI document declares them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorOut(BaseModel):
    """Any 4xx/5xx: a message for a person and, when one input is to blame, its field."""

    detail: str = Field(description="what went wrong, for a person to read")
    field: str | None = Field(
        default=None, description="the dotted input field to blame (`prompts.0.text`), if any"
    )


class ValidationErrorItem(BaseModel):
    """One Pydantic error, as Pydantic reports it (without the echoed input)."""

    loc: list[str | int] = Field(description="where: `body`/`query`/`path` then the field path")
    msg: str
    type: str
    ctx: dict[str, Any] | None = None


class ValidationErrorOut(BaseModel):
    """Every 422: the first problem as ``detail`` and ``field``, all of them in ``errors``."""

    detail: str = Field(description="the first problem, prefixed by its field")
    field: str | None = Field(description="the dotted field of the first problem, or null")
    errors: list[ValidationErrorItem] = Field(description="every problem found")
