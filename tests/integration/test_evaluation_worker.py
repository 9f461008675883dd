"""An evaluation on PostgreSQL + Redis with a real worker: a PPO version against its SFT
parent on the tiny preset, through sampling (with RM scores and KL), simulated judging and
results; and the reward model's cross-validation by labeler group (rm-cv)."""

from __future__ import annotations

from typing import Any

import pytest

from app.simulation import preferences, simulate
from tests.integration.jobs_support import RM_PARAMS, launch, ok, run_loop, succeeded
from tests.integration.test_jobs_worker import clients, stack  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]


def test_ppo_against_its_sft_parent_then_rm_cv(clients: dict[str, Any]) -> None:  # noqa: F811
    from app.db import get_sessionmaker
    from app.services.accounts import create_token, create_user

    researcher = clients["researcher"]
    ids = run_loop(researcher)
    ok(researcher.put("/api/v1/split-pins/eval-pg-customer", json={"split": "test"}))
    items = [
        {"text": f"Say something kind about {t}.", "user_id": "eval-pg-customer"}
        for t in ("frogs", "rain", "maps", "bread")
    ]
    ok(researcher.post("/api/v1/prompts", json={"prompts": items}))

    created = ok(
        researcher.post(
            "/api/v1/evaluations",
            json={
                "name": "ppo vs sft",
                "systems": [
                    {"model_version_id": ids["ppo"]},
                    {"model_version_id": ids["sft"], "name": "sft parent"},
                ],
                "baseline": 1,
                "prompt_count": 3,
                "overlap": 2,
                "sampling": {"max_new_tokens": 8, "max_length": 96, "batch_size": 8},
            },
        ),
        202,
    )
    evaluation_id, job_id = created["evaluation_id"], created["job_id"]
    assert job_id is not None
    state = ok(researcher.get(f"/api/v1/evaluations/{evaluation_id}"))
    assert state["status"] in ("sampling", "judging")
    job = succeeded(researcher, job_id)
    assert job["kind"] == "evaluation-sample" and job["metrics"]["outputs_sampled"] == 6

    state = ok(researcher.get(f"/api/v1/evaluations/{evaluation_id}"))
    assert state["status"] == "judging" and state["tasks"]["total"] == 3
    ppo, sft = state["systems"]
    assert ppo["model_version_id"] == ids["ppo"] and sft["name"] == "sft parent"
    # the RM the PPO version was trained against scored every output; KL is PPO's to SFT
    assert state["rm"]["model_version_id"] == ids["rm"]
    assert ppo["rm_score_mean"] is not None and sft["rm_score_mean"] is not None
    assert ppo["kl_mean"] is not None and sft["kl_mean"] == 0.0
    assert ppo["outputs"] == sft["outputs"] == 3

    # two simulated judges (new labelers, tokens through the service)
    judges = []
    from fastapi.testclient import TestClient

    from app.main import create_app

    with get_sessionmaker()() as s:
        for n in range(2):
            user = create_user(s, f"pg-judge-{n}", "correct horse battery", "labeler")
            s.flush()
            _, secret = create_token(s, user.username, "sim", None)
            client = TestClient(create_app())
            client.headers["Authorization"] = f"Bearer {secret}"
            judges.append(client)
        s.commit()
    summary = simulate(judges, preferences.length, kinds=["evaluation", "ranking"], seed=3)
    assert summary.labelers[0]["evaluation"] + summary.labelers[1]["evaluation"] == 6

    state = ok(researcher.get(f"/api/v1/evaluations/{evaluation_id}"))
    assert state["status"] == "done" and state["tasks"]["judgments"] == 6
    ppo = state["systems"][0]
    assert ppo["judgments"] == 6 and 0 <= ppo["win_rate"] <= 1
    lo, hi = ppo["win_rate_ci95"]
    assert lo <= ppo["win_rate"] <= hi
    assert state["rm"]["judgments"] == 6 and state["rm"]["agreement_with_judges"] is not None
    board = ok(researcher.get("/api/v1/leaderboard"))
    assert {row["model_version_id"] for row in board} == {ids["ppo"], ids["sft"]}

    # the judges also ranked the sampled training tasks: two labelers -> 2-fold rm-cv
    cv = succeeded(
        researcher,
        launch(
            researcher,
            "rm-cv",
            dict(RM_PARAMS, sft_model_version_id=ids["sft"], folds=5),
        ),
    )
    metrics = cv["metrics"]
    assert metrics["folds"] == 3 and metrics["labelers"] == 3  # seeding labeler + two judges
    assert 0 <= metrics["cv_accuracy_mean"] <= 1
    assert cv["model_version_id"] is None
