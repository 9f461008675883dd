"""Simulated labelers: the noise gives the requested agreement, the behaviours do what they
say, and the runner works through the REST API (here an in-process client)."""

from __future__ import annotations

import random
from collections.abc import Callable
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest

from app.simulation import (
    FirstShownBest,
    PreferenceFollowing,
    RandomRanker,
    SimulatedLabeler,
    UsageError,
    noise_for,
    preferences,
    simulate,
)
from app.simulation.behaviours import PreferenceError, candidate_responses, expected_agreement
from app.simulation.loading import load_preference, parse_tokens
from tests.labeling_support import make_prompt, make_ranking_task


def fake_task(texts: list[str], task_id: int = 1, *, likert_required: bool = False) -> dict:
    return {
        "task_id": task_id,
        "kind": "evaluation" if likert_required else "ranking",
        "likert_required": likert_required,
        "prompt": {"prompt_id": 1, "text": "Describe the moon over a quiet town."},
        "completions": [{"completion_id": 100 + i, "text": t} for i, t in enumerate(texts)],
    }


def positions(body: dict) -> dict[int, int]:
    return {cid: rank for rank, group in enumerate(body["ranking"]) for cid in group}


def pair_agreement(a: dict[int, int], b: dict[int, int]) -> tuple[float, int]:
    """Pairs ordered alike by two weak orders (a tie against an order counts half; pairs tied
    by both are skipped), as docs/quality.md defines agreement."""
    agree, pairs = 0.0, 0
    for x, y in combinations(sorted(a), 2):
        da, db = (a[x] > a[y]) - (a[x] < a[y]), (b[x] > b[y]) - (b[x] < b[y])
        if da == db == 0:
            continue
        pairs += 1
        agree += 1.0 if da == db else (0.5 if 0 in (da, db) else 0.0)
    return agree, pairs


def measured_agreement(first: Any, second: Any, tasks: list[dict], seed: int = 1) -> float:
    rng_a, rng_b = random.Random(seed), random.Random(seed + 1000)
    agree = pairs = 0.0
    for task in tasks:
        got = pair_agreement(
            positions(first.rank(task, rng_a)), positions(second.rank(task, rng_b))
        )
        agree, pairs = agree + got[0], pairs + got[1]
    return agree / pairs


def random_tasks(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    tasks = []
    for i in range(n):
        k = rng.randint(2, 9)
        # distinct lengths, so the length preference has no ties
        lengths = rng.sample(range(1, 40), k)
        tasks.append(fake_task([" ".join(["word"] * n) for n in lengths], i))
    return tasks


@pytest.mark.parametrize("target", [0.6, 0.73, 0.9])
def test_two_preference_labelers_agree_at_the_requested_rate(target: float) -> None:
    tasks = random_tasks(800)
    labeler = PreferenceFollowing(preferences.length, target)
    assert measured_agreement(labeler, labeler, tasks) == pytest.approx(target, abs=0.02)


def test_noise_is_solved_per_task_and_capped_by_ties() -> None:
    # K = 2: one pair; agreement t needs p^2 + (1-p)^2 = t
    sigma = noise_for([0.0, 1.0], 0.73)
    assert expected_agreement(sigma, [1.0], 0) == pytest.approx(0.73, abs=1e-6)
    assert noise_for([0.0, 1.0, 2.0], 1.0) == 0.0  # perfect agreement: no noise
    assert noise_for([0.0, 1.0], 0.5) == float("inf")  # coin flips
    # every score equal: the order is random whatever the noise, agreement 1/2 at best
    assert noise_for([3.0, 3.0, 3.0], 0.73) == 0.0
    assert noise_for([3.0], 0.73) == 0.0  # one output (every text the same): no pair at all
    assert expected_agreement(0.0, [], 3) == 0.5


def test_preference_labeler_follows_the_preference_and_ties_identical_texts() -> None:
    labeler = PreferenceFollowing(preferences.length, 0.73)
    rng = random.Random(0)
    task = fake_task(["one", "one two three four five six", "one two three", "one"])
    best_first = 0
    for _ in range(300):
        body = labeler.rank(task, rng)
        # the two identical texts are one tie group
        assert [100, 103] in [sorted(g) for g in body["ranking"]]
        best_first += body["ranking"][0] == [101]
        likerts = [body["ratings"][str(g[0])]["likert"] for g in body["ranking"]]
        assert likerts == sorted(likerts, reverse=True)  # scores follow the order given
    assert best_first > 150  # the longest is ranked best most often (chance: 1/3)


def test_outputs_with_one_text_are_one_tie() -> None:
    # two systems that answered alike (a regression: the noise search never ended)
    body = PreferenceFollowing(preferences.length).rank(
        fake_task(["same words", "same words"], likert_required=True), random.Random(0)
    )
    assert body["ranking"] == [[100, 101]]
    assert body["ratings"]["100"]["likert"] == body["ratings"]["101"]["likert"] == 4


def test_perfect_agreement_is_the_preference_order() -> None:
    labeler = PreferenceFollowing(preferences.length, 1.0)
    body = labeler.rank(fake_task(["a b", "a", "a b c"]), random.Random(0))
    assert body["ranking"] == [[102], [100], [101]]
    assert [body["ratings"][str(c)]["likert"] for c in (102, 100, 101)] == [6, 4, 2]


def test_evaluations_get_every_output_scored_by_every_behaviour() -> None:
    task = fake_task(["a", "b c", "d e f"], likert_required=True)
    for behaviour in (PreferenceFollowing(preferences.length), RandomRanker(), FirstShownBest()):
        body = behaviour.submission(task, random.Random(0))
        assert set(body["ratings"]) == {"100", "101", "102"}
        assert all(1 <= r["likert"] <= 7 for r in body["ratings"].values())


def test_random_and_first_shown_labelers() -> None:
    tasks = random_tasks(400, seed=3)
    follower = PreferenceFollowing(preferences.length, 0.9)
    assert measured_agreement(follower, RandomRanker(), tasks) == pytest.approx(0.5, abs=0.04)
    lazy = FirstShownBest().rank(fake_task(["x", "y", "z"]), random.Random(0))
    assert lazy["ranking"] == [[100], [101], [102]] and "ratings" not in lazy


def test_flags_from_the_preference_and_bad_preferences() -> None:
    def flagging(prompt: str, text: str) -> tuple[float, list[str]]:
        return (len(text), ["hallucination"] if "moon" in text else [])

    body = PreferenceFollowing(flagging).rank(fake_task(["the moon", "sun"]), random.Random(0))
    assert body["ratings"]["100"]["flags"] == ["hallucination"]
    assert body["ratings"]["101"]["flags"] == []
    # deliberately bad preferences: not a number, NaN, an exception
    bad_preferences: list[Callable[[str, str], Any]] = [
        lambda p, t: "high",
        lambda p, t: float("nan"),
        lambda p, t: 1 / 0,
    ]
    for bad in bad_preferences:
        with pytest.raises(PreferenceError):
            PreferenceFollowing(bad).rank(fake_task(["a", "b"]), random.Random(0))


def test_demonstrations_are_what_the_preference_likes() -> None:
    task = {"task_id": 1, "kind": "demonstration", "prompt": {"text": "Tell me about rivers."}}
    rng = random.Random(0)
    candidates = candidate_responses("Tell me about rivers.", random.Random(5))
    assert len(set(candidates)) > 5 and any("rivers" in c.lower() for c in candidates)
    long = PreferenceFollowing(preferences.length).submission(task, rng)["text"]
    short = PreferenceFollowing(preferences.brevity).submission(task, rng)["text"]
    assert len(long.split()) > len(short.split())
    positive = PreferenceFollowing(preferences.sentiment).submission(task, rng)["text"]
    assert preferences.sentiment("", positive) > 0


def test_shipped_preferences() -> None:
    prompt = "Write a haiku about autumn leaves."
    assert preferences.keyword(prompt, "Autumn leaves fall.") == 2
    assert preferences.keyword(prompt, "Spring rain.") == 0
    assert preferences.length(prompt, "a b c") > preferences.length(prompt, "a")
    assert preferences.brevity(prompt, "a") > preferences.brevity(prompt, "a b c")
    assert preferences.polite(prompt, "Thank you, glad to help") == 2
    assert preferences.keywords("paris")(prompt, "Paris, paris!") == 2


def test_token_file_format() -> None:
    lines = parse_tokens("# labelers\ntok-a\n\n  tok-b random \ntok-c first\n")
    assert [(t.token, t.behaviour) for t in lines] == [
        ("tok-a", "preference"),
        ("tok-b", "random"),
        ("tok-c", "first"),
    ]
    for text, message in (
        ("", "no token"),
        ("tok lazy", "unknown behaviour 'lazy'"),
        ("a b c", "3 fields"),
    ):
        with pytest.raises(UsageError, match=message):
            parse_tokens(text)


def test_loading_preferences(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_preference("length") is preferences.length
    assert load_preference("app.simulation.preferences:keyword") is preferences.keyword
    (tmp_path / "my_taste.py").write_text("def prefer(prompt, text):\n    return -len(text)\n")
    by_file = load_preference(f"{tmp_path / 'my_taste.py'}:prefer")
    assert by_file("p", "abc") == -3
    monkeypatch.chdir(tmp_path)
    assert load_preference("my_taste:prefer")("p", "ab") == -2
    for spec, message in (
        ("lengthy", "expected MODULE:FUNCTION"),
        ("no_such_module_xyz:f", "cannot import"),
        ("my_taste:missing", "has no function missing"),
        (f"{tmp_path / 'nope.py'}:f", "no such file"),
    ):
        with pytest.raises(UsageError, match=message):
            load_preference(spec)


# through the API -------------------------------------------------------------------------------


def test_simulated_labelers_drain_the_queue_through_the_api(api_as, session) -> None:
    from sqlalchemy import func, select

    from app.models import Demonstration, Ranking, RankingEntry

    labelers = [api_as("labeler") for _ in range(3)]
    tasks = []
    for _ in range(4):
        texts = ["short", "a bit longer text", "the longest text of all of these", "mid size"]
        tasks.append(make_ranking_task(make_prompt(), texts, overlap=2))
    summary = simulate(labelers, preferences.length, agreement=1.0, kinds=["ranking"])
    assert summary.submitted == 8 and summary.stopped == "drained"
    assert sum(row["ranking"] for row in summary.labelers) == 8
    assert {row["name"] for row in summary.labelers} == {c.user.username for c in labelers}
    # agreement 1: every ranking is the length order
    for task_id, ids in tasks:
        for ranking in session.scalars(select(Ranking).where(Ranking.task_id == task_id)):
            assert [e.completion_id for e in ranking.entries] == [ids[2], ids[1], ids[3], ids[0]]
            assert ranking.time_spent_ms and ranking.time_spent_ms > 1000
    assert session.scalar(select(func.count()).select_from(RankingEntry)) == 32
    session.rollback()  # SQLite: end this read before the labelers write

    # demonstrations (train prompts get a demonstration task), capped by max_tasks
    summary = simulate(labelers, preferences.length, kinds=["demonstration"], max_tasks=2)
    assert summary.submitted == 2 and summary.stopped == "max_tasks"
    session.rollback()
    assert session.scalar(select(func.count()).select_from(Demonstration)) == 2


def test_mixed_behaviours_and_a_refused_token(api_as) -> None:
    from fastapi.testclient import TestClient

    from app.main import create_app

    for _ in range(3):
        make_ranking_task(make_prompt(), ["x", "yy", "zzz", "wwww"], overlap=3)
    crew = [
        SimulatedLabeler(api_as("labeler"), RandomRanker(), random.Random(1)),
        SimulatedLabeler(api_as("labeler"), FirstShownBest(), random.Random(2)),
        SimulatedLabeler(api_as("labeler"), PreferenceFollowing(preferences.length)),
    ]
    summary = simulate(crew, kinds=["ranking"], concurrency=3)
    assert [row["ranking"] for row in summary.labelers] == [3, 3, 3]
    assert [row["behaviour"] for row in summary.labelers] == ["random", "first", "preference"]

    stranger = TestClient(create_app())
    stranger.headers["Authorization"] = "Bearer not-a-token"
    with pytest.raises(UsageError, match="refused"):
        simulate([stranger], preferences.length)
