"""The domain: every rule lives here, called by both the HTML and the JSON routes."""


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
