"""Helpers of the labeler-quality tests: outputs for a prompt, and labelers working through the
JSON API (take the next task, rank it as a function of what is shown, submit)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.labeling_support import make_prompt


def outputs(k: int = 4, prompt_id: int | None = None) -> tuple[int, list[int]]:
    """An accepted prompt and ``k`` outputs for it: (prompt id, completion ids)."""
    from app.db import get_sessionmaker
    from app.services.completions import add_completions

    prompt_id = prompt_id or make_prompt()
    with get_sessionmaker()() as s:
        rows = add_completions(
            s, prompt_id, [{"text": f"output {i} of {prompt_id}", "origin": "t"} for i in range(k)]
        )
        s.commit()
        return prompt_id, [c.id for c in rows]


def ranking_task(k: int = 4, overlap: int = 1) -> tuple[int, list[int]]:
    from app.db import get_sessionmaker
    from app.services.completions import create_ranking_task

    prompt_id, ids = outputs(k)
    with get_sessionmaker()() as s:
        task = create_ranking_task(s, prompt_id, ids, overlap=overlap)
        s.commit()
        return task.id, ids


def take(client: Any, kind: str | None = "ranking") -> dict[str, Any] | None:
    r = client.get("/api/v1/tasks/next" + (f"?kind={kind}" if kind else ""))
    assert r.status_code in (200, 204), r.text
    return r.json() if r.status_code == 200 else None


Ranker = Callable[[dict[str, Any]], dict[str, Any]]


def by_ids(order: list[int], likert: dict[int, int] | None = None) -> Ranker:
    """Rank the shown outputs in the order of ``order`` (ids), best first, no ties. A deliberate
    order: confirmed, since it may happen to be the order shown (refused as untouched else)."""

    def rank(task: dict[str, Any]) -> dict[str, Any]:
        shown = [c["completion_id"] for c in task["completions"]]
        body: dict[str, Any] = {
            "ranking": [[cid] for cid in sorted(shown, key=order.index)],
            "confirmed_order": True,
        }
        if likert:
            body["ratings"] = {str(cid): {"likert": likert[cid]} for cid in shown}
        return body

    return rank


def as_shown(task: dict[str, Any]) -> dict[str, Any]:
    """Submit the outputs in the order shown, nothing else (an untouched submission, which the
    service takes only with the labeler's confirmation that the shown order is their answer)."""
    return {"ranking": [[c["completion_id"]] for c in task["completions"]], "confirmed_order": True}


def work(client: Any, rank: Ranker, kind: str | None = "ranking") -> dict[str, Any] | None:
    """Take the next task and submit what ``rank`` makes of it; returns the task or None."""
    task = take(client, kind)
    if task is None:
        return None
    body = rank(task) if task["kind"] != "demonstration" else {"text": "my demonstration"}
    r = client.post(f"/api/v1/tasks/{task['task_id']}/submission", json=body)
    assert r.status_code == 200, r.text
    return task


def worked(client: Any, rank: Ranker, kind: str | None = "ranking") -> dict[str, Any]:
    """``work`` where a task must be waiting."""
    task = work(client, rank, kind)
    assert task is not None, "no task was waiting"
    return task


def taken(client: Any, kind: str | None = "ranking") -> dict[str, Any]:
    """``take`` where a task must be waiting."""
    task = take(client, kind)
    assert task is not None, "no task was waiting"
    return task
