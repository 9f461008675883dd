"""The domain: every rule lives here, called by both the HTML and the JSON routes."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

Model = TypeVar("Model", bound=BaseModel)
# where FastAPI found a request value: the first part of its error locations
REQUEST_SOURCES = frozenset({"body", "query", "path", "header", "cookie"})


class ServiceError(Exception):
    """An error the user caused; routes turn it into a 4xx with this message."""

    status_code = 400

    def __init__(self, detail: str, *, field: str | None = None, status_code: int | None = None):
        super().__init__(detail)
        self.detail = detail
        self.field = field
        if status_code is not None:
            self.status_code = status_code


class NotFound(ServiceError):
    status_code = 404


class Busy(ServiceError):
    """A shared resource is in use to its bound: 503 with Retry-After, nothing was done."""

    status_code = 503


class Conflict(ServiceError):
    status_code = 409


class Invalid(ServiceError):
    """Invalid input (422). ``errors`` keeps every Pydantic error (JSON-safe) when the
    problem came from a schema; the first names ``field`` and makes ``detail``."""

    status_code = 422

    def __init__(
        self,
        detail: str,
        *,
        field: str | None = None,
        status_code: int | None = None,
        errors: list[dict[str, Any]] | None = None,
    ):
        super().__init__(detail, field=field, status_code=status_code)
        self.errors = errors

    @classmethod
    def from_errors(
        cls,
        errors: Sequence[Mapping[str, Any]],
        *,
        prefix: str = "",
        default_field: str | None = None,
    ) -> Invalid:
        """The one conversion of Pydantic (or FastAPI request) errors into a 422: the first
        error names its dotted field and gives the message, all of them travel in ``errors``.
        ``prefix`` places them inside a larger body (``params.``); ``default_field`` names a
        whole-body error. A location starting with FastAPI's source (``body``, ``query``...)
        drops it: the field is what the client spelled."""
        err = errors[0]
        loc = [str(part) for part in err.get("loc", ())]
        source = loc[0] if loc and loc[0] in REQUEST_SOURCES else None
        if source is not None:
            loc = loc[1:]
            default_field = default_field or source
        if err.get("type") == "json_invalid":
            reason = (err.get("ctx") or {}).get("error", err.get("msg", ""))
            message = f"request body is not valid JSON ({reason})"
            return cls(message, field="body", errors=json_safe_errors(errors))
        dotted = ".".join(loc)
        field = f"{prefix}{dotted}" if dotted else (prefix.rstrip(".") or default_field)
        message = "unknown field" if err.get("type") == "extra_forbidden" else str(err["msg"])
        prefix_loc = [p for p in prefix.split(".") if p]
        return cls(
            f"{field}: {message}" if field else message,
            field=field,
            errors=json_safe_errors(errors, prefix_loc),
        )

    @classmethod
    def from_validation(
        cls, exc: ValidationError, *, prefix: str = "", default_field: str | None = None
    ) -> Invalid:
        """The first error of a Pydantic ``ValidationError`` as a 422 naming its field."""
        return cls.from_errors(exc.errors(), prefix=prefix, default_field=default_field)

    def error_list(self) -> list[dict[str, Any]]:
        """``errors``, or the one error this is when a rule (not a schema) raised it."""
        if self.errors is not None:
            return self.errors
        return invalid_error_list(self.detail, self.field)


def invalid_error_list(detail: str, field: str | None) -> list[dict[str, Any]]:
    """A rule's 422 in Pydantic's error shape (``loc`` from the dotted field)."""
    loc: list[str | int] = [int(p) if p.isdigit() else p for p in (field or "").split(".") if p]
    return [{"loc": loc, "msg": detail, "type": "value_error"}]


def validated(
    model: type[Model],
    data: Any,
    *,
    prefix: str = "",
    default_field: str | None = None,
) -> Model:
    """``model`` validated from ``data`` (or returned when it already is one); a 422 naming
    the first bad field otherwise."""
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise Invalid.from_validation(exc, prefix=prefix, default_field=default_field) from None


def json_safe_errors(
    errors: Iterable[Mapping[str, Any]], prefix: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """Pydantic's error list without the echoed input (possibly large) or the docs URL, with
    every context value something JSON can carry."""
    return [
        {
            "loc": [*prefix, *(_json_safe(p) for p in err.get("loc", ()))],
            "msg": str(err.get("msg", "")),
            "type": str(err.get("type", "value_error")),
            **(
                {"ctx": {k: _json_safe(v) for k, v in err["ctx"].items()}} if err.get("ctx") else {}
            ),
        }
        for err in errors
    ]


def _json_safe(value: Any) -> Any:
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    return str(value)
