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


PAIR = {"query": "2 + 2", "response": "4"}
SPARE = {"query": "", "response": " "}


@pytest.mark.parametrize(
    ("prompt", "valid"),
    [
        ({"kind": "plain", "text": "Write a haiku."}, True),
        ({"kind": "plain", "text": "Write a haiku.", "use_case": None}, True),
        ({"kind": "use_case", "text": "Write a haiku.", "use_case": "Generation"}, True),
        ({"kind": "few_shot", "instruction": "Add.", "examples": [PAIR, PAIR]}, True),
        ({"kind": "few_shot", "instruction": "Add.", "examples": [PAIR, SPARE, PAIR]}, True),
        # the service's 422s: each kind's own fields, blank or missing
        ({"kind": "plain"}, False),
        ({"kind": "plain", "text": "  "}, False),
        ({"kind": "use_case", "text": "Write a haiku."}, False),
        ({"kind": "few_shot", "instruction": "Add.", "examples": [PAIR, SPARE]}, False),
        ({"kind": "few_shot", "instruction": " ", "examples": [PAIR, PAIR]}, False),
        ({"kind": "few_shot", "instruction": "Add.", "examples": [PAIR] * 11}, False),
        (
            {
                "kind": "few_shot",
                "instruction": "Add.",
                "examples": [PAIR, PAIR, {"query": "3 + 3", "response": ""}],
            },
            False,
        ),  # fmt: skip
        ({"kind": "haiku", "text": "Write a haiku."}, False),
    ],
)
def test_a_labeler_prompt_has_its_kind_s_fields(prompt: dict[str, Any], valid: bool) -> None:
    assert _accepts("LabelerPromptIn", prompt) is valid


@pytest.mark.parametrize("method", ["post", "put"])
def test_a_submission_may_be_a_409(method: str) -> None:
    # a task already finished, or edited once it is closed (app/services/labeling.py)
    operation = DOCUMENT["paths"]["/api/v1/tasks/{task_id}/submission"][method]
    assert "409" in operation["responses"]


def test_who_may_call_is_declared() -> None:
    # a bearer token or the browser's session cookie, on every operation behind a role
    schemes = DOCUMENT["components"]["securitySchemes"]
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer", "description": "an API token"}
    assert schemes["session"]["in"] == "cookie"
    me = DOCUMENT["paths"]["/api/v1/me"]["get"]
    assert me["security"] == [{"bearer": []}, {"session": []}]
    assert "security" not in DOCUMENT["paths"]["/healthz"]["get"]


def test_a_saturated_database_is_a_declared_503() -> None:
    # app/middleware/gate.py's DatabaseBusy answers any operation that reads the database
    for path, operations in DOCUMENT["paths"].items():
        for method, operation in operations.items():
            if path != "/healthz":
                assert "503" in operation["responses"], (method, path)


@pytest.mark.parametrize("action", ["cancel", "rerun", "release", "discard"])
def test_a_job_action_may_be_a_409(action: str) -> None:
    # a job finished (cancel), not failed or cancelled (rerun), holding no tasks (release)
    assert "409" in DOCUMENT["paths"][f"/api/v1/jobs/{{job_id}}/{action}"]["post"]["responses"]


def test_the_kinds_a_labeler_may_ask_for_are_listed() -> None:
    from app.services.task_kinds import SHOWN_KINDS

    (kind,) = DOCUMENT["paths"]["/api/v1/tasks/next"]["get"]["parameters"]
    assert kind["name"] == "kind" and set(kind["schema"]["enum"]) == {"", *SHOWN_KINDS}


def _answers(path: str, status: int, body: Any) -> bool:
    """Whether ``body`` is what the document declares for ``status`` of GET ``path``."""
    response = DOCUMENT["paths"][path]["get"]["responses"][str(status)]
    schema = dict(response["content"]["application/json"]["schema"])
    schema["components"] = DOCUMENT["components"]
    return Draft202012Validator(schema).is_valid(body)


def test_a_degraded_health_check_answers_its_declared_body(client, monkeypatch) -> None:
    """An unreachable broker: 503 with the health report, as the document says (it declared
    the error body, which /healthz never sends for this)."""
    from app.config import get_settings

    monkeypatch.setenv("PREFLOOP_BROKER_URL", "redis://127.0.0.1:1/0")
    get_settings.cache_clear()
    r = client.get("/healthz")
    assert r.status_code == 503 and r.json()["status"] == "degraded"
    assert r.json()["broker"]["ok"] is False
    assert _answers("/healthz", 503, r.json())
    assert _answers("/healthz", 503, {"detail": "the database is busy; retry in a moment"})
