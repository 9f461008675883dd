"""Concurrent ingest from threads with separate sessions: the cap and dedup still hold.

Runs on both backends; PostgreSQL is the one where transactions really overlap (row locks and
ON CONFLICT do the work there), SQLite serialises writers.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from app.config import get_settings
from app.models import DedupKey, Prompt, UserQuota
from tests.conftest import truncate_all

CAP = 5


@pytest.fixture
def concurrent_env(app_env: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("PREFLOOP_PROMPTS_PER_USER_CAP", str(CAP))
    # the filter is exercised elsewhere; here the race is what matters
    monkeypatch.setenv("PREFLOOP_PII_SPLITS", "[]")
    monkeypatch.setenv("PREFLOOP_DEMONSTRATION_SPLITS", "[]")  # no split labeled unscanned
    get_settings.cache_clear()
    return app_env


def run_threads(batches: list[list[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
    from app.db import get_sessionmaker

    start = threading.Barrier(len(batches))
    results: list[Any] = [None] * len(batches)

    def work(n: int) -> None:
        from app.services.intake import ingest_prompts

        with get_sessionmaker()() as session:
            start.wait()
            try:
                results[n] = ingest_prompts(session, batches[n])
            except Exception as exc:  # reported below, on the main thread
                results[n] = exc

    threads = [threading.Thread(target=work, args=(n,)) for n in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    errors = [r for r in results if isinstance(r, Exception)]
    assert not errors, errors
    return results


@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    threads=st.integers(min_value=2, max_value=6),
    per_thread=st.integers(min_value=1, max_value=12),
    users=st.integers(min_value=1, max_value=3),
)
def test_cap_never_exceeded_under_concurrency(
    concurrent_env: str, threads: int, per_thread: int, users: int
) -> None:
    from app.db import get_sessionmaker

    truncate_all(concurrent_env)
    batches = [
        [
            {"text": f"Thread {t} prompt {n}: a distinct question", "user_id": f"user{n % users}"}
            for n in range(per_thread)
        ]
        for t in range(threads)
    ]
    results = run_threads(batches)
    sent = Counter(item["user_id"] for batch in batches for item in batch)
    accepted: Counter[str] = Counter()
    for batch, answer in zip(batches, results, strict=True):
        for item, result in zip(batch, answer, strict=True):
            accepted[item["user_id"]] += result["status"] == "accepted"
            assert result["status"] in {"accepted", "over_cap"}
    # exactly the cap (or everything sent, if less), never more
    assert accepted == Counter({u: min(CAP, n) for u, n in sent.items()})
    with get_sessionmaker()() as session:
        stored = dict(
            session.execute(
                select(Prompt.user_id, func.count())
                .where(Prompt.status == "accepted")
                .group_by(Prompt.user_id)
            ).all()
        )
        quotas = dict(session.execute(select(UserQuota.user_id, UserQuota.accepted)).all())
    assert stored == quotas == dict(accepted)


def test_same_prefix_and_external_id_race(concurrent_env: str) -> None:
    from app.db import get_sessionmaker

    text = "Explain photosynthesis to a curious ten year old child, with an example"
    batches = [
        [
            {"text": f"{text} from thread {t}", "user_id": f"racer{t}"},
            {"text": f"Thread {t}: something unrelated", "user_id": f"racer{t}",
             "external_id": "shared-id"},
        ]
        for t in range(6)
    ]  # fmt: skip
    results = run_threads(batches)
    statuses = Counter(answer[0]["status"] for answer in results)
    assert statuses == Counter({"accepted": 1, "duplicate": 5})
    shared = {answer[1]["prompt_id"] for answer in results}
    assert len(shared) == 1  # one prompt for the external_id, whoever won
    with get_sessionmaker()() as session:
        assert (
            session.scalar(
                select(func.count()).select_from(Prompt).where(Prompt.external_id == "shared-id")
            )
            == 1
        )
        owner = next(a[0]["prompt_id"] for a in results if a[0]["status"] == "accepted")
        dups = session.scalars(select(Prompt).where(Prompt.status == "duplicate")).all()
        assert {p.duplicate_of_id for p in dups} == {owner}
        assert session.scalar(select(func.count()).select_from(DedupKey)) == 2
