"""Gold tasks, agreement, overlap settings and adaptive overlap through the JSON API."""

from __future__ import annotations

from typing import Any, get_args

import pytest

from tests.quality_support import (
    as_shown,
    by_ids,
    outputs,
    ranking_task,
    take,
    taken,
    work,
    worked,
)


def _gold_rate(monkeypatch: pytest.MonkeyPatch, rate: str) -> None:
    from app.config import get_settings

    monkeypatch.setenv("PREFLOOP_GOLD_RATE", rate)
    get_settings.cache_clear()


def _assignment_kinds(task_id: int) -> list[str]:
    from sqlalchemy import select

    from app.db import get_sessionmaker
    from app.models import Assignment

    with get_sessionmaker()() as s:
        return list(s.scalars(select(Assignment.task_kind).where(Assignment.task_id == task_id)))


def test_the_documented_flag_names_are_the_flags_labelers_see() -> None:
    from app.models.labeling import FLAGS, FlagName

    assert list(get_args(FlagName)) == list(FLAGS)


def test_gold_task_is_scored_against_the_reference_and_never_exported(
    api_as, monkeypatch: pytest.MonkeyPatch
) -> None:
    researcher = api_as("researcher")
    prompt_id, ids = outputs(4)
    a, b, c, d = ids
    body = {
        "prompt_id": prompt_id,
        "completion_ids": ids,
        "reference_ranking": [[a], [b, c], [d]],
        "reference_flags": {str(d): ["hallucination"]},
    }
    bad: list[tuple[dict[str, Any], str]] = [
        ({"reference_ranking": [[a], [b, c]]}, "reference_ranking"),  # d missing
        ({"reference_ranking": [[a], [b, c], [d, a]]}, "reference_ranking"),
        # the schema's flag enum refuses it, naming the flag's place in the list
        ({"reference_flags": {str(d): ["made_up"]}}, f"reference_flags.{d}.0"),
        ({"reference_flags": {"999999": []}}, "reference_flags.999999"),
        ({"completion_ids": [a], "reference_ranking": [[a]]}, "completion_ids"),
    ]
    for change, field in bad:
        r = researcher.post("/api/v1/gold-tasks", json=body | change)
        assert r.status_code == 422 and r.json()["field"] == field, (change, r.text)
    labeler = api_as("labeler")
    assert labeler.post("/api/v1/gold-tasks", json=body).status_code == 403
    r = researcher.post("/api/v1/gold-tasks", json=body)
    assert r.status_code == 201, r.text
    gold_id = r.json()["task_id"]

    # gold only comes mixed into a stream of regular rankings
    _gold_rate(monkeypatch, "1.0")
    ranking_task(4)
    task = taken(labeler)
    assert task["task_id"] == gold_id and task["kind"] == "ranking"
    # a > c > b > d: pairs (a,b) (a,c) (a,d) (b,d) (c,d) agree, (b,c) tie vs order 1/2
    answer = by_ids([a, c, b, d])(task)
    answer["ratings"] = {str(d): {"flags": ["hallucination"]}}
    r = labeler.post(f"/api/v1/tasks/{gold_id}/submission", json=answer)
    assert r.status_code == 200, r.text

    stats = {s["labeler_id"]: s for s in researcher.get("/api/v1/labelers/stats").json()}
    mine = stats[labeler.user.id]
    assert mine["gold_judgments"] == 1
    assert mine["gold_accuracy"] == pytest.approx(5.5 / 6)
    assert mine["flag_kappa"] == 1.0
    listed = researcher.get("/api/v1/gold-tasks").json()
    assert [(g["task_id"], g["judgments"]) for g in listed] == [(gold_id, 1)]
    assert listed[0]["mean_accuracy"] == pytest.approx(5.5 / 6)
    export = researcher.get("/api/v1/export/comparisons").text
    assert f'"prompt_id":{prompt_id}' not in export


def test_a_ranking_task_turned_gold_scores_its_rankings(api_as) -> None:
    researcher = api_as("researcher")
    task_id, ids = ranking_task(4)
    labeler = api_as("labeler")
    work(labeler, by_ids(list(reversed(ids))))
    reference = {"reference_ranking": [[i] for i in ids], "screening": True}
    assert researcher.put("/api/v1/gold-tasks/999999", json=reference).status_code == 404
    r = researcher.put(f"/api/v1/gold-tasks/{task_id}", json=reference)
    assert r.status_code == 200, r.text
    # the assignments' copy of the kind (the labeler's counts) follows the task
    assert _assignment_kinds(task_id) == ["gold"]
    record = researcher.get(f"/api/v1/labelers/{labeler.user.id}").json()
    assert record["stats"]["gold_accuracy"] == 0.0
    gold = record["screening"]["gold_rankings"]
    assert [o["rank"] for o in gold[0]["outputs"]] == [4, 3, 2, 1]
    assert [o["reference_rank"] for o in gold[0]["outputs"]] == [1, 2, 3, 4]
    # its ranking left the training data
    assert '"ranking_id"' not in researcher.get("/api/v1/export/comparisons").text


def test_agreement_pools_labeler_pairs_over_tasks(api_as, monkeypatch: pytest.MonkeyPatch) -> None:
    researcher = api_as("researcher")
    first, second, held = api_as("labeler"), api_as("labeler"), api_as("labeler")
    from tests.unit.test_task_kinds import _set

    _set(held.user.id, held_out=True)
    t1, ids1 = ranking_task(4, overlap=3)
    t2, ids2 = ranking_task(4, overlap=2)
    # task 1: first and second agree fully, held ranks the reverse; task 2: first vs second
    # reversed
    for client, order in ((first, ids1), (second, ids1), (held, ids1[::-1])):
        assert worked(client, by_ids(order))["task_id"] == t1
    assert worked(first, by_ids(ids2))["task_id"] == t2
    assert worked(second, by_ids(ids2[::-1]))["task_id"] == t2

    everyone = researcher.get("/api/v1/quality/agreement").json()
    # (first, second) 6/6 + (first, held) 0/6 + (second, held) 0/6 on t1; 0/6 on t2
    assert everyone["pairwise_agreement"] == pytest.approx(6 / 24)
    assert (everyone["pairs"], everyone["output_pairs"], everyone["tasks"]) == (4, 24, 2)
    assert everyone["kendall_tau_b"] == pytest.approx(-0.5)
    training = researcher.get("/api/v1/quality/agreement?group=training").json()
    assert training["pairwise_agreement"] == pytest.approx(6 / 12)
    assert training["ci95"] == [0.0, 1.0]
    held_out = researcher.get("/api/v1/quality/agreement?group=held_out").json()
    assert held_out["pairwise_agreement"] is None and held_out["pairs"] == 0
    for query, field in (
        ("since=yesterday", "since"),
        ("group=everyone", "group"),
        ("since=2030-01-01&until=2020-01-01", "since"),
    ):
        r = researcher.get(f"/api/v1/quality/agreement?{query}")
        assert r.status_code == 422 and r.json()["field"] == field, (query, r.text)
    r = researcher.get("/api/v1/quality/agreement?use_case=nope")
    assert r.status_code == 404 and r.json()["field"] == "use_case"  # well formed, names nothing
    assert first.get("/api/v1/quality/agreement").status_code == 403

    stats = {s["labeler_id"]: s for s in researcher.get("/api/v1/labelers/stats").json()}
    assert stats[first.user.id]["agreement_with_others"] == pytest.approx(6 / 18)
    assert stats[held.user.id]["agreement_with_others"] == 0.0
    assert stats[held.user.id]["group"] == "held_out"

    # from the newest rankings only: the two of task 2 (first vs second, reversed)
    from app.config import get_settings

    monkeypatch.setenv("PREFLOOP_QUALITY_WINDOW_RANKINGS", "2")
    get_settings.cache_clear()
    newest = researcher.get("/api/v1/quality/agreement").json()
    assert (newest["pairwise_agreement"], newest["tasks"], newest["pairs"]) == (0.0, 1, 1)


def test_overlap_settings_are_saved_in_the_app_and_env_gives_the_default(api_as) -> None:
    researcher = api_as("researcher")
    defaults = researcher.get("/api/v1/quality/settings").json()
    assert defaults == {
        "agreement_share": 0.0,
        "agreement_overlap": 2,
        "adaptive_agreement_min": 0.5,
        "adaptive_overlap_max": 5,
        "overridden": [],
    }
    # out of range, or not a number (true was read as 1, a valid maximum), is refused
    for change in (
        {"agreement_overlap": 1},
        {"adaptive_overlap_max": True},
        {"agreement_share": False},
        {"adaptive_overlap_max": 21},
        {"agreement_overlap": "3"},
        {"agreement_overlap": 3.5},
    ):
        r = researcher.put("/api/v1/quality/settings", json=change)
        assert r.status_code == 422 and r.json()["field"] == next(iter(change)), r.text
    # 3.0 is an integer to JSON Schema (the document's word), so to the API
    r = researcher.put(
        "/api/v1/quality/settings", json={"agreement_share": 1, "agreement_overlap": 3.0}
    )
    assert r.status_code == 200 and r.json()["overridden"] == [
        "agreement_overlap",
        "agreement_share",
    ]
    assert researcher.get("/api/v1/quality/settings").json()["agreement_overlap"] == 3
    prompt_id, ids = outputs(4)
    created = researcher.post(
        "/api/v1/ranking-tasks", json={"prompt_id": prompt_id, "completion_ids": ids}
    )
    assert created.json()["overlap"] == 3
    assert researcher.delete("/api/v1/quality/settings").json() == defaults
    assert api_as("labeler").put("/api/v1/quality/settings", json={}).status_code == 403


def test_adaptive_overlap_adds_a_labeler_to_disagreed_tasks_up_to_the_maximum(api_as) -> None:
    from app.db import get_sessionmaker
    from app.models import Task

    researcher = api_as("researcher")
    researcher.put(
        "/api/v1/quality/settings",
        json={"adaptive_agreement_min": 0.5, "adaptive_overlap_max": 3},
    )
    agreed, ids_a = ranking_task(4, overlap=2)
    disagreed, ids_d = ranking_task(4, overlap=2)
    one, two, three, four = (api_as("labeler") for _ in range(4))
    for client in (one, two):
        work(client, by_ids(ids_a))
    work(one, by_ids(ids_d))
    work(two, by_ids(ids_d[::-1]))

    def state(task_id: int) -> tuple[str, int, int]:
        with get_sessionmaker()() as s:
            task = s.get_one(Task, task_id)
            return task.status, task.overlap, task.overlap_added

    assert state(agreed) == ("done", 2, 0)
    assert state(disagreed) == ("open", 3, 1)
    # the third labeler sides with neither fully: still below 0.5, but 3 is the maximum
    third = taken(three)
    assert third["task_id"] == disagreed
    middle = [ids_d[1], ids_d[0], ids_d[3], ids_d[2]]
    r = three.post(f"/api/v1/tasks/{disagreed}/submission", json=by_ids(middle)(third))
    assert r.status_code == 200
    assert state(disagreed) == ("done", 3, 1)
    assert take(four) is None


def test_untouched_and_position_bias_in_the_stats(api_as) -> None:
    researcher = api_as("researcher")
    lazy = api_as("labeler")
    for _ in range(3):
        ranking_task(4)
    while work(lazy, as_shown):
        pass
    row = next(
        s
        for s in researcher.get("/api/v1/labelers/stats").json()
        if s["labeler_id"] == lazy.user.id
    )
    assert row["rankings"] == 3 and row["untouched_rate"] == 1.0
    # always the first shown best: 3 / (3 * 1/4)
    assert row["position_bias"] == pytest.approx(4.0)
    assert row["contradiction_rate"] is None and row["skip_rate"] == 0.0


def test_counts_cover_the_period_and_per_ranking_figures_its_newest_rankings(
    api_as, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rankings and gold accuracy are counted in SQL over the whole period; the figures that
    need each ranking's entries come from the newest ``quality_window_rankings`` rankings."""
    from app.config import get_settings

    researcher = api_as("researcher")
    labeler = api_as("labeler")
    for _ in range(3):
        ranking_task(4)

    def reversed_order(task: dict[str, Any]) -> dict[str, Any]:
        shown = [c["completion_id"] for c in task["completions"]]
        return {"ranking": [[cid] for cid in reversed(shown)]}

    worked(labeler, reversed_order)  # the oldest: not as shown
    while work(labeler, as_shown):  # the two newest: as shown
        pass

    def row() -> dict[str, Any]:
        stats = researcher.get("/api/v1/labelers/stats").json()
        return next(s for s in stats if s["labeler_id"] == labeler.user.id)

    everything = row()
    monkeypatch.setenv("PREFLOOP_QUALITY_WINDOW_RANKINGS", "2")
    get_settings.cache_clear()
    windowed = row()
    assert everything["rankings"] == windowed["rankings"] == 3
    assert everything["untouched_rate"] == pytest.approx(2 / 3)
    assert windowed["untouched_rate"] == 1.0  # the two newest only
    assert windowed["finished"] == everything["finished"] == 3
