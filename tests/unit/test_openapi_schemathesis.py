"""The OpenAPI document tells the truth: Schemathesis, with every check it has, against the app
as a researcher and as a labeler (bearer tokens), on SQLite and on PostgreSQL.

Every check runs (``call_and_validate``'s default: all of them): no 5xx, status codes, content
types, headers and bodies as declared, schema-valid requests accepted, schema-invalid ones
refused, 405 with ``Allow`` for methods a path does not have, and every operation behind a
role refusing a request without a token or with a bad one (``ignored_auth``). Bounded so the
suite stays quick (about 55 s per database on a quiet 2-core machine): few examples per
operation, fixed seeds, and a generous per-example deadline that only a hung request reaches.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from app.main import create_app
from tests.conftest import TEST_PASSWORD, _reset_caches, configure_env, truncate_all

# the document is the same for every caller; the app that answers is built per module below
schema = schemathesis.openapi.from_dict(create_app().openapi())
DEADLINE = timedelta(seconds=30)
BOUNDED = settings(
    max_examples=3,
    deadline=DEADLINE,
    suppress_health_check=list(HealthCheck),
    database=None,
    derandomize=True,
)


# Operations with a rule the service applies that OpenAPI cannot state, so a schema-valid
# request may be refused with a 422 naming the field: only ``positive_data_acceptance`` is
# off for them, every other check still runs on them. Each entry says which rule.
# Rules between two parameters: OpenAPI cannot state them for query parameters (each has a
# schema of its own), and the service keeps them as a 422 because they catch a client's mistake.
SINCE_BEFORE_UNTIL = "since must be earlier than until (a 422, not an empty result)"
EXPORT_PAIRS = f"{SINCE_BEFORE_UNTIL}; labeler or labeler_id, not both"
KNOWN_GAPS: dict[str, tuple[Any, str]] = {
    "GET /api/v1/export/comparisons": (
        positive_data_acceptance,
        f"{EXPORT_PAIRS}; a pair_id cursor '<group>:<n>' with format=pairs only",
    ),
    "GET /api/v1/export/demonstrations": (positive_data_acceptance, EXPORT_PAIRS),
    "GET /api/v1/export/prompts": (positive_data_acceptance, EXPORT_PAIRS),
    # (JSON Schema cannot compare two date-times of one body either)
    "POST /api/v1/export/snapshots": (positive_data_acceptance, SINCE_BEFORE_UNTIL),
    "GET /api/v1/quality/agreement": (positive_data_acceptance, SINCE_BEFORE_UNTIL),
    "GET /api/v1/labelers/stats": (positive_data_acceptance, SINCE_BEFORE_UNTIL),
    # Rules on stored data. Once the run has stored a job and a labeler's prompt (its task),
    # ids in a path name real rows whose kind decides what the request may be:
    "POST /api/v1/jobs/{job_id}/release": (
        positive_data_acceptance,
        "only a sample job makes tasks (another kind's job is a 422 naming job_id)",
    ),
    "POST /api/v1/jobs/{job_id}/discard": (
        positive_data_acceptance,
        "only a sample job makes tasks (another kind's job is a 422 naming job_id)",
    ),
    "PUT /api/v1/gold-tasks/{task_id}": (
        positive_data_acceptance,
        "only a ranking task becomes gold, and its reference ranks exactly that task's outputs",
    ),
    "POST /api/v1/tasks/{task_id}/submission": (
        positive_data_acceptance,
        "the form fits the stored task's kind (text for a demonstration, a ranking of exactly "
        "its outputs otherwise)",
    ),
    # The body is described whole (a union on kind, each kind's params),
    # but the ids and names in it must name stored rows of the right kind, which a schema
    # cannot say; an unknown one is a 422 naming the field (tests/unit/test_jobs_api.py)
    "POST /api/v1/jobs": (
        positive_data_acceptance,
        "params name stored model versions (of the kind's roles), snapshots and prompts, or a "
        "base model 'tiny' / under the model roots; PPO's config is checked whole (top_p 1)",
    ),
    "POST /api/v1/labeler-prompts": (
        positive_data_acceptance,
        "a use case must name one researchers keep (POST /api/v1/use-cases), not a fixed enum; "
        "the fields each kind needs are the document's oneOf",
    ),
    "POST /api/v1/evaluations": (
        positive_data_acceptance,
        "systems (a version or uploads, oneOf) name stored policies and accepted prompts, "
        "their names distinct; baseline is an index into systems (a rule between two fields)",
    ),
}


@pytest.fixture(scope="module")
def served(db_url: str, data_dir: Path) -> Iterator[tuple[FastAPI, dict[str, str]]]:
    """The app on each test database (SQLite, PostgreSQL), and a bearer token per role."""
    from app.db import get_sessionmaker
    from app.services.accounts import create_token, create_user

    with pytest.MonkeyPatch.context() as monkeypatch:
        configure_env(monkeypatch, data_dir, db_url)
        tokens = {}
        with get_sessionmaker()() as s:
            for role in ("researcher", "labeler"):
                create_user(s, f"schemathesis-{role}", TEST_PASSWORD, role)
                s.flush()
                tokens[role] = create_token(s, f"schemathesis-{role}", "schemathesis", None)[1]
            s.commit()
        yield create_app(), tokens
        _reset_caches()
        truncate_all(db_url)


def _check(case: Any, served: tuple[FastAPI, dict[str, str]], role: str) -> None:
    app, tokens = served
    gap = KNOWN_GAPS.get(case.operation.label)
    # the probes of `ignored_auth` (the same request without a token, with a bad one) go
    # through the case's schema's transport: the app's, not the network
    case.operation.schema.app = app
    case.call_and_validate(
        app=app,
        headers={"Authorization": f"Bearer {tokens[role]}"},
        excluded_checks=(gap[0] if isinstance(gap[0], list) else [gap[0]]) if gap else None,
        # as the deadline: only a hung request reaches it (the first prompt a run stores starts
        # the PII scanner, which took over the 10 s default on a loaded machine)
        timeout=DEADLINE.total_seconds(),
    )


@schema.parametrize()
@BOUNDED
def test_api_as_researcher(case: Any, served: tuple[FastAPI, dict[str, str]]) -> None:
    _check(case, served, "researcher")


@schema.parametrize()
@BOUNDED
def test_api_as_labeler(case: Any, served: tuple[FastAPI, dict[str, str]]) -> None:
    _check(case, served, "labeler")
