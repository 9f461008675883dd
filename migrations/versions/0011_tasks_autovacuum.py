"""tasks autovacuum: the queue's table analyzed after 1,000 changed rows, vacuumed at 1,000 + 1%

The queue's claim walks the open tasks in id order expecting a task of the asked kind as soon
as the statistics say. By default a table is analyzed once 50 rows + 10% of it changed: at a
million prompts (1.2 M tasks) the last 120,000 changes of a round leave the statistics counting
thousands of open tasks of a kind that has a handful. A labeler who did all of those (each
waiting for a second labeler) then waited 1.7-2.0 s per next-task, each call reading every open
task of the other kinds, until an ANALYZE; after one, 39-52 ms (issue 14, docs/performance.md).

With a fixed threshold of 1,000 changed rows (no share of the table) autovacuum analyzes tasks
within a minute of a kind running low, and so does the periodic sweep on a server without
autovacuum (``app.services.table_statistics`` reads the table's own settings). An ANALYZE reads
a sample of at most 30,000 rows: a fraction of a second, at most once per autovacuum naptime.

Vacuumed sooner too, at 1,000 dead rows + 1% (13,000 at a million prompts, not the default
240,000): a task that leaves the open state leaves its open entries in the indexes until a
VACUUM, and the count of a drained kind's open tasks (a bitmap scan, which never marks them
dead) read each of them on every next-task: 24 ms with 130,000 of them, 0.1 ms after a VACUUM.

SQLite has no such statistics or vacuum thresholds: nothing to do there.

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

SETTINGS = {
    "autovacuum_analyze_scale_factor": "0",
    "autovacuum_analyze_threshold": "1000",
    "autovacuum_vacuum_scale_factor": "0.01",
    "autovacuum_vacuum_threshold": "1000",
}


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        values = ", ".join(f"{name} = {value}" for name, value in SETTINGS.items())
        op.execute(f"ALTER TABLE tasks SET ({values})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE tasks RESET ({', '.join(SETTINGS)})")
