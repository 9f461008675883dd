"""app.json_values: a JSON body's values counted without parsing it (the edge refuses a bulk
body that would hold the web process parsing millions of tiny values)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.json_values import at_most, value_count

# strings full of what the count must not mistake for structure
TRICKY = st.text(alphabet=st.sampled_from(list('ab ,[]{}:"\\\n\té€\U0001f600')), max_size=12)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TRICKY
DOCUMENTS = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(TRICKY, inner, max_size=5),
    max_leaves=40,
)


def values_and_empty_containers(value: Any) -> int:
    """What a parser makes, walked: every value once, and an empty container once more."""
    if isinstance(value, list):
        return 1 + (sum(map(values_and_empty_containers, value)) if value else 1)
    if isinstance(value, dict):
        return 1 + (sum(map(values_and_empty_containers, value.values())) if value else 1)
    return 1


@settings(max_examples=300, deadline=None)
@given(DOCUMENTS, st.booleans(), st.sampled_from([None, 2]))
def test_the_count_is_what_a_parser_makes(document, ascii_only, indent) -> None:
    data = json.dumps(document, ensure_ascii=ascii_only, indent=indent).encode()
    expected = values_and_empty_containers(json.loads(data))
    assert value_count(data) == expected
    # the shortcuts agree with the count on either side of the limit
    for limit in {0, 1, expected // 2, expected - 1, expected, expected + 1, 2 * expected}:
        assert at_most(data, limit) == (expected <= limit), limit


def test_strings_and_escapes_are_not_counted_as_structure() -> None:
    assert value_count(b'{"a, [b": "c{,", "d": "\\"[,", "e": "\\\\", "f": [1, "]"]}') == 7
    assert value_count(b'"\\\\\\"[,{"') == 1  # an escaped backslash, then an escaped quote
    assert value_count(b"[]") == 2 and value_count(b"{}") == 2 and value_count(b"1") == 1


def test_the_shapes_that_held_the_web_process() -> None:
    # 32 MiB of each took 0.5-3.5 s to parse; counted, each is far over any sane limit
    for item in (b"[1]", b"1", b'"a"', b"{}", b'{"a":1}'):
        body = b'{"prompts": [' + b",".join([item] * 100_000) + b"]}"
        assert not at_most(body, 50_000), item
        assert at_most(body, value_count(body)), item
    # one long string is one value, however many escapes or commas it holds
    assert at_most(b'{"text": "' + b"\\n,[{" * 100_000 + b'"}', 2)


@pytest.fixture
def max_json_values(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    from app.config import get_settings

    monkeypatch.setenv("PREFLOOP_MAX_JSON_VALUES", "1000")
    get_settings.cache_clear()
    yield 1000
    monkeypatch.undo()
    get_settings.cache_clear()


def test_the_evaluation_forms_outputs_are_counted_before_they_are_parsed(max_json_values) -> None:
    from starlette.datastructures import FormData

    from app.schemas.evaluations import MAX_OUTPUTS
    from app.services import Invalid
    from app.web.evaluations import payload_from_form

    def form(outputs: str) -> FormData:
        return FormData(
            [("upload_0_name", "vendor"), ("upload_0_outputs", outputs), ("baseline", "upload:0")]
        )

    row = '{"prompt_id": 1, "text": "a, [b] {c}"}'
    # 3 values a row, as JSON lines or as one array
    for outputs in ("\n".join([row] * 334), "[" + ",".join([row] * 334) + "]"):
        with pytest.raises(Invalid, match="these outputs hold more than 1000 JSON values"):
            payload_from_form(form(outputs))
    for outputs in ("\n".join([row] * 333), "[" + ",".join([row] * 333) + "]"):
        assert len(payload_from_form(form(outputs))["systems"][0]["outputs"]) == 333
    # more lines than a system may have outputs: refused before any line is parsed
    with pytest.raises(Invalid, match=f"at most {MAX_OUTPUTS} outputs per system"):
        payload_from_form(form("\n".join(["1"] * (MAX_OUTPUTS + 1))))
