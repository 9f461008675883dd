"""Pydantic request and response models of the JSON API, one module per area."""

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field
from pydantic.config import JsonDict

# Row ids and counts are INTEGER columns: 32-bit on PostgreSQL (64-bit on SQLite). A larger
# number in a path, query or body makes the driver raise (NumericValueOutOfRange on
# PostgreSQL, OverflowError on SQLite past 64 bits), so every id the API accepts is bounded
# here and a bad one is a 422 on both databases alike.
INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1


def _not_a_switch(value: object) -> object:
    # lax Pydantic reads JSON true/false as 1/0; the document says a number, so they are a 422
    if isinstance(value, bool):
        raise ValueError("must be a number, not true or false")
    return value


# a number from a request body: not true or false (which lax Pydantic would read as 1 or 0)
NOT_A_SWITCH = BeforeValidator(_not_a_switch)


def _a_json_number(value: object) -> object:
    # JSON Schema's integer is any whole number, 9.0 too (Pydantic's strict mode refuses it)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a JSON number")
    return value


# a number where text is not accepted either (a setting sent by a client, not a form)
JSON_NUMBER = BeforeValidator(_a_json_number)
DbId = Annotated[int, Field(ge=INT32_MIN, le=INT32_MAX), NOT_A_SWITCH]
# a JSON object keyed by row id (object keys are strings): the document says which strings
ID_KEYS: JsonDict = {"propertyNames": {"pattern": "^-?[0-9]{1,9}$"}}


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL; rejecting it everywhere keeps both databases alike
    if "\x00" in value:
        raise ValueError("must not contain NUL characters (binary data, not text)")
    return value


# a string from a request that is stored or compared in the database
Text = Annotated[str, AfterValidator(_no_nul)]


def aware_utc(value: datetime | None) -> datetime | None:
    """``value`` with a zone (none is read as UTC, the zone every stored time is in). A time
    that leaves the calendar once converted to UTC (year 1 or 9999 with an offset) is a
    ValueError, so a 422, instead of an OverflowError where the database converts it."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range once converted to UTC") from None
    return value


def _not_a_number(value: object) -> object:
    # Pydantic also reads a number as Unix time; the API documents (and means) ISO 8601 only
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError("must be an ISO 8601 date-time, not a number")
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return value
        raise ValueError("must be an ISO 8601 date-time, not a number")
    return value


# a date-time from a request: ISO 8601 text (or a datetime), as the OpenAPI format says
IsoDateTime = Annotated[datetime, BeforeValidator(_not_a_number)]
