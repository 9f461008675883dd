"""What each job kind does: pull its data snapshots through the export service, call the
trainer, and describe the result to register (the task in tasks.py commits it atomically with
the job's final status). Which trainer, which config and which model kind come from the kind's
entry in ``app.schemas.job_kinds.JOB_KINDS``; each kind's runner is registered with ``@runs``.
"""

from __future__ import annotations

import logging
import math
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from app.config import get_settings
from app.db import get_sessionmaker
from app.models import Job, ModelVersion, Prompt, Snapshot, Task, TaskKind, User
from app.models.labeling import K_MIN
from app.schemas.job_kinds import JobKindSpec, spec_of
from app.schemas.jobs import JobKind
from app.services.models_registry import ensure_base_version, get_version
from app.services.sampled_tasks import create_sampled_tasks, unusable_reason
from app.worker.reporting import JobFailed, JobReporter

log = logging.getLogger(__name__)


@dataclass
class JobContext:
    job_id: int
    kind: str
    params: Any
    created_by_id: int | None
    reporter: JobReporter
    snapshot_ids: dict[str, int] = field(default_factory=dict)

    @property
    def spec(self) -> JobKindSpec:
        return spec_of(self.kind)

    @property
    def output_dir(self) -> Path:
        return get_settings().artifacts_path / "models" / f"{self.kind}-{self.job_id}"


@dataclass
class Outcome:
    """A finished job's result: the model version to register (of the kind's ``output_model``)
    and/or database writes to make in the same transaction that marks the job succeeded."""

    metrics: dict[str, float] = field(default_factory=dict)
    model_path: str | None = None
    parent_ids: list[int] = field(default_factory=list)
    apply: Callable[[Session, Job], None] | None = None


Runner = Callable[[JobContext], Outcome]
RUNNERS: dict[JobKind, Runner] = {}


def runs(kind: JobKind) -> Callable[[Runner], Runner]:
    """Register the function that runs jobs of ``kind``."""

    def register_runner(fn: Runner) -> Runner:
        RUNNERS[kind] = fn
        return fn

    return register_runner


def _session() -> Session:
    return get_sessionmaker()()


def _creator(session: Session, ctx: JobContext) -> User | None:
    return session.get(User, ctx.created_by_id) if ctx.created_by_id else None


def take_snapshot(
    ctx: JobContext,
    role: str,
    dataset: str,
    split: str | None,
    fmt: str | None = None,
    given_id: int | None = None,
    prompts_dataset: str | None = None,
) -> Snapshot:
    """The given snapshot, or a new one of the current data through the export service."""
    from app.schemas.export import ExportFilters
    from app.services.export import create_snapshot

    with _session() as session:
        if given_id is not None:
            snapshot = session.get(Snapshot, given_id)
            if snapshot is None:
                raise JobFailed(f"snapshot {given_id} no longer exists")
        else:
            filters = ExportFilters(
                split=split, dataset=prompts_dataset, **ctx.params.filters.model_dump()
            )
            snapshot = create_snapshot(session, dataset, filters, fmt, _creator(session, ctx))
            session.commit()
        ctx.snapshot_ids[role] = snapshot.id
        ctx.reporter.log(f"{role} data: snapshot {snapshot.id} ({snapshot.row_count} {dataset})")
        return snapshot


def _optional(snapshot: Snapshot) -> str | None:
    return snapshot.path if snapshot.row_count else None


def _model_path(version_id: int) -> str:
    with _session() as session:
        return get_version(session, version_id).path


def _call_trainer(ctx: JobContext, **kwargs: Any) -> dict[str, float]:
    """Run the kind's trainer function in this process, or under `accelerate launch` on
    ``num_gpus`` processes."""
    spec = ctx.spec
    meta = {"job_id": ctx.job_id, "data_snapshot": dict(ctx.snapshot_ids)}
    if spec.distributed and ctx.params.num_gpus > 1:
        from app.worker.launch import check_process_count, run_under_accelerate

        problem = check_process_count(ctx.params.num_gpus)
        if problem:
            raise JobFailed(problem)

        ctx.reporter.log(f"launching {spec.trainer_function} on {ctx.params.num_gpus} processes")
        return run_under_accelerate(ctx, dict(kwargs, meta=meta), ctx.params.num_gpus)
    config = spec.trainer_config_of(ctx.params)
    metrics: dict[str, float] = spec.trainer()(
        **kwargs, config=config, progress=ctx.reporter, meta=meta
    )
    return metrics


@runs(JobKind.sft)
def run_sft(ctx: JobContext) -> Outcome:
    p = ctx.params
    with _session() as session:
        if isinstance(p.base_model, int):
            base = get_version(session, p.base_model)
        else:
            base = ensure_base_version(session, p.base_model)
            session.commit()
        base_id, base_path = base.id, base.path
    train = take_snapshot(ctx, "train", "demonstrations", "train", given_id=p.train_snapshot_id)
    if not train.row_count:
        raise JobFailed("no demonstrations in the train split yet: label some first")
    val = take_snapshot(ctx, "val", "demonstrations", "val", given_id=p.val_snapshot_id)
    reward_model = _model_path(p.rm_model_version_id) if p.rm_model_version_id else None
    metrics = _call_trainer(
        ctx,
        model=base_path,
        train=train.path,
        val=_optional(val),
        reward_model=reward_model,
        output_dir=str(ctx.output_dir),
    )
    return Outcome(metrics, str(ctx.output_dir), [base_id])


@runs(JobKind.rm)
def run_rm(ctx: JobContext) -> Outcome:
    p = ctx.params
    sft_path = _model_path(p.sft_model_version_id)
    train = take_snapshot(
        ctx, "train", "comparisons", "train", "rankings", given_id=p.train_snapshot_id
    )
    if not train.row_count:
        raise JobFailed("no rankings in the train split yet: label some ranking tasks first")
    val = take_snapshot(ctx, "val", "comparisons", "val", "rankings", given_id=p.val_snapshot_id)
    # labeler demonstrations score 0 on average after training (the method's RM bias)
    demos = take_snapshot(ctx, "demonstrations", "demonstrations", "train")
    metrics = _call_trainer(
        ctx,
        model=sft_path,
        train=train.path,
        val=_optional(val),
        demonstrations=_optional(demos),
        output_dir=str(ctx.output_dir),
    )
    return Outcome(metrics, str(ctx.output_dir), [p.sft_model_version_id])


def _pretrain_texts(ctx: JobContext) -> str | None:
    """PPO-ptx's pre-training texts: the demonstrations as plain text (prompt then response),
    since the platform holds no pre-training corpus of its own."""
    from trainer.data import read_jsonl, write_jsonl

    demos = take_snapshot(ctx, "pretrain", "demonstrations", "train")
    if not demos.row_count:
        return None
    path = ctx.output_dir.parent / f".ptx-{ctx.job_id}.jsonl"
    rows = read_jsonl(demos.path)
    write_jsonl(path, ({"text": f"{r['prompt']}\n{r['completion']}"} for r in rows))
    return str(path)


@runs(JobKind.ppo)
def run_ppo(ctx: JobContext) -> Outcome:
    p = ctx.params
    policy_path = _model_path(p.sft_model_version_id)
    rm_path = _model_path(p.rm_model_version_id)
    prompts = take_snapshot(
        ctx,
        "prompts",
        "prompts",
        "train",
        given_id=p.prompts_snapshot_id,
        prompts_dataset="ppo" if p.api_prompts_only else None,
    )
    if not prompts.row_count:
        raise JobFailed("no prompts for PPO in the train split (API prompts only by default)")
    pretrain = _pretrain_texts(ctx) if p.ptx_coef > 0 else None
    if p.ptx_coef > 0 and pretrain is None:
        raise JobFailed("PPO-ptx (ptx_coef > 0) needs demonstrations as pre-training texts")
    metrics = _call_trainer(
        ctx,
        policy=policy_path,
        reward_model=rm_path,
        prompts=prompts.path,
        pretrain_texts=pretrain,
        output_dir=str(ctx.output_dir),
    )
    return Outcome(metrics, str(ctx.output_dir), [p.sft_model_version_id, p.rm_model_version_id])


def _prompts_to_sample(session: Session, p: Any) -> list[tuple[int, str]]:
    if p.prompt_ids:
        rows = session.execute(select(Prompt.id, Prompt.text).where(Prompt.id.in_(p.prompt_ids)))
        ordered = sorted(rows, key=lambda r: p.prompt_ids.index(r[0]))[: p.prompt_count]
        return [(prompt_id, text) for prompt_id, text in ordered]
    has_ranking_task = exists().where(Task.prompt_id == Prompt.id, Task.kind == TaskKind.ranking)
    query = (
        select(Prompt.id, Prompt.text)
        .where(Prompt.status == "accepted", Prompt.split == p.split, ~has_ranking_task)
        .order_by(Prompt.id)
        .limit(p.prompt_count)
    )
    # the prompt-level filters (labels do not exist yet for these prompts)
    if p.filters.use_case:
        query = query.where(Prompt.use_case == p.filters.use_case)
    if p.filters.since:
        query = query.where(Prompt.created_at >= p.filters.since)
    if p.filters.until:
        query = query.where(Prompt.created_at < p.filters.until)
    return [(row[0], row[1]) for row in session.execute(query)]


REFILL_ROUNDS = 2


@runs(JobKind.sample)
def run_sample(ctx: JobContext) -> Outcome:
    """K completions per prompt shared round-robin between the model versions, then one
    ranking task per prompt for the labelers (held for the researcher's preview unless
    ``hold_for_review`` is off). Empty or mostly non-printable outputs are left out and drawn
    again (up to ``REFILL_ROUNDS`` more times, from the versions in turn); a prompt still
    short of a ranking's ``K_MIN`` outputs gets no task."""
    p = ctx.params
    sample_completions = ctx.spec.trainer()
    with _session() as session:
        prompts = _prompts_to_sample(session, p)
        versions = [(v, get_version(session, v).path) for v in p.model_version_ids]
    if not prompts:
        raise JobFailed(f"no accepted {p.split} prompts without a ranking task to sample for")
    texts = dict(prompts)
    share = [p.k // len(versions) + (i < p.k % len(versions)) for i in range(len(versions))]
    total_batches = sum(math.ceil(len(prompts) * n / p.batch_size) for n in share if n)
    config = ctx.spec.trainer_config_of(p)
    usable: dict[int, list[dict[str, Any]]] = {pid: [] for pid, _ in prompts}
    left_out: Counter[str] = Counter()
    done = 0

    def draw(version_id: int, path: str, prompt_ids: list[int], n: int) -> None:
        nonlocal done
        ctx.reporter.offset, ctx.reporter.scale_total = done, max(total_batches, done + 1)
        ctx.reporter.log(f"sampling {n} per prompt from model version {version_id}")
        records = sample_completions(
            path, [texts[pid] for pid in prompt_ids], n, config, progress=ctx.reporter
        )
        done += math.ceil(len(prompt_ids) * n / p.batch_size)
        for i, record in enumerate(records):
            reason = unusable_reason(record["completion"])
            if reason is not None:
                left_out[reason] += 1  # never reaches labelers
                continue
            usable[prompt_ids[i // n]].append(
                {
                    "text": record["completion"],
                    "origin": f"model:{version_id}",
                    "model_version_id": version_id,
                }
            )

    for (version_id, path), n in zip(versions, share, strict=True):
        if n:
            draw(version_id, path, list(usable), n)
    for attempt in range(REFILL_ROUNDS):
        short = [pid for pid, items in usable.items() if len(items) < p.k]
        if not short:
            break
        version_id, path = versions[attempt % len(versions)]
        missing = max(p.k - len(usable[pid]) for pid in short)
        draw(version_id, path, short, missing)
    tasks = {pid: items[: p.k] for pid, items in usable.items() if len(items) >= K_MIN}
    for reason, count in sorted(left_out.items()):
        ctx.reporter.log(f"left out {count} {reason} outputs")
    if len(tasks) < len(prompts):
        ctx.reporter.log(f"{len(prompts) - len(tasks)} prompts got too few usable outputs")
    if not tasks:
        raise JobFailed(
            f"every prompt had fewer than {K_MIN} usable outputs (empty or mostly "
            "non-printable ones are left out): no ranking task was made"
        )

    def create_tasks(session: Session, job: Job) -> None:
        _, problems = create_sampled_tasks(
            session, job, tasks, overlap=p.overlap, hold=p.hold_for_review,
            creator=_creator(session, ctx),
        )  # fmt: skip
        for problem in problems:
            ctx.reporter.log(problem)

    metrics = {
        "prompts_sampled": float(len(prompts)),
        "ranking_tasks": float(len(tasks)),
        "outputs_left_out": float(sum(left_out.values())),
    }
    return Outcome(metrics, apply=create_tasks)


@runs(JobKind.export_snapshot)
def run_export_snapshot(ctx: JobContext) -> Outcome:
    from app.schemas.export import ExportFilters
    from app.services.export import create_snapshot

    p = ctx.params
    filters = ExportFilters(split=p.split, dataset=p.prompts_dataset, **p.filters.model_dump())
    with _session() as session:
        snapshot = create_snapshot(session, p.dataset, filters, p.format, _creator(session, ctx))
        session.commit()
        ctx.snapshot_ids["snapshot"] = snapshot.id
        ctx.reporter.log(f"snapshot {snapshot.id}: {snapshot.row_count} rows, {snapshot.sha256}")
        return Outcome({"rows": float(snapshot.row_count)})


def parse_stored_params(kind: str, params: dict[str, Any]) -> BaseModel:
    return spec_of(kind).params.model_validate(params)


def finite_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    out = {}
    for name, value in metrics.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            out[name] = number
    return out


def discard_partial_output(ctx: JobContext) -> None:
    """A failed or cancelled job leaves no model behind: its output directory is removed
    (it holds no prefloop.json, so it was never a checkpoint), except a PPO run's resumable
    state, kept with its metrics so that it can be continued from a shell."""
    from trainer.meta import STATE_DIR

    out = ctx.output_dir
    (out.parent / f".ptx-{ctx.job_id}.jsonl").unlink(missing_ok=True)
    if not out.is_dir():
        return
    if (out / STATE_DIR / "run.json").is_file():
        for child in out.iterdir():
            if child.name not in (STATE_DIR, "metrics.jsonl"):
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        ctx.reporter.log(f"resumable from a shell: prefloop train ppo --resume {out}")
    else:
        shutil.rmtree(out, ignore_errors=True)


def register(session: Session, job: Job, outcome: Outcome) -> ModelVersion | None:
    from app.services.models_registry import register_version
    from trainer.meta import META_FILE

    model_kind = spec_of(job.kind).output_model
    if model_kind is None or outcome.model_path is None:
        return None
    if not (Path(outcome.model_path) / META_FILE).is_file():  # the trainer writes it last
        raise JobFailed(f"{outcome.model_path} is not a finished checkpoint (no {META_FILE})")
    return register_version(
        session,
        kind=model_kind,
        path=outcome.model_path,
        parent_ids=outcome.parent_ids,
        metrics=finite_metrics(outcome.metrics),
        snapshot_ids=dict(job.snapshot_ids or {}),
        job_id=job.id,
    )
