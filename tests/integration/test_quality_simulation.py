"""Simulated labelers through the JSON API: three follow a hidden preference with a little
noise, one ranks at random, one always puts the first-shown output best (and follows the
preference for the rest). The statistics must tell them apart, adaptive overlap must add a
labeler to disagreed tasks and stop at the maximum, and a labeler in screening must get only
the screening set until approved.

The queue shuffles the order shown with the system's randomness, so the assertions are ones
that hold with overwhelming probability (many output pairs per labeler), never by luck.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from tests.quality_support import outputs, take

K = 5
GOLD_TASKS = 12
RANKING_TASKS = 16


def quality_of(text: str) -> int:
    """The hidden preference: "output 3 of ..." is better than "output 1 of ..."."""
    return int(text.split()[1])


def noisy(rng: random.Random, sd: float = 0.6) -> Callable[[list[dict[str, Any]]], list[int]]:
    def rank(shown: list[dict[str, Any]]) -> list[int]:
        scored = [(quality_of(c["text"]) + rng.gauss(0, sd), c["completion_id"]) for c in shown]
        return [cid for _, cid in sorted(scored, reverse=True)]

    return rank


def at_random(rng: random.Random) -> Callable[[list[dict[str, Any]]], list[int]]:
    def rank(shown: list[dict[str, Any]]) -> list[int]:
        ids = [c["completion_id"] for c in shown]
        rng.shuffle(ids)
        return ids

    return rank


def first_shown_best(rng: random.Random) -> Callable[[list[dict[str, Any]]], list[int]]:
    follow = noisy(rng)

    def rank(shown: list[dict[str, Any]]) -> list[int]:
        return [shown[0]["completion_id"], *follow(shown[1:])]

    return rank


def _work_once(client: Any, rank: Callable[[list[dict[str, Any]]], list[int]]) -> int | None:
    """Take the next task and submit it; its id, or None when nothing is waiting."""
    task = take(client, None)
    if task is None:
        return None
    if task["kind"] == "demonstration":
        body: dict[str, Any] = {"text": "A careful answer."}
    else:
        shown = task["completions"]
        order = rank(shown)
        scores = {cid: 7 - place for place, cid in enumerate(order)}
        body = {
            "ranking": [[cid] for cid in order],
            "ratings": {str(cid): {"likert": score} for cid, score in scores.items()},
        }
    r = client.post(f"/api/v1/tasks/{task['task_id']}/submission", json=body)
    assert r.status_code == 200, r.text
    return int(task["task_id"])


def _gold_task(researcher: Any, screening: bool = False) -> int:
    prompt_id, ids = outputs(K)
    # outputs are "output 0 .. output K-1": the best has the highest number
    reference = [[cid] for cid in reversed(ids)]
    r = researcher.post(
        "/api/v1/gold-tasks",
        json={
            "prompt_id": prompt_id,
            "completion_ids": ids,
            "reference_ranking": reference,
            "screening": screening,
        },
    )
    assert r.status_code == 201, r.text
    return int(r.json()["task_id"])


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_simulated_labelers(api_as, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from app.config import get_settings
    from app.db import get_sessionmaker
    from app.models import Ranking, Task
    from app.services.agreement import pair_tally
    from app.services.judgment_data import load_rankings

    # gold first, so every labeler judges every gold task whatever the draw
    monkeypatch.setenv("PREFLOOP_GOLD_RATE", "1.0")
    get_settings.cache_clear()
    researcher = api_as("researcher")
    r = researcher.put(
        "/api/v1/quality/settings",
        json={"adaptive_agreement_min": 0.5, "adaptive_overlap_max": 3},
    )
    assert r.status_code == 200
    gold = [_gold_task(researcher, screening=n < 2) for n in range(GOLD_TASKS)]
    screening_set = set(gold[:2])
    ranking_tasks = []
    for _ in range(RANKING_TASKS):
        prompt_id, ids = outputs(K)
        created = researcher.post(
            "/api/v1/ranking-tasks",
            json={"prompt_id": prompt_id, "completion_ids": ids, "overlap": 2},
        )
        ranking_tasks.append(created.json()["task_id"])

    seed = random.Random(13)
    labelers = {
        "careful-1": noisy(random.Random(seed.random())),
        "careful-2": noisy(random.Random(seed.random())),
        "careful-3": noisy(random.Random(seed.random())),
        "random": at_random(random.Random(seed.random())),
        "first-best": first_shown_best(random.Random(seed.random())),
    }
    clients = {name: api_as("labeler") for name in labelers}
    busy = set(labelers)
    while busy:  # round robin, one task each per round, until nobody gets anything
        for name in sorted(busy):
            if _work_once(clients[name], labelers[name]) is None:
                busy.discard(name)

    stats = {s["labeler_id"]: s for s in researcher.get("/api/v1/labelers/stats").json()}
    row = {name: stats[clients[name].user.id] for name in labelers}
    assert all(r["gold_judgments"] == GOLD_TASKS for r in row.values())
    by_gold = sorted(row, key=lambda n: row[n]["gold_accuracy"])
    by_agreement = sorted(row, key=lambda n: row[n]["agreement_with_others"])
    assert by_gold[0] == "random" and by_agreement[0] == "random", (by_gold, by_agreement)
    assert "position_bias" in row["first-best"]["outliers"]
    assert row["first-best"]["position_bias"] > 3.0
    for name in ("careful-1", "careful-2", "careful-3"):
        assert row[name]["outliers"] == [], (name, row[name])
        assert row[name]["gold_accuracy"] > 0.8
    assert "gold_accuracy" in row["random"]["outliers"]

    agreement = researcher.get("/api/v1/quality/agreement").json()
    assert 0.5 < agreement["pairwise_agreement"] < 0.95
    low, high = agreement["ci95"]
    assert low < agreement["pairwise_agreement"] < high

    # adaptive overlap: a task whose first two labelers agreed less than 0.5 got a third
    # labeler (and no more: 3 is the maximum); the others kept two
    with get_sessionmaker()() as s:
        extended = 0
        for task_id in ranking_tasks:
            task = s.get(Task, task_id)
            loaded = load_rankings(s, [Ranking.task_id == task_id])
            first_two = pair_tally(loaded[0].ranks, loaded[1].ranks).rate
            if first_two is not None and first_two < 0.5:
                extended += 1
                assert (task.overlap, task.overlap_added, len(loaded)) == (3, 1, 3)
            else:
                assert (task.overlap, task.overlap_added, len(loaded)) == (2, 0, 2)
            assert task.status == "done"
        assert extended > 0
        assert s.scalar(select(Task.id).where(Task.overlap > 3)) is None

    # a labeler in screening gets the screening set alone until approved
    monkeypatch.setenv("PREFLOOP_SCREENING", "true")
    get_settings.cache_clear()
    prompt_id, ids = outputs(K)
    later = researcher.post(
        "/api/v1/ranking-tasks", json={"prompt_id": prompt_id, "completion_ids": ids}
    ).json()["task_id"]
    newcomer = api_as("labeler")
    behaviour = noisy(random.Random(1))
    served = []
    while (task_id := _work_once(newcomer, behaviour)) is not None:
        served.append(task_id)
    assert sorted(served) == sorted(screening_set)
    researcher.post(f"/api/v1/labelers/{newcomer.user.id}/approve")
    served_after = set()
    while (task_id := _work_once(newcomer, behaviour)) is not None:
        served_after.add(task_id)
    assert later in served_after
