"""Where the loop stands: the size of each data set, the models so far, and the next step
a researcher should take (shown on the admin home)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import Demonstration, Job, ModelVersion, Prompt, Ranking, Task
from app.services.curation.splits import SPLITS
from app.services.intake_stats import dataset_table
from app.services.jobs import ACTIVE
from app.services.queue_upkeep import open_task_counts
from app.services.task_kinds import training_kinds
from app.services.wording import counted


@dataclass
class NextStep:
    title: str
    detail: str
    href: str | None = None
    action: str | None = None


def _count(session: Session, query: Any) -> int:
    return int(session.scalar(query) or 0)


def data_sets(session: Session) -> dict[str, Any]:
    """Accepted prompts by split, the three data sets of the method (train split) and the labels
    collected for them. Prompts per data set come from `intake_stats.dataset_table` (the data
    page's table), open tasks from `queue_upkeep.open_task_counts`: one source for each figure."""
    table = dataset_table(session)
    prompts = {(row["dataset"], row["split"]): row["total"] for row in table["rows"]}
    train_prompt = (Prompt.split == "train") & (Prompt.status == "accepted")
    demos = _count(
        session,
        select(func.count(Demonstration.id))
        .join(Prompt, Prompt.id == Demonstration.prompt_id)
        .join(Task, Task.id == Demonstration.task_id)
        .where(train_prompt, Task.kind.in_(training_kinds("demonstration"))),
    )
    rankings = _count(
        session,
        select(func.count(Ranking.id))
        .join(Prompt, Prompt.id == Ranking.prompt_id)
        .join(Task, Task.id == Ranking.task_id)
        .where(train_prompt, Task.kind.in_(training_kinds("ranking"))),
    )
    open_tasks = open_task_counts(session)
    return {
        "prompts_by_split": {s: prompts.get(("All accepted", s), 0) for s in SPLITS},
        "sft_prompts": prompts.get(("SFT", "train"), 0),
        "rm_prompts": prompts.get(("RM", "train"), 0),
        "sft_demonstrations": demos,
        "rm_rankings": rankings,
        "ppo_prompts": prompts.get(("PPO", "train"), 0),
        "open_demonstration_tasks": open_tasks["demonstration"],
        "open_ranking_tasks": open_tasks["ranking"],
    }


def _latest(session: Session, kind: str) -> ModelVersion | None:
    return session.scalars(
        select(ModelVersion).where(ModelVersion.kind == kind).order_by(ModelVersion.id.desc())
    ).first()


def next_step(session: Session, sets: dict[str, Any]) -> NextStep:
    """The loop of the method: demonstrations -> SFT -> rankings -> RM -> PPO -> sample again."""
    active = session.scalars(select(Job).where(Job.status.in_(ACTIVE)).order_by(Job.id)).first()
    if active is not None:
        return NextStep(
            f"Wait for job #{active.id} ({active.kind}, {active.status})",
            "Its progress and metrics update live on its page.",
            f"/admin/jobs/{active.id}",
            "Open the job",
        )
    if not sum(sets["prompts_by_split"].values()):
        return NextStep(
            "Collect prompts",
            "Ingest customer prompts through POST /api/v1/prompts, or let labelers write some.",
        )
    if not sets["sft_demonstrations"]:
        return NextStep(
            "Collect demonstrations",
            "Labelers write ideal responses: "
            f"{counted(sets['open_demonstration_tasks'], 'demonstration task')} waiting in "
            "their queue.",
            "/labeler",
            "Go to labeling",
        )
    sft, rm, ppo = _latest(session, "sft"), _latest(session, "rm"), _latest(session, "ppo")
    if sft is None:
        return NextStep(
            "Train the SFT model",
            f"{counted(sets['sft_demonstrations'], 'train demonstration')} ready.",
            "/admin/jobs/new?kind=sft",
            "Launch SFT",
        )
    if not sets["rm_rankings"]:
        if sets["open_ranking_tasks"]:
            return NextStep(
                "Rank model outputs",
                f"{counted(sets['open_ranking_tasks'], 'ranking task')} waiting for labelers.",
                "/labeler",
                "Go to labeling",
            )
        return NextStep(
            "Sample the SFT model into ranking tasks",
            "Labelers then rank K = 4..9 outputs per prompt.",
            "/admin/jobs/new?kind=sample",
            "Launch sampling",
        )
    if rm is None or rm.id < sft.id:
        return NextStep(
            "Train a reward model",
            f"{counted(sets['rm_rankings'], 'train ranking')} ready.",
            "/admin/jobs/new?kind=rm",
            "Launch RM training",
        )
    if ppo is None or ppo.id < rm.id:
        return NextStep(
            "Optimise the policy with PPO",
            "Against the newest reward model, starting from the SFT policy.",
            "/admin/jobs/new?kind=ppo",
            "Launch PPO",
        )
    return NextStep(
        "Collect new comparisons from the current policy",
        "Mark the best policy current, sample it into ranking tasks, then train a new RM.",
        "/admin/jobs/new?kind=sample",
        "Launch sampling",
    )
