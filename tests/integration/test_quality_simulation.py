"""Simulated labelers (app/simulation, the engine of `prefloop simulate`) through the JSON
API: three follow a hidden preference with noise tuned to 90% agreement, one ranks at random,
one always puts the first-shown output best (and follows the preference for the rest). The
statistics must tell them apart, adaptive overlap must add a labeler to disagreed tasks and
stop at the maximum, and a labeler in screening must get only the screening set until approved.

The queue shuffles the order shown with the system's randomness, so the assertions are ones
that hold with overwhelming probability (hundreds of output pairs per labeler), never by luck.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from app.simulation.behaviours import Behaviour, PreferenceFollowing, RandomRanker
from app.simulation.runner import SimulatedLabeler, Simulation
from tests.quality_support import outputs

K = 6
GOLD_TASKS = 24
RANKING_TASKS = 12
# a task whose first two labelers agree less than this gets a third: high enough that a task
# the random labeler shares with anyone is very likely reopened
ADAPTIVE_MIN = 0.7
KINDS = ("ranking", "demonstration")
# what two preference-following labelers agree on: high enough that the first-shown-best
# labeler (half its pairs by preference) stands well clear of the random one
AGREEMENT = 0.9


def quality_of(prompt: str, text: str) -> float:
    """The hidden preference: "output 3 of ..." is better than "output 1 of ..." (any other
    text, such as a demonstration candidate, is neutral)."""
    words = text.split()
    return float(words[1]) if words[:1] == ["output"] and words[1].isdigit() else 0.0


class FirstShownThenPreference(PreferenceFollowing):
    """Puts the first output shown best, whatever it is, and ranks the rest by preference."""

    name = "first-then-preference"

    def rank(self, task: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        first, *rest = task["completions"]
        body = super().rank(task | {"completions": rest}, rng)
        body["ranking"] = [[first["completion_id"]], *body["ranking"]]
        body["ratings"][str(first["completion_id"])] = {"likert": 7}
        return body


def labeler(client: Any, behaviour: Behaviour, seed: float) -> SimulatedLabeler:
    return SimulatedLabeler(client=client, behaviour=behaviour, rng=random.Random(seed))


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


def _served(client: Any, seed: int) -> set[int]:
    """The tasks a preference-following labeler is served (and submits) until none is left."""
    from sqlalchemy import select

    from app.db import get_sessionmaker
    from app.models import Assignment

    def held() -> set[int]:
        with get_sessionmaker()() as s:
            query = select(Assignment.task_id).where(Assignment.labeler_id == client.user.id)
            return set(s.scalars(query))

    before = held()
    behaviour = PreferenceFollowing(quality_of, AGREEMENT)
    Simulation([labeler(client, behaviour, seed)], kinds=KINDS).run()
    return held() - before


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_simulated_labelers(api_as, monkeypatch: pytest.MonkeyPatch) -> None:
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
        json={"adaptive_agreement_min": ADAPTIVE_MIN, "adaptive_overlap_max": 3},
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
    behaviours: dict[str, Behaviour] = {
        "careful-1": PreferenceFollowing(quality_of, AGREEMENT),
        "careful-2": PreferenceFollowing(quality_of, AGREEMENT),
        "careful-3": PreferenceFollowing(quality_of, AGREEMENT),
        "random": RandomRanker(),
        "first-best": FirstShownThenPreference(quality_of, AGREEMENT),
    }
    clients = {name: api_as("labeler") for name in behaviours}
    summary = Simulation(
        [labeler(clients[n], b, seed.random()) for n, b in behaviours.items()], kinds=KINDS
    ).run()
    assert summary.stopped == "drained"

    stats = {s["labeler_id"]: s for s in researcher.get("/api/v1/labelers/stats").json()}
    row = {name: stats[clients[name].user.id] for name in behaviours}
    assert all(r["gold_judgments"] == GOLD_TASKS for r in row.values())
    by_gold = sorted(row, key=lambda n: row[n]["gold_accuracy"])
    by_agreement = sorted(row, key=lambda n: row[n]["agreement_with_others"])
    assert by_gold[0] == "random" and by_agreement[0] == "random", (by_gold, by_agreement)
    assert "position_bias" in row["first-best"]["outliers"]
    assert row["first-best"]["position_bias"] > 3.0
    for name in ("careful-1", "careful-2", "careful-3"):
        assert row[name]["outliers"] == [], (name, row[name])
        assert row[name]["gold_accuracy"] > 0.8

    agreement = researcher.get("/api/v1/quality/agreement").json()
    assert 0.5 < agreement["pairwise_agreement"] < 0.95
    low, high = agreement["ci95"]
    assert low < agreement["pairwise_agreement"] < high

    # adaptive overlap: a task whose first two labelers agreed less than ADAPTIVE_MIN got a third
    # labeler (and no more: 3 is the maximum); the others kept two
    with get_sessionmaker()() as s:
        extended = 0
        for task_id in ranking_tasks:
            task = s.get_one(Task, task_id)
            loaded = load_rankings(s, [Ranking.task_id == task_id])
            first_two = pair_tally(loaded[0].ranks, loaded[1].ranks).rate
            if first_two is not None and first_two < ADAPTIVE_MIN:
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
    assert _served(newcomer, 1) == screening_set
    researcher.post(f"/api/v1/labelers/{newcomer.user.id}/approve")
    served_after = _served(newcomer, 2)
    assert later in served_after
