"""task statistics: PostgreSQL's planner learns how kind and status go together on tasks

Without them it multiplies the two columns' selectivities as if independent: at a million
prompts it expected 30 open demonstration tasks of 900,000 (or 230,000 after ANALYZE) and
chose plans that read every task for the labeler home's waiting counts. SQLite has no such
statistics: nothing to do there.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 14:15:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE STATISTICS IF NOT EXISTS st_tasks_kind_status (mcv) ON kind, status FROM tasks")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP STATISTICS IF EXISTS st_tasks_kind_status")
