"""Property tests of the curation invariants against a simple sequential reference model.

Each example starts from empty tables and runs a random program of ingest calls and split pins
through ``ingest_prompts``; then: no user ID is in two splits, the cap holds and matches the
quota rows, statuses equal the reference model's (so dedup marks exactly the prompts whose
normalised prefix an earlier accepted prompt owns), and re-sending everything is idempotent.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from app.config import get_settings
from app.models import Prompt, UserQuota
from app.services.curation.dedup import normalise_text
from tests.conftest import truncate_all

CAP = 3
PREFIX = 8
USERS = ["alice", "bob", "carol", "dave", "erin"]
# few distinct openings so that shared prefixes (and short exact repeats) are common
OPENINGS = ["Write a ", "write  A", "Tell me ", "tell me!", "Hi", "hi ", "Sum up: "]

texts = st.builds(
    lambda head, tail: head + tail,
    st.sampled_from(OPENINGS),
    st.text(alphabet="ab .", max_size=6),
)
items = st.fixed_dictionaries(
    {
        "text": texts,
        "user_id": st.sampled_from(USERS),
        "external_id": st.one_of(st.none(), st.sampled_from([f"x{n}" for n in range(12)])),
    }
)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("ingest"), st.lists(items, min_size=1, max_size=8)),
        st.tuples(
            st.just("pin"), st.sampled_from(USERS), st.sampled_from(["train", "val", "test"])
        ),
    ),
    min_size=1,
    max_size=6,
)


@pytest.fixture
def small_limits(app_env: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("PREFLOOP_PROMPTS_PER_USER_CAP", str(CAP))
    monkeypatch.setenv("PREFLOOP_DEDUP_PREFIX_CHARS", str(PREFIX))
    get_settings.cache_clear()
    return app_env


def key(text: str) -> str:
    return normalise_text(text)[:PREFIX]


class Reference:
    """The rules, one prompt at a time, with no concurrency and no database."""

    def __init__(self) -> None:
        self.by_external: dict[str, str] = {}
        self.owned: set[str] = set()
        self.accepted: dict[str, int] = defaultdict(int)

    def status(self, item: dict[str, Any]) -> str:
        ext = item["external_id"]
        if ext is not None and ext in self.by_external:
            return self.by_external[ext]
        if key(item["text"]) in self.owned:
            status = "duplicate"
        elif self.accepted[item["user_id"]] < CAP:
            status = "accepted"
            self.accepted[item["user_id"]] += 1
            self.owned.add(key(item["text"]))
        else:
            status = "over_cap"
        if ext is not None:
            self.by_external[ext] = status
        return status


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(program=steps)
def test_curation_invariants(small_limits: str, program: list[tuple]) -> None:
    from app.db import get_sessionmaker
    from app.services.curation.splits import pin_split
    from app.services.intake import ingest_prompts

    truncate_all(small_limits)
    reference = Reference()
    sent: list[dict[str, Any]] = []
    got: list[dict[str, Any]] = []
    with get_sessionmaker()() as session:
        for step in program:
            if step[0] == "pin":
                pin_split(session, step[1], step[2])
                session.commit()
                continue
            batch = step[1]
            results = ingest_prompts(session, batch)
            assert [r["status"] for r in results] == [reference.status(i) for i in batch]
            sent += batch
            got += results

        prompts = session.scalars(select(Prompt).order_by(Prompt.id)).all()
        # no user ID in two splits
        splits_of: dict[str, set[str | None]] = defaultdict(set)
        for p in prompts:
            splits_of[p.user_id].add(p.split)
        assert all(len(s) == 1 for s in splits_of.values()), splits_of
        # the cap holds, and the quota rows count exactly the accepted prompts
        accepted: defaultdict[str, int] = defaultdict(int)
        for p in prompts:
            accepted[p.user_id] += p.status == "accepted"
        assert max(accepted.values(), default=0) <= CAP
        quotas = dict(session.execute(select(UserQuota.user_id, UserQuota.accepted)).all())
        assert {u: n for u, n in quotas.items() if n} == {u: n for u, n in accepted.items() if n}
        # dedup: accepted prompts never share a prefix; a duplicate shares its owner's
        by_id = {p.id: p for p in prompts}
        accepted_keys = [key(p.text) for p in prompts if p.status == "accepted"]
        assert len(accepted_keys) == len(set(accepted_keys))
        for p in prompts:
            if p.status == "duplicate":
                assert p.duplicate_of_id is not None
                owner = by_id[p.duplicate_of_id]
                assert owner.status == "accepted" and owner.id < p.id
                assert key(owner.text) == key(p.text)

        # re-sending everything is idempotent for prompts with an external_id
        count = session.scalar(select(func.count()).select_from(Prompt))
        with_ids = [(i, r) for i, r in zip(sent, got, strict=True) if i["external_id"]]
        if with_ids:
            again = ingest_prompts(session, [i for i, _ in with_ids])
            first = {r["external_id"]: r["prompt_id"] for _, r in with_ids}
            assert all(r["prompt_id"] == first[r["external_id"]] for r in again)
            assert session.scalar(select(func.count()).select_from(Prompt)) == count


@settings(max_examples=200, deadline=None)
@given(user_id=st.text(min_size=1, max_size=40))
def test_hash_split_is_stable_and_follows_ratios(user_id: str) -> None:
    from app.services.curation.splits import hash_split

    split = hash_split(user_id, (0.8, 0.1, 0.1))
    assert split in {"train", "val", "test"}
    assert hash_split(user_id, (0.8, 0.1, 0.1)) == split  # no per-process salt
    assert hash_split(user_id, (0.0, 0.0, 1.0)) == "test"
    assert hash_split(user_id, (1.0, 0.0, 0.0)) == "train"
