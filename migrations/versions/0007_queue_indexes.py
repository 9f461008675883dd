"""queue indexes: open tasks of a kind in id order (the queue's ORDER BY id LIMIT 1, no sort)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 12:10:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.create_index("ix_tasks_kind_status_id", ["kind", "status", "id"], unique=False)
        batch_op.drop_index("ix_tasks_kind_status")


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.create_index("ix_tasks_kind_status", ["kind", "status"], unique=False)
        batch_op.drop_index("ix_tasks_kind_status_id")
