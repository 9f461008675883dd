"""The labeled data set the export tests read, made through the real JSON APIs, and what each
export should contain.

Prompts come in through intake (`POST /api/v1/prompts`, split pins, a labeler-written prompt),
completions and ranking tasks through `POST /api/v1/completions` and `/ranking-tasks`, and
labels through `GET /api/v1/tasks/next` + `POST /api/v1/tasks/{id}/submission`: K = 4..9
with and without ties, two labelers on one prompt, a held-out labeler, a skipped task, all
three splits. The ORM factory (export_data.py) is used only for what no API can do: back-date
two rankings, and labels on prompts that are no longer accepted.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from app.db import get_sessionmaker, utcnow
from app.models import Ranking
from tests.conftest import TEST_PASSWORD, TestUser, _reset_caches, configure_env, truncate_all
from tests.integration.export_data import Expected, add_demonstration, add_prompt, add_ranking

# (prompt key, labeler key, tie groups of completion indices, best first)
RANKINGS: list[tuple[str, str, list[list[int]]]] = [
    ("train-a", "l1", [[0], [1], [2], [3]]),  # K=4, strict
    ("train-b", "l1", [[0, 1], [2], [3, 4]]),  # K=5, two ties
    ("val-a", "l1", [[0], [1, 2, 3], [4], [5]]),  # K=6, a three-way tie
    ("val-b", "l2", [[0, 1, 2, 3, 4, 5, 6]]),  # K=7, all tied: no pair
    ("test-a", "l1", [[0], [1], [2], [3], [4], [5], [6], [7]]),  # K=8
    ("test-b", "l2", [[0], [1], [2, 3], [4], [5], [6], [7], [8]]),  # K=9
    ("train-a", "l2", [[3], [2], [1], [0]]),  # a second labeler on the same prompt
    ("own", "l1", [[1], [0], [2], [3]]),  # a labeler-written prompt
    ("train-b", "held", [[0], [1], [2], [3]]),  # held-out labeler
    ("val-a", "held", [[1], [0, 2], [3]]),  # held-out labeler, K=4 with a tie
]
# rankings back-dated ten days (for since/until)
OLD = {("test-a", "l1"), ("val-b", "l2")}
# demonstrations each labeler writes (the queue picks the prompts)
DEMONSTRATIONS = {"l1": 5, "l2": 1, "held": 1}
# texts that JSON must escape, in one ranking
TRICKY = ['say "hi"\n\tbye', "ünïcødé ✓ 🐸", "back\\slash </script>", "\u2028line sep"]


@dataclass
class ExportEnv:
    researcher: TestClient
    anonymous: TestClient
    labeler: TestClient
    researcher_user: TestUser
    expected: Expected


def _client(
    app: Any, role: str, username: str, held_out: bool = False
) -> tuple[TestClient, TestUser]:
    from app.services.accounts import create_token, create_user

    with get_sessionmaker()() as s:
        user = create_user(s, username, TEST_PASSWORD, role)
        user.held_out = held_out
        _, secret = create_token(s, username, "export tests", None)
        s.commit()
        test_user = TestUser(user.id, username, role)
    client = TestClient(app)
    client.headers["Authorization"] = f"Bearer {secret}"
    return client, test_user


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def _ranking_task(
    researcher: TestClient, prompt_id: int, texts: list[str]
) -> tuple[int, list[int]]:
    """Completions and a ranking task over them, through the API: (task id, completion ids)."""
    completions = [{"text": t, "origin": "test"} for t in texts]
    body = {"prompt_id": prompt_id, "completions": completions}
    made = ok(researcher.post("/api/v1/completions", json=body), 201)
    ids = [c["completion_id"] for c in made["completions"]]
    body = {"prompt_id": prompt_id, "completion_ids": ids, "overlap": 1}
    task = ok(researcher.post("/api/v1/ranking-tasks", json=body), 201)
    return task["task_id"], ids


def _take(labeler: TestClient, task_id: int, answer: dict[str, Any]) -> dict[str, Any]:
    """The labeler takes the next ranking task (the one just made) and answers it."""
    shown = ok(labeler.get("/api/v1/tasks/next", params={"kind": "ranking"}))
    assert shown["task_id"] == task_id
    return ok(labeler.post(f"/api/v1/tasks/{task_id}/submission", json=answer))


def _rank(
    researcher: TestClient,
    labeler: TestClient,
    prompt_id: int,
    texts: list[str],
    groups: list[list[int]],
) -> int:
    """One ranking through the labeling API; returns its ranking_id."""
    task_id, ids = _ranking_task(researcher, prompt_id, texts)
    ratings = {ids[0]: {"likert": 6}, ids[1]: {"likert": 3}, ids[-1]: {"flags": ["hallucination"]}}
    answer = {"ranking": [[ids[i] for i in g] for g in groups], "ratings": ratings}
    return _take(labeler, task_id, answer)["ranking_id"]


def seed_through_api(
    researcher: TestClient, labelers: dict[str, tuple[TestClient, TestUser]], held_out: str
) -> Expected:
    exp = Expected()
    ids = {key: user.id for key, (_, user) in labelers.items()}
    exp.held_out_labelers = {ids[held_out]}
    prompts: dict[str, int] = {}
    items = []
    for split in ("train", "val", "test"):
        ok(researcher.put(f"/api/v1/split-pins/customer-{split}", json={"split": split}))
        for suffix, use_case in (("a", "Generation"), ("b", "Open QA")):
            items.append(
                {
                    "text": f"Explain the {split} topic {suffix} to a child",
                    "user_id": f"customer-{split}",
                    "external_id": f"{split}-{suffix}",
                    "use_case": use_case,
                }
            )
    # a duplicate of the first prompt: never exported
    items.append({"text": items[0]["text"], "user_id": "customer-val", "external_id": "dup"})
    for result in ok(researcher.post("/api/v1/prompts", json={"prompts": items}))["results"]:
        if result["external_id"] == "dup":
            assert result["status"] == "duplicate"
            continue
        assert result["status"] == "accepted", result
        prompts[result["external_id"]] = result["prompt_id"]
        exp.prompt_split[result["prompt_id"]] = result["split"]
        exp.api_prompts.add(result["prompt_id"])
    for key, text in (("l2", "Brainstorm names for a cat"), (held_out, "Chat about the weather")):
        written = ok(
            labelers[key][0].post(
                "/api/v1/labeler-prompts",
                json={"kind": "use_case", "text": text, "use_case": "Brainstorming"},
            )
        )
        prompt = written["prompt"]
        exp.prompt_split[prompt["prompt_id"]] = written["result"]["split"]
        if key == held_out:
            exp.held_out_authored.add(prompt["prompt_id"])
        else:
            prompts["own"] = prompt["prompt_id"]

    for prompt_key, labeler_key, groups in RANKINGS:
        k = sum(len(g) for g in groups)
        texts = [f"{prompt_key} by {labeler_key}: answer {i} of {k}" for i in range(k)]
        if k == 9:
            texts[: len(TRICKY)] = [f"{t} ({prompt_key})" for t in TRICKY]
        prompt_id = prompts[prompt_key]
        ranking_id = _rank(researcher, labelers[labeler_key][0], prompt_id, texts, groups)
        tie_texts = [[texts[i] for i in g] for g in groups]
        exp.rankings[ranking_id] = (
            prompt_id,
            exp.prompt_split[prompt_id],
            ids[labeler_key],
            tie_texts,
        )
        if labeler_key == held_out:
            exp.held_out_rankings.add(ranking_id)
        if (prompt_key, labeler_key) in OLD:
            exp.old_rankings.add(ranking_id)

    # a skipped ranking task leaves no label
    skipped = [f"skipped answer {i}" for i in range(5)]
    task_id, _ = _ranking_task(researcher, prompts["test-a"], skipped)
    _take(labelers["l1"][0], task_id, {"skip": {"reason": "unclear"}})
    exp.skipped_texts = set(skipped)

    for key, count in DEMONSTRATIONS.items():
        client = labelers[key][0]
        for n in range(count):
            shown = ok(client.get("/api/v1/tasks/next", params={"kind": "demonstration"}))
            text = f"A demonstration by {key}, number {n}"
            ok(client.post(f"/api/v1/tasks/{shown['task_id']}/submission", json={"text": text}))
            prompt_id = shown["prompt"]["prompt_id"]
            exp.demonstrations[text] = (
                prompt_id,
                exp.prompt_split[prompt_id],
                ids[key],
                key == held_out,
            )
    return exp


def add_unreachable_data(exp: Expected, labeler_id: int) -> None:
    """What no API can make: back-dated rankings, labels on prompts no longer accepted."""
    exp.cutoff = utcnow() - timedelta(days=1)
    with get_sessionmaker()() as s:
        s.execute(
            update(Ranking)
            .where(Ranking.id.in_(exp.old_rankings))
            .values(created_at=utcnow() - timedelta(days=10))
        )
        for status in ("duplicate", "over_cap", "pii_dropped"):
            bad = add_prompt(s, f"A {status} prompt", split="train", status=status)
            exp.unusable_prompts.add(bad.id)
            add_ranking(
                s, bad, labeler_id, [f"{status} answer {i}" for i in range(4)], [[0], [1], [2], [3]]
            )
            add_demonstration(s, bad, labeler_id, f"{status} demonstration")
            exp.skipped_texts |= {f"{status} answer 0", f"{status} demonstration"}
        s.commit()


@pytest.fixture(scope="module")
def export_env(db_url: str, data_dir: Path) -> Iterator[ExportEnv]:
    """The seeded data set, once per test module and database backend (tests only read it)."""
    from app.main import create_app

    with pytest.MonkeyPatch.context() as mp:
        configure_env(
            mp,
            data_dir,
            db_url,
            pii_ner_model="none",
            demonstration_splits="train,val,test",
        )
        app = create_app()
        researcher, researcher_user = _client(app, "researcher", "exp-researcher")
        labelers = {
            "l1": _client(app, "labeler", "exp-l1"),
            "l2": _client(app, "labeler", "exp-l2"),
            "held": _client(app, "labeler", "exp-held", held_out=True),
        }
        expected = seed_through_api(researcher, labelers, "held")
        add_unreachable_data(expected, labelers["l1"][1].id)
        yield ExportEnv(researcher, TestClient(app), labelers["l1"][0], researcher_user, expected)
        _reset_caches()
        truncate_all(db_url)
