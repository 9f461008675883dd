"""The per-user cap on accepted prompts, enforced under concurrency.

Each user ID has one ``user_quotas`` row. An ingest inserts the rows it lacks (INSERT ... ON
CONFLICT DO NOTHING) and then locks them (SELECT ... FOR UPDATE) in user-ID order, so two
concurrent ingests for the same user run one after the other and see each other's counts; the
sorted order means they never deadlock. SQLite serialises writers (BEGIN IMMEDIATE), which gives
the same guarantee. The lock is held to the end of the transaction; ``store_quotas`` then writes
the new counts. User IDs are the ingesting client's own: the same ID from two clients is two
quota rows.
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.db import is_postgres
from app.models import UserQuota


def lock_quotas(session: Session, client: str, user_ids: set[str]) -> dict[str, int]:
    """Create missing quota rows, lock all of them, return user ID -> accepted so far."""
    if not user_ids:
        return {}
    ordered = sorted(user_ids)
    dialect = postgresql if is_postgres(session) else sqlite
    session.execute(
        dialect.insert(UserQuota)
        .values([{"client": client, "user_id": u, "accepted": 0} for u in ordered])
        .on_conflict_do_nothing(index_elements=["client", "user_id"])
    )
    rows = session.execute(
        select(UserQuota.user_id, UserQuota.accepted)
        .where(UserQuota.client == client, UserQuota.user_id.in_(ordered))
        .order_by(UserQuota.user_id)
        .with_for_update()
    )
    return {user_id: accepted for user_id, accepted in rows}


def store_quotas(session: Session, client: str, changes: dict[str, int]) -> None:
    """Add each delta to a user's accepted count (rows locked by ``lock_quotas``), in one
    executemany: a batch of 500 prompts from 400 user IDs is one round of statements, not 400."""
    rows = [
        {"quota_client": client, "quota_user": user_id, "delta": delta}
        for user_id, delta in sorted(changes.items())
        if delta
    ]
    if not rows:
        return
    table = cast(Table, UserQuota.__table__)
    session.connection().execute(
        update(table)
        .where(
            table.c.client == bindparam("quota_client"),
            table.c.user_id == bindparam("quota_user"),
        )
        .values(accepted=table.c.accepted + bindparam("delta")),
        rows,
    )


def release_one(session: Session, client: str, user_id: str) -> None:
    """Give back one accepted slot (a prompt left the accepted set)."""
    session.execute(
        update(UserQuota)
        .where(UserQuota.client == client, UserQuota.user_id == user_id, UserQuota.accepted > 0)
        .values(accepted=UserQuota.accepted - 1)
    )
