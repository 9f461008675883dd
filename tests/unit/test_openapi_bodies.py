"""Bodies the OpenAPI document describes as one of several forms: what it accepts and refuses
is what the service accepts and refuses (Schemathesis generates from these schemas)."""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema_rs import Draft202012Validator  # Schemathesis validates with it too

from app.main import create_app

DOCUMENT = create_app().openapi()


def _accepts(component: str, body: Any) -> bool:
    root = {"$ref": f"#/components/schemas/{component}", "components": DOCUMENT["components"]}
    return Draft202012Validator(root).is_valid(body)


OUTPUTS = [{"prompt_id": 1, "text": "an answer"}]


@pytest.mark.parametrize(
    ("system", "valid"),
    [
        ({"model_version_id": 3}, True),
        ({"model_version_id": 3, "name": "policy"}, True),
        ({"name": "vendor", "outputs": OUTPUTS}, True),
        ({"name": "vendor", "outputs": OUTPUTS, "model_version_id": None}, True),
        # the service's 422s: both, neither, uploads without a name or without outputs
        ({"model_version_id": 3, "outputs": OUTPUTS}, False),
        ({}, False),
        ({"outputs": OUTPUTS}, False),
        ({"name": " ", "outputs": OUTPUTS}, False),
        ({"name": "vendor", "outputs": []}, False),
        ({"name": "vendor"}, False),
    ],
)
def test_a_system_is_a_version_or_uploads(system: dict[str, Any], valid: bool) -> None:
    assert _accepts("SystemIn", system) is valid
