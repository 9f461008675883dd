"""Quality in the exports: agreement and gold accuracy on comparison records, the
min_gold_accuracy and exclude_labeler filters, and one consensus ranking per task."""

from __future__ import annotations

import json

import pytest

from tests.quality_support import by_ids, outputs, ranking_task, work


def _lines(r) -> list[dict]:
    assert r.status_code == 200, r.text
    return [json.loads(line) for line in r.text.splitlines() if line.strip()]


def test_quality_figures_filters_and_consensus(api_as, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.config import get_settings

    researcher = api_as("researcher")
    accurate, sloppy, untested = (api_as("labeler") for _ in range(3))
    prompt_id, gold_ids = outputs(4)
    r = researcher.post(
        "/api/v1/gold-tasks",
        json={
            "prompt_id": prompt_id,
            "completion_ids": gold_ids,
            "reference_ranking": [[i] for i in gold_ids],
        },
    )
    assert r.status_code == 201
    task_id, ids = ranking_task(4, overlap=3)
    a, b, c, d = ids
    monkeypatch.setenv("PREFLOOP_GOLD_RATE", "1.0")
    get_settings.cache_clear()
    # the gold task comes first (rate 1), then the shared ranking task
    work(accurate, by_ids(gold_ids))  # gold accuracy 1
    work(sloppy, by_ids(gold_ids[::-1]))  # gold accuracy 0
    monkeypatch.setenv("PREFLOOP_GOLD_RATE", "0.0")
    get_settings.cache_clear()
    work(accurate, by_ids([a, b, c, d]))
    work(sloppy, by_ids([b, a, c, d]))
    work(untested, by_ids([a, b, c, d]))

    rankings = _lines(researcher.get("/api/v1/export/comparisons"))
    assert {r["labeler_id"] for r in rankings} == {
        accurate.user.id,
        sloppy.user.id,
        untested.user.id,
    }
    # (accurate, sloppy) 5/6, (accurate, untested) 6/6, (sloppy, untested) 5/6
    assert [r["agreement"] for r in rankings] == [pytest.approx(16 / 18)] * 3
    gold = {r["labeler_id"]: r["gold_accuracy"] for r in rankings}
    assert gold == {accurate.user.id: 1.0, sloppy.user.id: 0.0, untested.user.id: None}
    assert {r["task_id"] for r in rankings} == {task_id}
    pairs = _lines(researcher.get("/api/v1/export/comparisons?format=pairs"))
    assert {(p["labeler_id"], p["gold_accuracy"]) for p in pairs} == set(gold.items())

    only_accurate = _lines(researcher.get("/api/v1/export/comparisons?min_gold_accuracy=0.9"))
    assert [r["labeler_id"] for r in only_accurate] == [accurate.user.id]
    excluded = _lines(
        researcher.get(f"/api/v1/export/comparisons?exclude_labeler={sloppy.user.id}")
    )
    assert sloppy.user.id not in {r["labeler_id"] for r in excluded} and len(excluded) == 2
    r = researcher.get("/api/v1/export/comparisons?exclude_labeler=999999")
    assert r.status_code == 404 and r.json()["field"] == "exclude_labeler"  # names nobody
    for query, field in (
        ("exclude_labeler=x", "exclude_labeler"),
        ("min_gold_accuracy=2", "min_gold_accuracy"),
    ):
        r = researcher.get(f"/api/v1/export/comparisons?{query}")
        assert r.status_code == 422 and r.json()["field"] == field, (query, r.text)
    r = researcher.get("/api/v1/export/prompts?min_gold_accuracy=0.5")
    assert r.status_code == 422 and r.json()["field"] == "min_gold_accuracy"

    response = researcher.get("/api/v1/export/comparisons?format=consensus")
    (consensus,) = _lines(response)
    assert response.headers["X-Total-Count"] == "1"
    assert consensus["task_id"] == task_id and consensus["k"] == 4
    assert consensus["labeler_ids"] == sorted([accurate.user.id, sloppy.user.id, untested.user.id])
    assert consensus["agreement"] == pytest.approx(16 / 18)
    # Borda: a (3 + 2 + 3) / 3, b (2 + 3 + 2) / 3, c 1, d 0
    assert [(o["completion_id"], o["rank"]) for o in consensus["completions"]] == [
        (a, 1),
        (b, 2),
        (c, 3),
        (d, 4),
    ]
    assert consensus["completions"][0]["borda"] == pytest.approx(8 / 3)
    # without the accurate labelers the top pair ties
    query = f"format=consensus&exclude_labeler={accurate.user.id},{untested.user.id}"
    (two,) = _lines(researcher.get(f"/api/v1/export/comparisons?{query}"))
    assert [o["rank"] for o in two["completions"]] == [1, 2, 3, 4]
    (mixed,) = _lines(
        researcher.get(
            f"/api/v1/export/comparisons?format=consensus&exclude_labeler={untested.user.id}"
        )
    )
    assert [o["rank"] for o in mixed["completions"]] == [1, 1, 2, 3]
    assert (
        _lines(researcher.get(f"/api/v1/export/comparisons?format=consensus&after={task_id}")) == []
    )
    parquet = researcher.get("/api/v1/export/comparisons?format=consensus&output=parquet")
    assert parquet.status_code == 200 and parquet.content[:4] == b"PAR1"
