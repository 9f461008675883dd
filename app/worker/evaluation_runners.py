"""The evaluation job kinds: an evaluation's sampling (outputs, RM scores, KL to SFT, then
its tasks) and ``rm-cv`` (reward model cross-validation by labeler group)."""

from __future__ import annotations

import math
import random
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Hashable
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import (
    Evaluation,
    EvaluationOutput,
    EvaluationStatus,
    EvaluationSystem,
    Job,
    ModelVersion,
    Prompt,
)
from app.schemas.jobs import JobKind
from app.services.evaluations import systems_of
from app.services.models_registry import get_version
from app.worker.reporting import JobFailed
from app.worker.runners import JobContext, Outcome, _creator, _session, runs, take_snapshot


def sft_reference(session: Session, version: ModelVersion) -> ModelVersion | None:
    """The SFT model a PPO policy was trained away from (through PPO-from-PPO chains)."""
    seen = set()
    current: ModelVersion | None = version
    while current is not None and current.kind == "ppo" and current.id not in seen:
        seen.add(current.id)
        parent = current.parent_ids[0] if current.parent_ids else None
        current = session.get(ModelVersion, parent) if parent is not None else None
    return current if current is not None and current.kind == "sft" else None


@runs(JobKind.evaluation_sample)
def run_evaluation_sample(ctx: JobContext) -> Outcome:
    """One output per model version per prompt; every output (uploaded ones too) scored by
    the run's reward model; each PPO system's log-ratio to its SFT model; then the tasks."""
    from trainer.score import kl_to_reference, score_records

    p = ctx.params
    sample_completions = ctx.spec.trainer()
    config = ctx.spec.trainer_config_of(p)
    with _session() as session:
        evaluation = session.get(Evaluation, p.evaluation_id)
        if evaluation is None:
            raise JobFailed(f"evaluation {p.evaluation_id} no longer exists")
        texts = dict(
            session.execute(select(Prompt.id, Prompt.text).where(Prompt.id.in_(p.prompt_ids))).all()
        )
        prompts = [(pid, texts[pid]) for pid in p.prompt_ids if pid in texts]
        systems = systems_of(session, evaluation.id)
        policies = []  # (system id, model path, SFT reference path or None, is sft)
        for system in systems:
            if system.model_version_id is None:
                continue
            version = get_version(session, system.model_version_id)
            reference = sft_reference(session, version) if version.kind == "ppo" else None
            policies.append(
                (
                    system.id,
                    version.path,
                    reference.path if reference else None,
                    version.kind == "sft",
                )
            )
        existing = {
            (o.system_id, o.prompt_id): o.completion_id
            for o in session.scalars(
                select(EvaluationOutput).where(EvaluationOutput.evaluation_id == evaluation.id)
            )
        }
        uploaded_texts: dict[tuple[int, int], str] = {}
        if existing:
            from app.models import Completion

            by_completion = dict(
                session.execute(
                    select(Completion.id, Completion.text).where(
                        Completion.id.in_(list(existing.values()))
                    )
                ).all()
            )
            uploaded_texts = {key: by_completion[cid] for key, cid in existing.items()}
        rm_path = (
            get_version(session, evaluation.rm_model_version_id).path
            if evaluation.rm_model_version_id
            else None
        )
        sampling = evaluation.status == EvaluationStatus.sampling.value
    if not prompts:
        raise JobFailed("none of the evaluation's prompts exists any more")
    to_sample = [pol for pol in policies if sampling]
    batches_each = math.ceil(len(prompts) / config.batch_size)
    total = batches_each * len(to_sample) or 1
    sampled: dict[tuple[int, int], str] = {}
    for n, (system_id, path, _, _) in enumerate(to_sample):
        ctx.reporter.offset, ctx.reporter.scale_total = n * batches_each, total
        ctx.reporter.log(f"sampling one output per prompt from {path}")
        records = sample_completions(
            path, [t for _, t in prompts], 1, config, progress=ctx.reporter
        )
        for (prompt_id, _), record in zip(prompts, records, strict=True):
            text = record["completion"] if record["completion"].strip() else "(empty response)"
            sampled[(system_id, prompt_id)] = text
    outputs = {**uploaded_texts, **sampled}
    keys = sorted(outputs)
    prompt_text = dict(prompts)
    scores: dict[tuple[int, int], float] = {}
    if rm_path is not None and keys:
        ctx.reporter.log(f"scoring {len(keys)} outputs with the reward model")
        rows = score_records(
            rm_path,
            [
                {"prompt": prompt_text[k[1]], "completion": outputs[k]}
                for k in keys
                if k[1] in prompt_text
            ],
            config=config,
        )
        scores = {
            k: float(r["score"])
            for k, r in zip([k for k in keys if k[1] in prompt_text], rows, strict=True)
        }
    kls: dict[tuple[int, int], float] = {}
    for system_id, path, reference_path, is_sft in policies:
        mine = [k for k in keys if k[0] == system_id and k[1] in prompt_text]
        if is_sft:
            kls.update(dict.fromkeys(mine, 0.0))
        elif reference_path is not None and mine:
            ctx.reporter.log(f"KL of {path} to its SFT model {reference_path}")
            values = kl_to_reference(
                path,
                reference_path,
                [{"prompt": prompt_text[k[1]], "completion": outputs[k]} for k in mine],
                config,
            )
            kls.update(zip(mine, values, strict=True))

    def store(session: Session, job: Job) -> None:
        from app.services.evaluations import add_output, create_tasks

        evaluation = session.get_one(Evaluation, p.evaluation_id)
        by_id = {
            s.id: s
            for s in session.scalars(
                select(EvaluationSystem).where(EvaluationSystem.evaluation_id == evaluation.id)
            )
        }
        for (system_id, prompt_id), text in sorted(sampled.items()):
            add_output(session, evaluation, by_id[system_id], prompt_id, text)
        session.flush()
        for output in session.scalars(
            select(EvaluationOutput).where(EvaluationOutput.evaluation_id == evaluation.id)
        ):
            key = (output.system_id, output.prompt_id)
            output.rm_score = scores.get(key, output.rm_score)
            output.kl = kls.get(key, output.kl)
        evaluation.job_id = job.id
        if evaluation.status == EvaluationStatus.sampling.value:
            create_tasks(session, evaluation, _creator(session, ctx))

    metrics = {
        "prompts": float(len(prompts)),
        "outputs_sampled": float(len(sampled)),
        "outputs_scored": float(len(scores)),
    }
    return Outcome(metrics, apply=store)


def labeler_folds(counts: dict[int, int], folds: int, seed: int) -> list[list[int]]:
    """Labelers dealt into ``folds`` groups of about equal numbers of rankings: shuffled by
    ``seed``, then each (most rankings first) to the lightest group."""
    labelers = sorted(counts)
    random.Random(seed).shuffle(labelers)
    labelers.sort(key=lambda labeler: -counts[labeler])
    groups: list[list[int]] = [[] for _ in range(folds)]
    load = [0] * folds
    for labeler in labelers:
        lightest = load.index(min(load))
        groups[lightest].append(labeler)
        load[lightest] += counts[labeler]
    return groups


def annotator_agreement(rows: list[dict[str, Any]]) -> Any:
    """The labelers' agreement with each other on tasks several of them ranked (the same
    prompt and outputs): agreement.summarize's pooled pairwise agreement."""
    from app.services.agreement import Judgment, summarize

    tasks: dict[Hashable, dict[int, Judgment]] = defaultdict(dict)
    for row in rows:
        ids = frozenset(c["completion_id"] for c in row["completions"])
        ranks = {c["completion_id"]: float(c["rank"]) for c in row["completions"]}
        tasks[(row["prompt_id"], ids)][row["labeler_id"]] = Judgment(ranks)
    return summarize(tasks, [])


@runs(JobKind.rm_cv)
def run_rm_cv(ctx: JobContext) -> Outcome:
    """Train on the comparisons of all labeler groups but one, measure pairwise accuracy on
    the held-out group's, for each group in turn; next to the inter-annotator agreement."""
    import numpy as np

    from trainer.data import read_jsonl, write_jsonl

    p = ctx.params
    with _session() as session:
        sft_path = get_version(session, p.sft_model_version_id).path
    snapshot = take_snapshot(ctx, "comparisons", "comparisons", "train", "rankings")
    rows = read_jsonl(snapshot.path) if snapshot.row_count else []
    counts: dict[int, int] = defaultdict(int)
    for row in rows:
        counts[row["labeler_id"]] += 1
    folds = min(p.folds, len(counts))
    if folds < 2:
        raise JobFailed(
            f"cross-validation by labeler needs rankings from at least 2 labelers; the train "
            f"split has {len(counts)}"
        )
    if folds < p.folds:
        ctx.reporter.log(f"only {len(counts)} labelers: {folds} folds instead of {p.folds}")
    groups = labeler_folds(dict(counts), folds, p.seed)
    config = ctx.spec.trainer_config_of(p)
    train_reward_model = ctx.spec.trainer()
    workdir = Path(tempfile.mkdtemp(prefix=f"rm-cv-{ctx.job_id}-", dir=ctx.output_dir.parent))
    metrics: dict[str, float] = {}
    accuracies = []
    try:
        for i, group in enumerate(groups):
            held = set(group)
            train_path, val_path = workdir / f"train-{i}.jsonl", workdir / f"val-{i}.jsonl"
            write_jsonl(train_path, (r for r in rows if r["labeler_id"] not in held))
            write_jsonl(val_path, (r for r in rows if r["labeler_id"] in held))
            ctx.reporter.log(
                f"fold {i + 1}/{folds}: {len(group)} held-out labelers, "
                f"{sum(counts[labeler] for labeler in group)} rankings"
            )
            result = train_reward_model(
                model=sft_path,
                train=str(train_path),
                val=str(val_path),
                output_dir=str(workdir / f"rm-{i}"),
                config=config,
                progress=ctx.reporter,
                meta={"job_id": ctx.job_id, "fold": i},
            )
            accuracy = float(result.get("val_accuracy", math.nan))
            metrics[f"fold_{i + 1}_accuracy"] = accuracy
            metrics[f"fold_{i + 1}_pairs"] = float(result.get("val_pairs", 0))
            accuracies.append(accuracy)
            shutil.rmtree(workdir / f"rm-{i}", ignore_errors=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    finite = [a for a in accuracies if math.isfinite(a)]
    metrics["cv_accuracy_mean"] = float(np.mean(finite)) if finite else math.nan
    metrics["cv_accuracy_sd"] = float(np.std(finite, ddof=1)) if len(finite) > 1 else math.nan
    metrics["folds"] = float(folds)
    metrics["labelers"] = float(len(counts))
    report = annotator_agreement(rows)
    if report.pairwise_agreement is not None:
        metrics["inter_annotator_agreement"] = report.pairwise_agreement
        metrics["agreement_labeler_pairs"] = float(report.pairs)
        if report.ci95:
            metrics["inter_annotator_agreement_ci95_low"] = report.ci95[0]
            metrics["inter_annotator_agreement_ci95_high"] = report.ci95[1]
    ctx.reporter.log(
        "held-out labeler accuracy "
        + f"{metrics['cv_accuracy_mean']:.3f} ± {metrics['cv_accuracy_sd']:.3f}; "
        + (
            f"inter-annotator agreement {report.pairwise_agreement:.3f}"
            if report.pairwise_agreement is not None
            else "no overlap tasks for the inter-annotator agreement"
        )
    )
    return Outcome(metrics)
