"""An evaluation's results, the leaderboard over every evaluation, and the judgments export:
the judgments read from the database, the figures from app/services/evaluation_stats.py."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import (
    FLAGS,
    Evaluation,
    EvaluationOutput,
    EvaluationSystem,
    ModelVersion,
    Prompt,
    Ranking,
    RankingEntry,
    Task,
    User,
)
from app.services.evaluation_stats import (
    Estimate,
    EvalJudgment,
    battles_of,
    bradley_terry,
    rm_agreement,
    system_summary,
)
from app.services.evaluations import get_evaluation, status_of, systems_of, task_counts

UNSPECIFIED = "unspecified"  # prompts without a use case


@dataclass
class Loaded:
    evaluation: Evaluation
    systems: list[EvaluationSystem]
    outputs: list[EvaluationOutput]
    judgments: list[EvalJudgment]
    # per judgment (same order): ranking id, task id, time spent, created at, display order
    meta: list[dict[str, Any]]


def load(session: Session, evaluation: Evaluation) -> Loaded:
    systems = systems_of(session, evaluation.id)
    name_of = {s.id: s.name for s in systems}
    outputs = list(
        session.scalars(
            select(EvaluationOutput).where(EvaluationOutput.evaluation_id == evaluation.id)
        )
    )
    system_of = {o.completion_id: name_of[o.system_id] for o in outputs}
    rows = session.execute(
        select(
            Ranking.id,
            Ranking.task_id,
            Ranking.prompt_id,
            Ranking.labeler_id,
            User.held_out,
            Prompt.use_case,
            Ranking.time_spent_ms,
            Ranking.created_at,
            Ranking.display_order,
        )
        .join(Task, Task.id == Ranking.task_id)
        .join(User, User.id == Ranking.labeler_id)
        .join(Prompt, Prompt.id == Ranking.prompt_id)
        .where(Task.evaluation_id == evaluation.id)
        .order_by(Ranking.id)
    ).all()
    entries: dict[int, list[RankingEntry]] = defaultdict(list)
    if rows:
        for entry in session.scalars(
            select(RankingEntry).where(RankingEntry.ranking_id.in_([r.id for r in rows]))
        ):
            entries[entry.ranking_id].append(entry)
    judgments, meta = [], []
    for r in rows:
        mine = [e for e in entries[r.id] if e.completion_id in system_of]
        judgments.append(
            EvalJudgment(
                prompt_id=r.prompt_id,
                labeler_id=r.labeler_id,
                held_out=bool(r.held_out),
                use_case=r.use_case,
                ranks={system_of[e.completion_id]: e.rank for e in mine},
                likert={system_of[e.completion_id]: e.likert for e in mine},
                flags={system_of[e.completion_id]: list(e.flags or []) for e in mine},
            )
        )
        meta.append(
            {
                "ranking_id": r.id,
                "task_id": r.task_id,
                "time_spent_ms": r.time_spent_ms,
                "created_at": r.created_at,
                "display_order": r.display_order,
                "entries": mine,
            }
        )
    return Loaded(evaluation, systems, outputs, judgments, meta)


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def _summaries(
    judgments: list[EvalJudgment], systems: list[EvaluationSystem], baseline: str
) -> list[dict[str, Any]]:
    return [
        {
            **system_summary(judgments, s.name, baseline, FLAGS),
            "model_version_id": s.model_version_id,
            "is_baseline": s.is_baseline,
        }
        for s in systems
    ]


def results(session: Session, evaluation_id: int) -> dict[str, Any]:
    """The JSON API's view of an evaluation (docs/evaluation.md explains every figure)."""
    evaluation = get_evaluation(session, evaluation_id)
    data = load(session, evaluation)
    baseline = next((s.name for s in data.systems if s.is_baseline), data.systems[0].name)
    status, error = status_of(session, evaluation)
    systems = _summaries(data.judgments, data.systems, baseline)
    by_system: dict[int, list[EvaluationOutput]] = defaultdict(list)
    for output in data.outputs:
        by_system[output.system_id].append(output)
    for summary, system in zip(systems, data.systems, strict=True):
        mine = by_system[system.id]
        summary["outputs"] = len(mine)
        summary["rm_score_mean"] = _mean([o.rm_score for o in mine if o.rm_score is not None])
        summary["kl_mean"] = _mean([o.kl for o in mine if o.kl is not None])
    by_use_case: dict[str, list[EvalJudgment]] = defaultdict(list)
    for j in data.judgments:
        by_use_case[j.use_case or UNSPECIFIED].append(j)
    rm = None
    if evaluation.rm_model_version_id is not None:
        name_of = {s.id: s.name for s in data.systems}
        scores = {
            (o.prompt_id, name_of[o.system_id]): o.rm_score
            for o in data.outputs
            if o.rm_score is not None
        }
        agreement: Estimate = rm_agreement(data.judgments, scores)
        rm = {
            "model_version_id": evaluation.rm_model_version_id,
            "agreement_with_judges": (
                round(agreement.value, 4) if agreement.value is not None else None
            ),
            "agreement_ci95": agreement.as_pair(),
            "judgments": agreement.judgments,
        }
    return {
        "evaluation_id": evaluation.id,
        "name": evaluation.name,
        "status": status,
        "error": error,
        "job_id": evaluation.job_id,
        "judges": evaluation.judges,
        "overlap": evaluation.overlap,
        "split": evaluation.split,
        "use_case": evaluation.use_case,
        "prompt_count": evaluation.prompt_count,
        "seed": evaluation.seed,
        "created_at": evaluation.created_at,
        "tasks": task_counts(session, evaluation.id),
        "baseline": baseline,
        "systems": systems,
        "by_use_case": {
            uc: _summaries(js, data.systems, baseline) for uc, js in sorted(by_use_case.items())
        },
        "by_judges": {
            group: _summaries(
                [j for j in data.judgments if j.held_out == (group == "held_out")],
                data.systems,
                baseline,
            )
            for group in ("held_out", "training")
        },
        "rm": rm,
    }


def overview(session: Session, evaluation: Evaluation) -> dict[str, Any]:
    """A line of the evaluations list."""
    systems = systems_of(session, evaluation.id)
    return {
        "evaluation_id": evaluation.id,
        "name": evaluation.name,
        "status": status_of(session, evaluation)[0],
        "baseline": next((s.name for s in systems if s.is_baseline), ""),
        "systems": [s.name for s in systems],
        "tasks": task_counts(session, evaluation.id),
        "created_at": evaluation.created_at,
    }


# leaderboard ------------------------------------------------------------------------------------


def leaderboard(session: Session) -> list[dict[str, Any]]:
    """Bradley–Terry strengths of every system ever evaluated, best first. A model version is
    one entry whatever it was called in each run (its registry name); an uploaded system is
    known by its name."""
    version_names = dict(session.execute(select(ModelVersion.id, ModelVersion.name)).all())
    key_of: dict[int, str] = {}
    version_of: dict[str, int | None] = {}
    runs: dict[str, set[int]] = defaultdict(set)
    for system in session.scalars(select(EvaluationSystem)):
        if system.model_version_id is not None:
            key = version_names.get(system.model_version_id, system.name)
        else:
            key = system.name
        key_of[system.id] = key
        version_of[key] = system.model_version_id
        runs[key].add(system.evaluation_id)
    system_of = dict(
        session.execute(select(EvaluationOutput.completion_id, EvaluationOutput.system_id)).all()
    )
    rows = session.execute(
        select(Ranking.task_id, Ranking.id, RankingEntry.completion_id, RankingEntry.rank)
        .join(RankingEntry, RankingEntry.ranking_id == Ranking.id)
        .join(Task, Task.id == Ranking.task_id)
        .where(Task.evaluation_id.is_not(None))
    ).all()
    by_task: dict[int, dict[int, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))
    for task_id, ranking_id, completion_id, rank in rows:
        if completion_id in system_of:
            by_task[task_id][ranking_id][key_of[system_of[completion_id]]] = rank
    judgments: dict[str, int] = defaultdict(int)
    battles = []
    for task_id, rankings in sorted(by_task.items()):
        for ranks in rankings.values():
            for key in ranks:
                judgments[key] += 1
        battles.append(battles_of(task_id, list(rankings.values())))
    return [
        {
            "name": s.name,
            "model_version_id": version_of.get(s.name),
            "strength": round(s.strength, 4),
            "ci95": [round(s.ci95[0], 4), round(s.ci95[1], 4)] if s.ci95 else None,
            "logit": round(s.logit, 4),
            "judgments": s.judgments,
            "evaluations": len(runs.get(s.name, ())),
        }
        for s in bradley_terry(battles, dict(judgments))
    ]


# export -----------------------------------------------------------------------------------------


def judgment_records(session: Session, evaluation_id: int | None) -> Iterator[dict[str, Any]]:
    """One record per judgment: the prompt, every output with its system, rank (1 = best),
    Likert score, flags and the position it was shown in, and the judge's group."""
    if evaluation_id is not None:
        evaluations = [get_evaluation(session, evaluation_id)]
    else:
        evaluations = list(session.scalars(select(Evaluation).order_by(Evaluation.id)))
    for evaluation in evaluations:
        data = load(session, evaluation)
        texts = dict(
            session.execute(
                select(Prompt.id, Prompt.text).where(
                    Prompt.id.in_({j.prompt_id for j in data.judgments})
                )
            ).all()
        )
        name_of = {s.id: s for s in data.systems}
        by_completion = {o.completion_id: name_of[o.system_id] for o in data.outputs}
        from app.models import Completion

        output_texts = dict(
            session.execute(
                select(Completion.id, Completion.text).where(Completion.id.in_(list(by_completion)))
            ).all()
        )
        for judgment, meta in zip(data.judgments, data.meta, strict=True):
            shown = meta["display_order"] or []
            yield {
                "judgment_id": meta["ranking_id"],
                "evaluation_id": evaluation.id,
                "evaluation": evaluation.name,
                "task_id": meta["task_id"],
                "prompt_id": judgment.prompt_id,
                "prompt": texts.get(judgment.prompt_id),
                "use_case": judgment.use_case,
                "labeler_id": judgment.labeler_id,
                "judge_group": "held_out" if judgment.held_out else "training",
                "time_spent_ms": meta["time_spent_ms"],
                "created_at": meta["created_at"].isoformat(),
                "outputs": [
                    {
                        "system": by_completion[e.completion_id].name,
                        "model_version_id": by_completion[e.completion_id].model_version_id,
                        "is_baseline": by_completion[e.completion_id].is_baseline,
                        "completion_id": e.completion_id,
                        "text": output_texts.get(e.completion_id),
                        "rank": e.rank,
                        "likert": e.likert,
                        "flags": list(e.flags or []),
                        "shown_position": (
                            shown.index(e.completion_id) if e.completion_id in shown else None
                        ),
                    }
                    for e in sorted(meta["entries"], key=lambda e: (e.rank, e.completion_id))
                ],
            }
