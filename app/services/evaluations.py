"""Evaluation runs: systems compared on held-out prompts by judges who rank their outputs.

Creating a run checks the systems (2..9: registered policies, or a name plus uploaded
``{"prompt_id", "text"}`` outputs), chooses its prompts (``prompt_count`` accepted prompts of
``split``, optionally of one use case, drawn with ``seed``; without prompt_count the prompts
every uploaded system answered), and stores the uploaded outputs. With model versions among
the systems an ``evaluation-sample`` job on the gpu queue samples one output per version per
prompt (and scores every output with the reward model); its success creates the tasks. With
uploaded outputs only, the tasks exist when the call returns. Each prompt becomes one
evaluation task holding every system's output (K = number of systems); which completion is
whose lives in ``evaluation_outputs``, never shown to judges.
"""

from __future__ import annotations

import contextlib
import random
from collections import defaultdict
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.config import get_settings
from app.models import (
    Completion,
    Evaluation,
    EvaluationOutput,
    EvaluationStatus,
    EvaluationSystem,
    Job,
    JobStatus,
    ModelVersion,
    Prompt,
    PromptStatus,
    Task,
    TaskKind,
    TaskStatus,
    User,
)
from app.schemas.evaluations import EvaluationCreate, SystemIn
from app.schemas.job_kinds import POLICY_KINDS
from app.schemas.jobs import JobKind
from app.services import Invalid, NotFound, validated
from app.services.completions import ORIGIN_MAX_CHARS, create_ranking_task
from app.services.jobs import BrokerUnavailable, create_job, dispatch_job
from app.services.models_registry import require_kind


def parse_create(payload: EvaluationCreate | dict[str, Any]) -> EvaluationCreate:
    return validated(EvaluationCreate, payload)


def _system_name(session: Session, i: int, system: SystemIn) -> str:
    field = f"systems.{i}"
    if (system.model_version_id is None) == (system.outputs is None):
        raise Invalid(
            "a system is either a model version ({'model_version_id'}) or uploaded outputs "
            "({'name', 'outputs'})",
            field=field,
        )
    if system.model_version_id is not None:
        version = require_kind(
            session, system.model_version_id, POLICY_KINDS, f"{field}.model_version_id"
        )
        return (system.name or version.name).strip()
    if not system.name or not system.name.strip():
        raise Invalid("uploaded outputs need the system's name", field=f"{field}.name")
    return system.name.strip()


def _check_outputs(session: Session, i: int, system: SystemIn) -> dict[int, str]:
    """The uploaded outputs by prompt id: one per prompt, non-empty, for accepted prompts."""
    assert system.outputs is not None
    if not system.outputs:
        raise Invalid("upload at least one output", field=f"systems.{i}.outputs")
    limit = get_settings().demonstration_max_chars
    by_prompt: dict[int, str] = {}
    for j, output in enumerate(system.outputs):
        field = f"systems.{i}.outputs.{j}"
        if output.prompt_id in by_prompt:
            raise Invalid(
                f"a second output for prompt {output.prompt_id}", field=f"{field}.prompt_id"
            )
        if not output.text.strip():
            raise Invalid("the output's text is empty", field=f"{field}.text")
        if len(output.text) > limit:
            raise Invalid(f"the output is longer than {limit} characters", field=f"{field}.text")
        by_prompt[output.prompt_id] = output.text
    accepted = set(
        session.scalars(
            select(Prompt.id).where(
                Prompt.id.in_(list(by_prompt)), Prompt.status == PromptStatus.accepted.value
            )
        )
    )
    for j, output in enumerate(system.outputs):
        if output.prompt_id not in accepted:
            raise Invalid(
                f"prompt {output.prompt_id} does not exist or is not accepted",
                field=f"systems.{i}.outputs.{j}.prompt_id",
            )
    return by_prompt


def choose_prompts(
    session: Session, body: EvaluationCreate, uploaded: list[set[int]], seed: int
) -> list[int]:
    """The run's prompts (see the module): a reproducible draw, or the uploaded ones."""
    shared: set[int] | None = set.intersection(*uploaded) if uploaded else None
    if body.prompt_count is None:
        if shared is None:
            raise Invalid(
                "give prompt_count (how many accepted test prompts to draw), or upload outputs",
                field="prompt_count",
            )
        pool = shared
        if body.use_case is not None:
            pool = set(
                session.scalars(
                    select(Prompt.id).where(
                        Prompt.id.in_(list(pool)), Prompt.use_case == body.use_case
                    )
                )
            )
        if not pool:
            where = f" of use case {body.use_case!r}" if body.use_case else ""
            raise Invalid(f"no prompt{where} has an output from every system", field="systems")
        return sorted(pool)
    query = select(Prompt.id).where(
        Prompt.status == PromptStatus.accepted.value, Prompt.split == body.split
    )
    if body.use_case is not None:
        query = query.where(Prompt.use_case == body.use_case)
    candidates = [pid for pid in session.scalars(query.order_by(Prompt.id))]
    if shared is not None:
        candidates = [pid for pid in candidates if pid in shared]
    if not candidates:
        where = f" of use case {body.use_case!r}" if body.use_case else ""
        answered = " answered by every uploaded system" if shared is not None else ""
        raise Invalid(
            f"no accepted {body.split} prompt{where}{answered} to evaluate on",
            field="prompt_count",
        )
    # the same pool and seed draw the same prompts, so runs on one seed are comparable
    drawn = random.Random(seed).sample(candidates, min(body.prompt_count, len(candidates)))
    return sorted(drawn)


def _default_rm(session: Session, versions: list[ModelVersion]) -> int | None:
    """The reward model a PPO system was trained against (its second parent)."""
    for version in versions:
        if version.kind == "ppo" and len(version.parent_ids) >= 2:
            rm = session.get(ModelVersion, version.parent_ids[1])
            if rm is not None and rm.kind == "rm":
                return rm.id
    return None


def create_evaluation(
    session: Session, payload: EvaluationCreate | dict[str, Any], created_by: User | None
) -> tuple[Evaluation, Job | None]:
    """Store a run and either its tasks (uploaded systems only) or its sampling job.
    Commits, then sends the job (its worker must find the run); with the broker down the
    job waits queued and is sent by the workers' sweep."""
    body = parse_create(payload)
    if body.baseline >= len(body.systems):
        raise Invalid(
            f"baseline is an index into systems: 0 to {len(body.systems) - 1}", field="baseline"
        )
    names: list[str] = []
    uploaded: dict[int, dict[int, str]] = {}
    versions: list[ModelVersion] = []
    for i, system in enumerate(body.systems):
        name = _system_name(session, i, system)
        if name in names:
            raise Invalid(f"two systems are named {name!r}; name them", field=f"systems.{i}.name")
        names.append(name)
        if system.outputs is not None:
            uploaded[i] = _check_outputs(session, i, system)
        else:
            assert system.model_version_id is not None
            versions.append(session.get_one(ModelVersion, system.model_version_id))
    rm_id = body.rm_model_version_id
    if rm_id is not None:
        require_kind(session, rm_id, ("rm",), "rm_model_version_id")
    else:
        rm_id = _default_rm(session, versions)
    seed = body.seed if body.seed is not None else 0
    prompt_ids = choose_prompts(session, body, [set(o) for o in uploaded.values()], seed)

    evaluation = Evaluation(
        name=body.name.strip(),
        judges=body.judges.value,
        overlap=body.overlap,
        split=body.split,
        use_case=body.use_case,
        prompt_count=body.prompt_count,
        seed=seed,
        rm_model_version_id=rm_id,
        created_by_id=created_by.id if created_by else None,
        status=EvaluationStatus.sampling.value if versions else EvaluationStatus.judging.value,
    )
    session.add(evaluation)
    session.flush()
    wanted = set(prompt_ids)
    for i, (system, name) in enumerate(zip(body.systems, names, strict=True)):
        row = EvaluationSystem(
            evaluation_id=evaluation.id,
            name=name,
            model_version_id=system.model_version_id,
            position=i,
            is_baseline=i == body.baseline,
        )
        session.add(row)
        session.flush()
        for prompt_id, text in sorted(uploaded.get(i, {}).items()):
            if prompt_id in wanted:
                add_output(session, evaluation, row, prompt_id, text)
    job = None
    if not versions:
        create_tasks(session, evaluation, created_by)
    if versions or rm_id is not None:
        params = {"evaluation_id": evaluation.id, "prompt_ids": prompt_ids}
        params.update(body.sampling.model_dump())
        job = create_job(
            session, JobKind.evaluation_sample.value, params, created_by, internal=True
        )
        evaluation.job_id = job.id
    session.commit()
    if job is not None:
        # with the broker down the job stays queued: the workers' sweep sends it later
        with contextlib.suppress(BrokerUnavailable):
            dispatch_job(session, job)
        session.commit()
    return evaluation, job


def add_output(
    session: Session, evaluation: Evaluation, system: EvaluationSystem, prompt_id: int, text: str
) -> EvaluationOutput:
    """One system's output for one prompt, as a completion plus who wrote it."""
    completion = Completion(
        prompt_id=prompt_id,
        text=text,
        origin=(
            f"model:{system.model_version_id}"
            if system.model_version_id is not None
            else system.name[:ORIGIN_MAX_CHARS]
        ),
        model_version_id=system.model_version_id,
    )
    session.add(completion)
    session.flush()
    output = EvaluationOutput(
        evaluation_id=evaluation.id,
        system_id=system.id,
        prompt_id=prompt_id,
        completion_id=completion.id,
    )
    session.add(output)
    return output


def create_tasks(session: Session, evaluation: Evaluation, created_by: User | None) -> int:
    """One evaluation task per prompt that has every system's output; the run is judging."""
    systems = systems_of(session, evaluation.id)
    position = {s.id: s.position for s in systems}
    by_prompt: dict[int, list[EvaluationOutput]] = defaultdict(list)
    for output in session.scalars(
        select(EvaluationOutput).where(EvaluationOutput.evaluation_id == evaluation.id)
    ):
        by_prompt[output.prompt_id].append(output)
    made = 0
    for prompt_id in sorted(by_prompt):
        outputs = sorted(by_prompt[prompt_id], key=lambda o: position[o.system_id])
        if len(outputs) != len(systems):
            continue
        create_ranking_task(
            session,
            prompt_id,
            [o.completion_id for o in outputs],
            evaluation.overlap,
            evaluation.job_id,
            created_by,
            kind=TaskKind.evaluation,
            evaluation_id=evaluation.id,
        )
        made += 1
    evaluation.status = EvaluationStatus.judging.value
    session.flush()
    return made


# reading ---------------------------------------------------------------------------------------


def systems_of(session: Session, evaluation_id: int) -> list[EvaluationSystem]:
    """The run's systems in the order they were given."""
    return list(
        session.scalars(
            select(EvaluationSystem)
            .where(EvaluationSystem.evaluation_id == evaluation_id)
            .order_by(EvaluationSystem.position)
        )
    )


def get_evaluation(session: Session, evaluation_id: int) -> Evaluation:
    evaluation = session.get(Evaluation, evaluation_id)
    if evaluation is None:
        raise NotFound(f"evaluation {evaluation_id} does not exist", field="evaluation_id")
    return evaluation


def sampling_job(session: Session, evaluation: Evaluation) -> Job | None:
    """The run's sampling job, following re-runs of a failed one to the newest."""
    job = session.get(Job, evaluation.job_id) if evaluation.job_id else None
    while job is not None:
        newer = session.scalar(select(Job).where(Job.rerun_of_id == job.id).order_by(Job.id))
        if newer is None:
            return job
        job = newer
    return None


def status_of(session: Session, evaluation: Evaluation) -> tuple[str, str | None]:
    """(status, error): sampling, judging, done (every task judged) or failed (its sampling
    job failed or was cancelled; re-running the job resumes it)."""
    if evaluation.status == EvaluationStatus.sampling.value:
        job = sampling_job(session, evaluation)
        if job is not None and job.status in (JobStatus.failed.value, JobStatus.cancelled.value):
            return EvaluationStatus.failed.value, job.error or f"sampling job {job.id} {job.status}"
        return evaluation.status, None
    if evaluation.status == EvaluationStatus.judging.value:
        counts = task_counts(session, evaluation.id)
        if counts["total"] and counts["judged"] == counts["total"]:
            return "done", None
    return evaluation.status, evaluation.error


def task_counts(session: Session, evaluation_id: int) -> dict[str, int]:
    from app.models import Ranking

    rows = dict(
        session.execute(
            select(Task.status, func.count())
            .where(Task.evaluation_id == evaluation_id)
            .group_by(Task.status)
        ).all()
    )
    judgments = session.scalar(
        select(func.count())
        .select_from(Ranking)
        .join(Task, Task.id == Ranking.task_id)
        .where(Task.evaluation_id == evaluation_id)
    )
    return {
        "total": sum(rows.values()),
        "judged": rows.get(TaskStatus.done.value, 0),
        "judgments": judgments or 0,
    }


def list_evaluations(session: Session, limit: int = 200) -> list[Evaluation]:
    return list(session.scalars(select(Evaluation).order_by(Evaluation.id.desc()).limit(limit)))
