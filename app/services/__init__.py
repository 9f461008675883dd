"""The domain: every rule lives here, called by both the HTML and the JSON routes."""

from __future__ import annotations

from pydantic import ValidationError


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


class Conflict(ServiceError):
    status_code = 409


class Invalid(ServiceError):
    status_code = 422

    @classmethod
    def from_validation(
        cls, exc: ValidationError, *, prefix: str = "", default_field: str | None = None
    ) -> Invalid:
        """The first error of a Pydantic ``ValidationError`` as a 422 naming its field;
        ``prefix`` places it inside a larger body (``params.``), ``default_field`` names a
        whole-body error."""
        err = exc.errors()[0]
        loc = ".".join(str(part) for part in err["loc"])
        field = f"{prefix}{loc}" if loc else (prefix.rstrip(".") or default_field)
        message = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        return cls(f"{field}: {message}" if field else message, field=field)
