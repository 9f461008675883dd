"""How many values a JSON document holds, counted without parsing it.

Parsing JSON holds the web process (the decoder is C code that keeps the GIL), and its cost
follows the number of values it makes, not the bytes: 32 MiB of ``[[1],[1],…]`` (16 M
values) took 3.5 s to parse on this project's 2-core machine, 32 MiB of long strings 0.09 s.
A bulk route takes bodies of up to ``PREFLOOP_MAX_REQUEST_BYTES``, so the edge counts a large
body's values first (``PREFLOOP_MAX_JSON_VALUES``) and refuses one that holds too many before
anything parses it.

The count uses only bytes operations (C loops over the whole body, no Python per value):

- ``value_count(data)`` is exactly *values + empty containers* of a valid document (object
  keys are not values; a document's top value counts): every value but the top one is
  preceded, outside strings, by the ``,`` after its sibling or by the ``[``/``{`` that opens a
  non-empty container, so ``, [ {`` outside strings + 1 is that sum. Strings are found by
  their quotes once escaped backslashes and escaped quotes are removed (in JSON a backslash
  only occurs in a string, and always begins an escape).
- ``at_most(data, limit)`` answers ``value_count(data) <= limit`` without removing strings
  when it need not: a body with more than ``2 * limit`` strings holds more than ``limit``
  values (keys and string values together are at most twice the values), and one with at
  most ``limit`` of ``, [ {`` anywhere holds no more.

For invalid JSON the count is an upper bound of what a parser makes before the first error
(the same bytes up to it), which is all that matters for the cost.
"""

from __future__ import annotations

import re

_STRUCTURE = b'",[{'
_NOT_STRUCTURE = bytes(c for c in range(256) if c not in _STRUCTURE)
# a string once only quotes and structure characters are left
_STRING = re.compile(rb'"[^"]*"')


def _without_escaped_quotes(data: bytes) -> bytes:
    # left to right, as a parser pairs them: "\\\"" is an escaped backslash, then an escaped
    # quote; what is left of a backslash escapes something other than a quote
    return data.replace(b"\\\\", b"").replace(b'\\"', b"")


def _openers_and_commas(data: bytes) -> int:
    return data.count(b",") + data.count(b"[") + data.count(b"{")


def _outside_strings(plain: bytes) -> int:
    return _openers_and_commas(_STRING.sub(b"", plain.translate(None, _NOT_STRUCTURE))) + 1


def value_count(data: bytes) -> int:
    """Values + empty containers of the JSON document ``data`` (see the module's doc)."""
    return _outside_strings(_without_escaped_quotes(data))


def at_most(data: bytes, limit: int) -> bool:
    """Whether ``data`` holds at most ``limit`` JSON values (``value_count(data) <= limit``)."""
    plain = _without_escaped_quotes(data)
    if plain.count(b'"') // 2 > 2 * limit:
        return False
    if _openers_and_commas(plain) + 1 <= limit:
        return True
    return _outside_strings(plain) <= limit


def too_many_detail(limit: int, what: str = "the request body holds") -> str:
    return (
        f"{what} more than {limit} JSON values (PREFLOOP_MAX_JSON_VALUES); "
        "send them in smaller requests"
    )
