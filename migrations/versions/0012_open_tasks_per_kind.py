"""open tasks per kind: each kind's open tasks in id order, in an index of their own

A labeler's next-task and the home's waiting counts ask for one kind (`... WHERE status = 'open'
AND kind = 'ranking' ORDER BY id LIMIT n`). PostgreSQL takes a kind's tasks as spread evenly
over the ids, so it walked the index of all open tasks (0009) expecting a ranking task every
few dozen entries. They are not spread evenly: intake makes a prompt's demonstration task when
the prompt arrives, a sampling job its ranking task later, so the ranking tasks come after the
backlog of open demonstration tasks. At a million prompts (900,000 open demonstration tasks,
25,000 open ranking tasks after them) each ranking next-task walked past all 900,000: 150-260
ms, and the home's ranking count 130-230 ms; with this index 0.4 ms (issue 14,
docs/performance.md). The all-kinds index stays for a request of any kind.

A new task kind needs its index here (a migration), as the model declares one per kind.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 18:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KINDS = ("demonstration", "ranking", "evaluation", "gold", "gold_demonstration")


def _where(kind: str) -> dict[str, sa.TextClause]:
    condition = f"status = 'open' AND kind = '{kind}'"
    return {"postgresql_where": sa.text(condition), "sqlite_where": sa.text(condition)}


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        for kind in KINDS:
            batch_op.create_index(f"ix_tasks_open_{kind}_id", ["id"], unique=False, **_where(kind))


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        for kind in KINDS:
            batch_op.drop_index(f"ix_tasks_open_{kind}_id", **_where(kind))
