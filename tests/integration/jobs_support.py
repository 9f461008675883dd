"""The loop driven over HTTP, shared by the PostgreSQL + Redis and the embedded-default tests:
label data through the API, then SFT -> RM -> PPO -> sample with the tiny model.

``client`` is anything with httpx's get/post (a TestClient or an httpx.Client with a base URL)
carrying a bearer token.
"""

from __future__ import annotations

import time
from typing import Any

# small hyper-parameters so each job of the tiny model takes seconds on a CPU
SFT_PARAMS = {
    "base_model": "tiny", "epochs": 2, "batch_size": 4, "max_length": 96,
    "val_samples": 2, "val_max_new_tokens": 4, "residual_dropout": 0.0,
}  # fmt: skip
RM_PARAMS = {"epochs": 1, "batch_size": 2, "max_length": 96, "eval_batch_size": 4}
PPO_PARAMS = {
    "iterations": 2, "rollout_batch_size": 4, "minibatch_size": 2, "ppo_epochs": 1,
    "max_new_tokens": 8, "max_length": 96, "kl_coef": 0.02,
}  # fmt: skip
SAMPLE_PARAMS = {"k": 4, "prompt_count": 2, "max_new_tokens": 8, "batch_size": 8, "max_length": 96}

TOPICS = ["a wise frog", "the moon", "bread", "rivers", "a lost key", "winter", "robots",
          "tea", "a lighthouse", "maps", "a quiet town", "bees"]  # fmt: skip


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    return response.json() if response.content else None


def seed_labels(researcher: Any, labeler: Any, tag: str) -> dict[str, list[int]]:
    """Prompts (train and val), demonstrations for all of them, and four K=4 rankings, all
    through the JSON API. Returns prompt ids by split."""
    for user_id, split in ((f"{tag}-cust-a", "train"), (f"{tag}-cust-b", "train"),
                           (f"{tag}-cust-v", "val")):  # fmt: skip
        ok(researcher.put(f"/api/v1/split-pins/{user_id}", json={"split": split}))
    items = [
        {"text": f"Write a short story about {topic} ({tag}).", "user_id": f"{tag}-cust-a"}
        for topic in TOPICS[:8]
    ]
    items += [
        {"text": f"Describe {t} in one line ({tag}).", "user_id": f"{tag}-cust-b"}
        for t in TOPICS[8:]
    ]
    items += [
        {"text": f"Explain {t} to a child ({tag}).", "user_id": f"{tag}-cust-v"} for t in TOPICS[:3]
    ]
    results = ok(researcher.post("/api/v1/prompts", json={"prompts": items}))["results"]
    by_split: dict[str, list[int]] = {"train": [], "val": []}
    for r in results:
        assert r["status"] == "accepted", r
        by_split[r["split"]].append(r["prompt_id"])
    mine = set(by_split["train"]) | set(by_split["val"])

    # a demonstration for every prompt of ours (skip tasks of other data, e.g. the demo set)
    written = 0
    while True:
        r = labeler.get("/api/v1/tasks/next", params={"kind": "demonstration"})
        if r.status_code == 204:
            break
        task = ok(r)
        body: dict[str, Any]
        if task["prompt"]["prompt_id"] in mine:
            body = {"text": f"Here is a careful answer: {task['prompt']['text'][:40]} ... done."}
            written += 1
        else:
            body = {"skip": {"reason": "not part of this test"}}
        ok(labeler.post(f"/api/v1/tasks/{task['task_id']}/submission", json=body))
    assert written == len(mine)

    # four K=4 ranking tasks on train prompts, ranked with a tie
    for prompt_id in by_split["train"][:4]:
        completions = [
            {"text": text, "origin": "vendor-test"}
            for text in ("A clear, kind answer.", "A vague answer.", "Off topic.", "No.")
        ]
        made = ok(
            researcher.post(
                "/api/v1/completions", json={"prompt_id": prompt_id, "completions": completions}
            ),
            201,
        )
        ids = [c["completion_id"] for c in made["completions"]]
        ok(
            researcher.post(
                "/api/v1/ranking-tasks",
                json={"prompt_id": prompt_id, "completion_ids": ids, "overlap": 1},
            ),
            201,
        )
    ranked = 0
    while ranked < 4:
        task = ok(labeler.get("/api/v1/tasks/next", params={"kind": "ranking"}))
        shown = {c["text"]: c["completion_id"] for c in task["completions"]}
        if task["prompt"]["prompt_id"] not in mine:
            ok(labeler.post(f"/api/v1/tasks/{task['task_id']}/submission",
                            json={"skip": {"reason": "not part of this test"}}))  # fmt: skip
            continue
        order = [[shown["A clear, kind answer."]], [shown["A vague answer."]],
                 [shown["Off topic."], shown["No."]]]  # fmt: skip
        ratings = {str(shown["No."]): {"likert": 1, "flags": ["fails_to_follow"]}}
        ok(
            labeler.post(
                f"/api/v1/tasks/{task['task_id']}/submission",
                json={"ranking": order, "ratings": ratings},
            )
        )
        ranked += 1
    return by_split


def launch(client: Any, kind: str, params: dict[str, Any]) -> int:
    return ok(client.post("/api/v1/jobs", json={"kind": kind, "params": params}), 201)["job_id"]


def wait_job(client: Any, job_id: int, timeout: float = 300, until: tuple[str, ...] = ()) -> dict:
    """Poll until the job ends (or reaches a status in ``until``); returns its JSON."""
    terminal = until or ("succeeded", "failed", "cancelled")
    deadline = time.monotonic() + timeout
    while True:
        job = ok(client.get(f"/api/v1/jobs/{job_id}"))
        if job["status"] in terminal:
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']}: {job}"
        time.sleep(0.5)


def wait_training(client: Any, job_id: int, timeout: float = 180) -> dict:
    """Poll until the job is running and past its first step; returns its JSON."""
    deadline = time.monotonic() + timeout
    while True:
        job = ok(client.get(f"/api/v1/jobs/{job_id}"))
        if job["status"] == "running" and job["progress"]["step"] > 0:
            return job
        assert job["status"] in ("queued", "running"), job
        assert time.monotonic() < deadline, job
        time.sleep(0.2)


def succeeded(client: Any, job_id: int) -> dict:
    job = wait_job(client, job_id)
    assert job["status"] == "succeeded", f"{job['error']}\n{job['log_tail']}"
    return job


def run_loop(client: Any, base_model: Any = "tiny", **ppo_overrides: Any) -> dict[str, Any]:
    """SFT -> RM -> PPO -> sample; checks each job registered a version with the right
    parents. Returns the job and version ids."""
    models = {m["model_version_id"]: m for m in ok(client.get("/api/v1/models"))}

    sft_job = succeeded(client, launch(client, "sft", dict(SFT_PARAMS, base_model=base_model)))
    assert sft_job["progress"]["step"] == sft_job["progress"]["total"] > 0
    assert "loss" in sft_job["metrics"]
    metrics = ok(client.get(f"/api/v1/jobs/{sft_job['job_id']}/metrics"))
    assert len(metrics["loss"]) >= 2  # a series over time, not only the last value
    assert set(sft_job["snapshot_ids"]) >= {"train", "val"}
    models = {m["model_version_id"]: m for m in ok(client.get("/api/v1/models"))}
    sft = models[sft_job["model_version_id"]]
    assert sft["kind"] == "sft" and sft["job_id"] == sft_job["job_id"]
    (base_id,) = sft["parents"]
    assert models[base_id]["kind"] == "base"
    assert sft["metrics"] and sft["path"].endswith(f"sft-{sft_job['job_id']}")

    rm_job = succeeded(
        client, launch(client, "rm", dict(RM_PARAMS, sft_model_version_id=sft["model_version_id"]))
    )
    models = {m["model_version_id"]: m for m in ok(client.get("/api/v1/models"))}
    rm = models[rm_job["model_version_id"]]
    assert rm["kind"] == "rm" and rm["parents"] == [sft["model_version_id"]]

    # an RM given as the policy is refused before anything runs
    bad = client.post("/api/v1/jobs", json={"kind": "ppo", "params": dict(
        PPO_PARAMS, sft_model_version_id=rm["model_version_id"],
        rm_model_version_id=rm["model_version_id"])})  # fmt: skip
    assert bad.status_code == 422 and bad.json()["field"] == "params.sft_model_version_id"

    ppo_job = succeeded(
        client,
        launch(
            client,
            "ppo",
            dict(
                PPO_PARAMS,
                **ppo_overrides,
                sft_model_version_id=sft["model_version_id"],
                rm_model_version_id=rm["model_version_id"],
            ),
        ),  # fmt: skip
    )
    models = {m["model_version_id"]: m for m in ok(client.get("/api/v1/models"))}
    ppo = models[ppo_job["model_version_id"]]
    assert ppo["kind"] == "ppo"
    assert ppo["parents"] == [sft["model_version_id"], rm["model_version_id"]]
    ok(client.post(f"/api/v1/models/{ppo['model_version_id']}/current"))

    sample_job = succeeded(
        client,
        launch(
            client,
            "sample",
            dict(
                SAMPLE_PARAMS, model_version_ids=[ppo["model_version_id"], sft["model_version_id"]]
            ),
        ),  # fmt: skip
    )
    assert sample_job["metrics"]["ranking_tasks"] == 2 and sample_job["model_version_id"] is None
    # the tasks wait for the researcher's preview: released here through the API
    released = ok(client.post(f"/api/v1/jobs/{sample_job['job_id']}/release"))
    assert released == {"job_id": sample_job["job_id"], "tasks": 2}
    return {
        "sft": sft["model_version_id"], "rm": rm["model_version_id"],
        "ppo": ppo["model_version_id"], "sample_job": sample_job["job_id"],
    }  # fmt: skip


def find_sampled_task(labeler: Any, task_ids: set[int]) -> dict:
    """Take ranking tasks from the labeler's queue until one of ``task_ids`` comes up."""
    for _ in range(100):
        r = labeler.get("/api/v1/tasks/next", params={"kind": "ranking"})
        assert r.status_code == 200, "the sampled ranking tasks never reached the queue"
        task = r.json()
        if task["task_id"] in task_ids:
            return task
        ok(labeler.post(f"/api/v1/tasks/{task['task_id']}/submission",
                        json={"skip": {"reason": "looking for the sampled tasks"}}))  # fmt: skip
    raise AssertionError("the sampled ranking tasks never reached the queue")
