"""assignment task kind: each assignment keeps its task's kind, in an index with its labeler

The labeler home's own counts (finished work per kind, today and in total) joined the labeler's
finished assignments with tasks for the kind: 85-110 ms for a labeler with 10,000 finished
tasks at a million prompts, growing with their work. With the kind on the assignment and the
index (labeler_id, status, task_kind, finished_at) the counts read that index alone. The index
replaces (labeler_id, status), a prefix of it, so each hold still updates one index of the two.

Existing rows take their task's kind: one UPDATE ... FROM on PostgreSQL, a correlated subquery
on SQLite; then the column is NOT NULL (on SQLite by batch mode's copy of the table).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29 17:05:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_assignments_labeler_status_kind_finished"


def upgrade() -> None:
    with op.batch_alter_table("assignments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("task_kind", sa.String(length=32), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "UPDATE assignments SET task_kind = tasks.kind FROM tasks "
            "WHERE tasks.id = assignments.task_id"
        )
    else:
        op.execute(
            "UPDATE assignments SET task_kind = "
            "(SELECT tasks.kind FROM tasks WHERE tasks.id = assignments.task_id)"
        )
    with op.batch_alter_table("assignments", schema=None) as batch_op:
        batch_op.alter_column("task_kind", existing_type=sa.String(length=32), nullable=False)
        batch_op.create_index(
            INDEX, ["labeler_id", "status", "task_kind", "finished_at"], unique=False
        )
        batch_op.drop_index("ix_assignments_labeler_status")


def downgrade() -> None:
    with op.batch_alter_table("assignments", schema=None) as batch_op:
        batch_op.create_index(
            "ix_assignments_labeler_status", ["labeler_id", "status"], unique=False
        )
        batch_op.drop_index(INDEX)
        batch_op.drop_column("task_kind")
