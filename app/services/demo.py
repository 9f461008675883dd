"""The first-run demo: the offline ``tiny`` base model in the registry, and (on the embedded
default only) a small data set written for the project plus demo labelers, so a newcomer can
label and run the whole loop at once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import get_settings
from app.db import utcnow
from app.models import (
    Assignment,
    AssignmentStatus,
    Demonstration,
    ModelVersion,
    Prompt,
    Task,
    TaskKind,
    TaskStatus,
    User,
)
from app.services.models_registry import TINY, ensure_base_version

DEMO_DIR = Path(__file__).resolve().parents[1] / "demo"
DEMO_SPLITS = {
    "demo-customer-a": "train",
    "demo-customer-b": "train",
    "demo-customer-c": "train",
    "demo-customer-d": "train",
    "demo-customer-v": "val",
    "demo-customer-t": "test",
}
# their passwords are generated and printed once; see ``load_demo_data``
DEMO_LABELERS = ("demo-labeler-1", "demo-labeler-2")
DEMO_AUTHOR = "demo-author"


def register_tiny_base(session: Session) -> str | None:
    """Bootstrap step: the offline ``tiny`` preset as a base model version (idempotent)."""
    exists = session.scalars(
        select(ModelVersion.id).where(ModelVersion.kind == "base", ModelVersion.path == TINY)
    ).first()
    if exists is not None:
        return None
    ensure_base_version(session, TINY)
    return "Registered the offline 'tiny' base model (model registry: /admin/models)."


def demo_rows() -> list[dict[str, Any]]:
    lines = (DEMO_DIR / "prompts.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _add_demonstration(session: Session, prompt_id: int, labeler: User, text: str) -> None:
    """A demonstration as if the labeler had submitted it from the queue (task done)."""
    now = utcnow()
    # intake has made the prompt's demonstration task already (when its split has them)
    task = session.scalar(
        select(Task).where(Task.prompt_id == prompt_id, Task.kind == TaskKind.demonstration.value)
    )
    if task is None:
        task = Task(kind=TaskKind.demonstration.value, prompt_id=prompt_id)
        session.add(task)
    task.overlap, task.filled, task.status = 1, 1, TaskStatus.done.value
    session.flush()
    session.add(
        Assignment(
            task_id=task.id,
            task_kind=task.kind,
            labeler_id=labeler.id,
            status=AssignmentStatus.submitted.value,
            lock_expires_at=now,
            finished_at=now,
        )
    )
    session.add(
        Demonstration(task_id=task.id, prompt_id=prompt_id, labeler_id=labeler.id, text=text)
    )


def _demo_author(session: Session) -> User:
    """Who wrote the demo's demonstrations when no demo labeler is made: a deactivated account
    that nobody can log in to (random password never shown), so the demo's SFT data set exists
    whatever accounts the installation already had."""
    from app.services.accounts import create_user, one_time_password

    author = session.scalars(select(User).where(User.username == DEMO_AUTHOR)).first()
    if author is None:
        author = create_user(session, DEMO_AUTHOR, one_time_password(), "labeler")
        author.is_active = False
        session.flush()
    return author


def load_demo_data(session: Session, *, labelers: bool = False) -> str | None:
    """Bootstrap step: the demo data set on an empty embedded installation, and with
    ``labelers`` two demo labeler accounts whose generated passwords are returned once."""
    settings = get_settings()
    if not settings.demo_data or not settings.is_embedded:
        return None
    if session.scalars(select(Prompt.id).limit(1)).first() is not None:
        return None  # not a fresh installation: never mix demo data into real data
    from app.services.accounts import create_user, one_time_password
    from app.services.completions import add_completions, create_ranking_task
    from app.services.curation.splits import pin_split
    from app.services.intake import ingest_prompts

    for user_id, split in DEMO_SPLITS.items():
        pin_split(session, user_id, split)
    session.commit()
    rows = demo_rows()
    items = [{"text": r["text"], "user_id": r["user_id"], "use_case": r["use_case"]} for r in rows]
    results = ingest_prompts(session, items, source="api")
    accounts: list[tuple[User, str]] = []
    for username in DEMO_LABELERS if labelers else ():
        if session.scalars(select(User).where(User.username == username)).first() is None:
            password = one_time_password()
            accounts.append((create_user(session, username, password, "labeler"), password))
    session.flush()
    author = accounts[0][0] if accounts else _demo_author(session)
    demos = tasks = 0
    for row, result in zip(rows, results, strict=True):
        prompt_id = result.get("prompt_id")
        if result.get("status") != "accepted" or prompt_id is None:
            continue
        if row.get("demonstration"):
            _add_demonstration(session, prompt_id, author, row["demonstration"])
            demos += 1
        if row.get("completions"):
            made = add_completions(
                session, prompt_id, [{"text": t, "origin": "demo"} for t in row["completions"]]
            )
            create_ranking_task(session, prompt_id, [c.id for c in made], overlap=1)
            tasks += 1
    session.commit()
    message = (
        f"Loaded the demo data set: {len(rows)} prompts across the ten use cases, "
        f"{demos} demonstrations, {tasks} ranking tasks."
    )
    if accounts:
        lines = "\n".join(f"  {user.username} / {password}" for user, password in accounts)
        message += f"\nDemo labeler accounts (passwords shown once):\n{lines}"
    else:
        message += (
            "\nNo demo labelers (made only on a new data dir served on 127.0.0.1); create "
            "accounts with `prefloop users create NAME --role labeler`."
        )
    return message
