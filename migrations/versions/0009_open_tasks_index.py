"""open tasks index: the open tasks in id order, which the queue and the labeler home walk

With only (kind, status, id) PostgreSQL still walked the primary key for `... WHERE status =
'open' ORDER BY id LIMIT n` (it takes the open tasks as spread evenly over the ids), reading
the 270,000 done tasks before the first open one at a million prompts: 50-85 ms per look,
0.1-8 ms with this index.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 14:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.create_index(
            "ix_tasks_open_id",
            ["id"],
            unique=False,
            postgresql_where=sa.text("status = 'open'"),
            sqlite_where=sa.text("status = 'open'"),
        )


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_tasks_open_id",
            postgresql_where=sa.text("status = 'open'"),
            sqlite_where=sa.text("status = 'open'"),
        )
