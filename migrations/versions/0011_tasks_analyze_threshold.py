"""tasks analyze threshold: the queue's table is analyzed after 1,000 changed rows at any size

The queue's claim walks the open tasks in id order expecting a task of the asked kind as soon
as the statistics say. By default a table is analyzed once 50 rows + 10% of it changed: at a
million prompts (1.2 M tasks) the last 120,000 changes of a round leave the statistics counting
thousands of open tasks of a kind that has a handful. A labeler who did all of those (each
waiting for a second labeler) then waited 1.7-2.0 s per next-task, each call reading every open
task of the other kinds, until an ANALYZE; after one, 50 ms (issue 14, docs/performance.md).

With a fixed threshold of 1,000 changed rows (no share of the table) autovacuum analyzes tasks
within a minute of a kind running low, and so does the periodic sweep on a server without
autovacuum (``app.services.table_statistics`` reads the table's own settings). An ANALYZE reads
a sample of at most 30,000 rows: a fraction of a second, at most once per autovacuum naptime.
SQLite has no such statistics: nothing to do there.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 13:45:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ANALYZE_THRESHOLD = 1000


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE tasks SET (autovacuum_analyze_scale_factor = 0,"
            f" autovacuum_analyze_threshold = {ANALYZE_THRESHOLD})"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE tasks RESET (autovacuum_analyze_scale_factor, autovacuum_analyze_threshold)"
        )
