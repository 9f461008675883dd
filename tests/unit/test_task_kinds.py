"""Task kinds share one queue: gold tasks pass for rankings and go once to every labeler,
evaluation tasks go only to their run's judges with every output scored, screening labelers
get the screening set alone, and no evaluation or gold label reaches a training export."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from app.models import Task, TaskKind
from tests.labeling_support import make_prompt


def _db(fn):
    from app.db import get_sessionmaker

    with get_sessionmaker()() as s:
        result = fn(s)
        s.commit()
        return result


def _next(client, kind: str | None = "ranking") -> dict[str, Any] | None:
    r = client.get("/api/v1/tasks/next" + (f"?kind={kind}" if kind else ""))
    assert r.status_code in (200, 204), r.text
    return r.json() if r.status_code == 200 else None


def _next_task_id(client, kind: str | None = "ranking") -> int:
    """The id of the task ``_next`` serves; the test fails when none is waiting."""
    task = _next(client, kind)
    assert task is not None, "no task was waiting"
    return int(task["task_id"])


def _task(kind: TaskKind, k: int = 4, **fields: Any) -> tuple[int, list[int]]:
    from app.services.completions import add_completions, create_ranking_task

    prompt_id = make_prompt(split=fields.pop("split", "train"))

    def create(s):
        rows = add_completions(
            s, prompt_id, [{"text": f"output {i} of {prompt_id}", "origin": "t"} for i in range(k)]
        )
        task = create_ranking_task(s, prompt_id, [c.id for c in rows], kind=kind, **fields)
        return task.id, [c.id for c in rows]

    return _db(create)


def _evaluation(judges: str) -> int:
    from app.models import Evaluation

    def create(s):
        evaluation = Evaluation(name=f"eval {judges}", judges=judges)
        s.add(evaluation)
        s.flush()
        return evaluation.id

    return _db(create)


def _set(user_id: int, **values: Any) -> None:
    from app.models import User

    def update(s):
        user = s.get(User, user_id)
        for key, value in values.items():
            setattr(user, key, value)

    _db(update)


def _export(client, dataset: str = "comparisons") -> list[dict[str, Any]]:
    import json

    r = client.get(f"/api/v1/export/{dataset}?include_held_out_labelers=true")
    assert r.status_code == 200, r.text
    return [json.loads(line) for line in r.text.splitlines() if line.strip()]


def test_gold_passes_for_a_ranking_and_goes_once_to_every_labeler(
    api_as, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.config import get_settings

    monkeypatch.setenv("PREFLOOP_GOLD_RATE", "1")
    get_settings.cache_clear()
    gold_id, ids = _task(TaskKind.gold, reference={"ranking": [[0]]})
    regular_id, regular_ids = _task(TaskKind.ranking)
    labelers = [api_as("labeler") for _ in range(3)]
    for labeler in labelers:
        shown = _next(labeler)
        # gold first (rate 1), told apart by nothing the labeler sees
        assert shown is not None and shown["task_id"] == gold_id
        assert shown["kind"] == "ranking" and shown["likert_required"] is False
        r = labeler.post(f"/api/v1/tasks/{gold_id}/submission", json={"ranking": [ids]})
        assert r.status_code == 200 and r.json()["kind"] == "ranking"
    # every labeler judged it once; it holds no slots and stays open for the next labeler
    task = _db(lambda s: s.get(Task, gold_id))
    assert (task.status, task.filled) == ("open", 0)
    # with gold done, the regular stream goes on (overlap 1: one labeler gets it)
    assert _next_task_id(labelers[0]) == regular_id
    assert _next(labelers[1]) is None
    # nobody can ask for gold by name
    assert labelers[2].get("/api/v1/tasks/next?kind=gold").status_code == 422
    # gold judgments never reach the training data
    researcher = api_as("researcher")
    labelers[0].post(f"/api/v1/tasks/{regular_id}/submission", json={"ranking": [regular_ids]})
    regular_prompt = _db(lambda s: s.get(Task, regular_id).prompt_id)
    assert [r["prompt_id"] for r in _export(researcher)] == [regular_prompt]


def test_gold_is_mixed_in_at_the_rate_and_never_served_alone(
    api_as, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.config import get_settings

    monkeypatch.setenv("PREFLOOP_GOLD_RATE", "0")
    get_settings.cache_clear()
    gold_id, _ = _task(TaskKind.gold)
    regular_id, _ = _task(TaskKind.ranking)
    labeler = api_as("labeler")
    assert _next_task_id(labeler) == regular_id
    # gold only ever comes mixed into regular work: with none left, nothing is waiting
    other = api_as("labeler")
    assert _next(other) is None
    assert _db(lambda s: s.get(Task, gold_id)).filled == 0


def test_an_expired_hold_on_gold_gives_no_slot_back(
    api_as, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.config import get_settings
    from app.db import utcnow
    from app.models import Assignment
    from app.services.queue_upkeep import release_expired_locks

    monkeypatch.setenv("PREFLOOP_GOLD_RATE", "1")
    get_settings.cache_clear()
    _task(TaskKind.ranking)
    gold_id, _ = _task(TaskKind.gold)
    labeler = api_as("labeler")
    assert _next_task_id(labeler) == gold_id
    assert _db(lambda s: release_expired_locks(s, utcnow() + timedelta(days=1))) == 1
    assert _db(lambda s: s.get(Task, gold_id)).filled == 0
    # and the labeler can take it up again
    assert _db(lambda s: s.query(Assignment).filter_by(task_id=gold_id).one().status) == "expired"
    assert _next_task_id(labeler) == gold_id


def test_evaluation_tasks_go_only_to_their_judges_with_every_output_scored(
    api_as, make_user
) -> None:
    held_out_eval = _evaluation("held_out")
    task_id, ids = _task(TaskKind.evaluation, k=2, evaluation_id=held_out_eval, split="test")
    training_labeler = api_as("labeler")
    assert _next(training_labeler, "evaluation") is None
    assert _next(training_labeler, None) is None
    judge = api_as("labeler", user=make_user("labeler", held_out=True))
    # evaluation tasks are asked for by their kind (and served to "any")
    assert _next(judge, "ranking") is None
    shown = _next(judge, "evaluation")
    assert shown is not None and shown["task_id"] == task_id
    assert shown["kind"] == "evaluation" and shown["likert_required"] is True
    assert sorted(c["completion_id"] for c in shown["completions"]) == sorted(ids)
    url = f"/api/v1/tasks/{task_id}/submission"
    r = judge.post(url, json={"ranking": [ids], "ratings": {str(ids[0]): {"likert": 5}}})
    assert r.status_code == 422 and r.json()["field"] == "ratings"
    assert "every output" in r.json()["detail"]
    ratings = {str(cid): {"likert": 5, "flags": ["hallucination"]} for cid in ids}
    r = judge.post(url, json={"ranking": [[ids[1]], [ids[0]]], "ratings": ratings})
    assert r.status_code == 200 and r.json()["kind"] == "evaluation"
    assert _db(lambda s: s.get(Task, task_id)).status == "done"
    researcher = api_as("researcher")
    assert _export(researcher) == []


def test_a_labeler_never_judges_a_prompt_they_demonstrated(api_as) -> None:
    from app.models import Demonstration, Task

    evaluation = _evaluation("any")
    task_id, _ = _task(TaskKind.evaluation, k=3, evaluation_id=evaluation)
    labeler = api_as("labeler")
    prompt_id = _db(lambda s: s.get(Task, task_id).prompt_id)

    def demonstrate(s):
        demo_task = Task(kind="demonstration", prompt_id=prompt_id, status="done", filled=1)
        s.add(demo_task)
        s.flush()
        s.add(
            Demonstration(
                task_id=demo_task.id, prompt_id=prompt_id, labeler_id=labeler.user.id, text="x"
            )
        )

    _db(demonstrate)
    assert _next(labeler, "evaluation") is None
    assert _next_task_id(api_as("labeler"), "evaluation") == task_id


def test_screening_labelers_get_the_screening_set_alone(
    api_as, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.config import get_settings
    from app.models import User
    from app.services.queue import waiting_counts

    monkeypatch.setenv("PREFLOOP_GOLD_RATE", "0")
    get_settings.cache_clear()
    regular_id, _ = _task(TaskKind.ranking)
    screening_gold, _ = _task(TaskKind.gold, screening=True)
    other_gold, _ = _task(TaskKind.gold)

    def gold_demo(s):
        task = Task(
            kind=TaskKind.gold_demonstration.value,
            prompt_id=make_prompt(),
            screening=True,
            reference={"text": "the ideal answer"},
        )
        s.add(task)
        s.flush()
        return task.id

    demo_id = _db(gold_demo)
    newcomer = api_as("labeler")
    _set(newcomer.user.id, labeler_status="screening")
    counts = _db(lambda s: waiting_counts(s, s.get(User, newcomer.user.id)))
    assert (counts["ranking"], counts["demonstration"]) == (1, 1)
    got = _next(newcomer, "ranking")
    assert got is not None and got["task_id"] == screening_gold and got["kind"] == "ranking"
    demo = _next(newcomer, "demonstration")
    assert demo is not None and demo["task_id"] == demo_id and demo["kind"] == "demonstration"
    r = newcomer.post(f"/api/v1/tasks/{demo_id}/submission", json={"text": "my answer"})
    assert r.status_code == 200 and r.json()["kind"] == "demonstration"
    r = newcomer.post(
        f"/api/v1/tasks/{screening_gold}/submission",
        json={"ranking": [[c["completion_id"] for c in got["completions"]]]},
    )
    assert r.status_code == 200
    # the screening set is done: nothing else until a researcher approves them
    assert _next(newcomer, None) is None
    # approved labelers never get reference demonstrations, and gold only mixed in
    _set(newcomer.user.id, labeler_status="approved")
    assert _next_task_id(newcomer, None) == regular_id
    # rejected labelers get nothing
    rejected = api_as("labeler")
    _set(rejected.user.id, labeler_status="rejected")
    assert _next(rejected, None) is None
    # a screening demonstration is never a training demonstration
    assert _export(api_as("researcher"), "demonstrations") == []
    assert other_gold not in (demo_id, screening_gold)


def test_kind_rules_check_the_number_of_outputs(session) -> None:
    from app.services import Invalid
    from app.services.completions import add_completions, create_ranking_task

    prompt_id = make_prompt()
    rows = add_completions(session, prompt_id, [{"text": f"o{i}", "origin": "t"} for i in range(3)])
    ids = [c.id for c in rows]
    with pytest.raises(Invalid, match="a ranking task needs 4 to 9 completions, got 3"):
        create_ranking_task(session, prompt_id, ids)
    task = create_ranking_task(session, prompt_id, ids[:2], kind=TaskKind.evaluation)
    assert task.kind == "evaluation"
    with pytest.raises(Invalid, match="an evaluation task needs 2 to 9"):
        create_ranking_task(session, prompt_id, ids[:1], kind=TaskKind.evaluation)
