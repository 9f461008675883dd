"""An evaluation end to end through the API: two uploaded systems, simulated held-out judges
who prefer one, results and leaderboard that say so, and nothing of it in training exports."""

from __future__ import annotations

from typing import Any

from app.simulation import preferences, simulate

TOPICS = ["sourdough bread", "river otters", "lighthouse keepers", "winter gardens",
          "paper maps", "honey bees", "tea ceremonies", "quiet towns", "robot vacuums",
          "moon phases", "lost keys", "city parks"]  # fmt: skip


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    return response.json() if response.content else None


def field_of(response: Any) -> str:
    """The field a 422 names (``{"detail", "field", "errors"}``)."""
    return str(response.json()["field"])


def test_paired_systems_judged_by_held_out_labelers(api_as, make_user) -> None:
    researcher = api_as("researcher")
    ok(researcher.put("/api/v1/split-pins/eval-customer", json={"split": "test"}))
    items = [
        {"text": f"Tell me three facts about {t}.", "user_id": "eval-customer"} for t in TOPICS
    ]
    results = ok(researcher.post("/api/v1/prompts", json={"prompts": items}))["results"]
    assert {r["split"] for r in results} == {"test"}
    prompts = {r["prompt_id"]: t for r, t in zip(results, TOPICS, strict=True)}
    good = [{"prompt_id": p, "text": f"Three facts about {t}: they are {t}."} for p, t in prompts.items()]  # fmt: skip
    bad = [{"prompt_id": p, "text": "I would rather not say anything."} for p in prompts]

    # bad input first: a clear 422 naming the field, nothing stored
    body = {"name": "vendors", "systems": [{"name": "vendor-old", "outputs": bad},
                                           {"name": "vendor-new", "outputs": good}]}  # fmt: skip
    for change, field in (
        ({"baseline": 2}, "baseline"),
        ({"systems": [{"name": "x", "outputs": bad}, {"name": "x", "outputs": good}]}, "systems.1.name"),
        ({"systems": [{"name": "x", "outputs": [{"prompt_id": 999999, "text": "t"}]},
                      {"name": "y", "outputs": good}]}, "systems.0.outputs.0.prompt_id"),
        ({"systems": [{"name": "x", "outputs": bad}, {"outputs": good}]}, "systems.1.name"),
        ({"systems": [{"name": "x", "outputs": bad}, {"model_version_id": 424242}]}, "systems.1.model_version_id"),
        ({"prompt_count": 5, "split": "train"}, "prompt_count"),
        ({"overlap": 9}, "overlap"),
    ):  # fmt: skip
        r = researcher.post("/api/v1/evaluations", json={**body, **change})
        assert r.status_code == 422 and field_of(r) == field, (change, r.text)
    assert ok(researcher.get("/api/v1/evaluations")) == []

    created = ok(
        researcher.post(
            "/api/v1/evaluations",
            json={**body, "baseline": 0, "judges": "held_out", "overlap": 2},
        ),
        202,
    )
    assert created["job_id"] is None  # uploaded outputs only: no sampling
    evaluation_id = created["evaluation_id"]
    state = ok(researcher.get(f"/api/v1/evaluations/{evaluation_id}"))
    assert state["status"] == "judging" and state["tasks"]["total"] == len(TOPICS)

    judges = [api_as("labeler", make_user("labeler", held_out=True)) for _ in range(2)]
    trainee = api_as("labeler")
    # only held-out labelers may judge this run; an ordinary labeler sees nothing
    assert trainee.get("/api/v1/tasks/next", params={"kind": "evaluation"}).status_code == 204
    summary = simulate(judges, preferences.keyword, agreement=0.8, kinds=["evaluation"], seed=1)
    assert summary.submitted == 2 * len(TOPICS)

    state = ok(researcher.get(f"/api/v1/evaluations/{evaluation_id}"))
    assert state["status"] == "done"
    assert state["tasks"] == {"total": 12, "judged": 12, "judgments": 24}
    assert state["baseline"] == "vendor-old"
    old, new = state["systems"]
    assert old["name"] == "vendor-old" and old["win_rate"] is None and old["is_baseline"]
    assert new["judgments"] == 24 and new["prompts"] == 12
    lo, hi = new["win_rate_ci95"]
    assert new["win_rate"] > 0.7 and 0.5 < lo <= new["win_rate"] <= hi <= 1
    assert new["likert_mean"] > old["likert_mean"]
    assert sum(new["likert_distribution"].values()) == 24
    assert set(new["flag_rates"]) >= {"hallucination", "fails_to_follow"}
    held_out = {s["name"]: s for s in state["by_judges"]["held_out"]}
    assert held_out["vendor-new"]["judgments"] == 24
    assert all(s["judgments"] == 0 for s in state["by_judges"]["training"])
    assert state["by_use_case"]["unspecified"][1]["judgments"] == 24

    board = ok(researcher.get("/api/v1/leaderboard"))
    assert [row["name"] for row in board] == ["vendor-new", "vendor-old"]
    assert board[0]["strength"] > 0.5 > board[1]["strength"]
    assert board[0]["ci95"][0] <= board[0]["strength"] <= board[0]["ci95"][1]
    assert board[0]["judgments"] == 24 and board[0]["evaluations"] == 1

    export = researcher.get("/api/v1/export/evaluations", params={"evaluation_id": evaluation_id})
    assert export.status_code == 200 and export.headers["x-total-count"] == "24"
    import json

    records = [json.loads(line) for line in export.text.splitlines()]
    assert {r["judge_group"] for r in records} == {"held_out"}
    assert all({o["system"] for o in r["outputs"]} == {"vendor-old", "vendor-new"} for r in records)
    assert all(o["likert"] is not None for r in records for o in r["outputs"])
    assert (
        researcher.get("/api/v1/export/evaluations", params={"evaluation_id": 99999}).status_code
        == 404
    )

    # no evaluation judgment reaches a training export, even with held-out labelers included
    for path, params in (
        ("/api/v1/export/comparisons", {"format": "rankings"}),
        ("/api/v1/export/comparisons", {"format": "pairs"}),
        ("/api/v1/export/comparisons", {"format": "consensus"}),
        ("/api/v1/export/demonstrations", {}),
    ):
        r = researcher.get(path, params={**params, "include_held_out_labelers": "true"})
        assert r.status_code == 200 and r.headers["x-total-count"] == "0", (path, r.text)
    # the pages: the chart with its whiskers and the 50% line, the tables, the leaderboard
    page = researcher.get(f"/admin/evaluations/{evaluation_id}")
    assert page.status_code == 200 and "<svg" in page.text and 'class="half-line"' in page.text
    assert page.text.count('class="whisker"') == 1 and "vendor-new" in page.text
    assert "Hallucination" in page.text and "By judge group" in page.text
    listing = researcher.get("/admin/evaluations")
    assert listing.status_code == 200 and "vendors" in listing.text
    leaderboard_page = researcher.get("/admin/leaderboard")
    assert leaderboard_page.status_code == 200 and "vendor-new" in leaderboard_page.text
    assert researcher.get("/admin/evaluations/999999").status_code == 404
    # labelers cannot read results
    assert judges[0].get(f"/api/v1/evaluations/{evaluation_id}").status_code == 403


def test_a_reproducible_draw_of_test_prompts_for_any_judge(api_as) -> None:
    researcher = api_as("researcher")
    ok(researcher.put("/api/v1/split-pins/draw-customer", json={"split": "test"}))
    items = [{"text": f"Describe {t} in a line.", "user_id": "draw-customer"} for t in TOPICS]
    ids = [r["prompt_id"] for r in ok(researcher.post("/api/v1/prompts", json={"prompts": items}))["results"]]  # fmt: skip
    outputs = [{"prompt_id": p, "text": f"Answer {p}"} for p in ids]
    body = {
        "name": "draw",
        "systems": [{"name": "a", "outputs": outputs}, {"name": "b", "outputs": outputs[::-1]}],
        "prompt_count": 5,
        "seed": 7,
    }
    first = ok(researcher.post("/api/v1/evaluations", json=body), 202)["evaluation_id"]
    second = ok(researcher.post("/api/v1/evaluations", json={**body, "name": "again"}), 202)
    from sqlalchemy import select

    from app.db import get_sessionmaker
    from app.models import Task

    with get_sessionmaker()() as s:
        drawn = [
            sorted(s.scalars(select(Task.prompt_id).where(Task.evaluation_id == e)))
            for e in (first, second["evaluation_id"])
        ]
    assert len(drawn[0]) == 5 and drawn[0] == drawn[1]
    # judges "any": an ordinary labeler judges, with every output scored
    labeler = api_as("labeler")
    task = ok(labeler.get("/api/v1/tasks/next", params={"kind": "evaluation"}))
    assert (
        task["kind"] == "evaluation" and task["likert_required"] and len(task["completions"]) == 2
    )
    ids = [c["completion_id"] for c in task["completions"]]
    r = labeler.post(
        f"/api/v1/tasks/{task['task_id']}/submission", json={"ranking": [[ids[0]], [ids[1]]]}
    )
    assert r.status_code == 422 and r.json()["field"] == "ratings"
