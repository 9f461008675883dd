"""Table statistics on a PostgreSQL server without autovacuum.

PostgreSQL keeps a prepared statement's generic plan for the connection's lifetime, until the
statistics of a table it reads change (``ANALYZE``, which autovacuum runs as tables change). On
a server with ``autovacuum = off`` that never happens: a plan made while the tables were small
stays. The labeling cycle's read of a task's earlier rankings (``ranks_statement``) kept a hash
join over a sequential scan of every ranking entry, planned when there were a few hundred:
104 us a call at first, 1,011 us after 6,300 cycles, and every shared submission slower than the
one before (issue 14).

So, on such a server only, the periodic sweep (``app.worker.heartbeat.sweep_jobs``) analyzes the
tables that changed as much as autovacuum would wait for (``autovacuum_analyze_threshold`` +
``autovacuum_analyze_scale_factor`` x rows: the table's own settings where it has them, as tasks
has since migration 0011, else the server's), one process at a time, and warns once that
autovacuum is off: dead rows still need ``VACUUM``, which this does not do.
"""

from __future__ import annotations

import logging

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

log = logging.getLogger(__name__)

# pg_try_advisory_lock's key: one process analyzes at a time (the others skip that sweep)
_ANALYZER_LOCK = int.from_bytes(b"pfl-anlz", "big")


def _setting(name: str) -> str:
    """SQL: the table's own ``name`` (``ALTER TABLE … SET (name = …)``, as migration 0011 sets
    for tasks), else the server's."""
    return (
        f"coalesce((SELECT split_part(o, '=', 2)::float8 FROM unnest(c.reloptions) o"
        f" WHERE split_part(o, '=', 1) = '{name}'), current_setting('{name}')::float8)"
    )


_CHANGED_TABLES = text(
    "SELECT s.relname FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid"
    " WHERE s.schemaname = current_schema() AND s.n_mod_since_analyze >"
    f" {_setting('autovacuum_analyze_threshold')}"
    f" + {_setting('autovacuum_analyze_scale_factor')} * greatest(c.reltuples, 0)"
    " ORDER BY s.relname"
)

_warned = False


def autovacuum_on(connection: Connection) -> bool:
    return connection.execute(text("SELECT current_setting('autovacuum')")).scalar() == "on"


def analyze_changed_tables(connection: Connection) -> list[str]:
    """On PostgreSQL with autovacuum off: ``ANALYZE`` the tables that changed enough since
    their last analyze (as autovacuum would); returns those analyzed. Nothing elsewhere, and
    nothing while another process is at it.

    Each table in a transaction of its own, waiting at most a second for its lock (a
    migration or a TRUNCATE holding it is left alone until the next sweep): a sweep never
    holds one table while it waits for another."""
    global _warned
    if connection.dialect.name != "postgresql" or autovacuum_on(connection):
        connection.rollback()
        return []
    if not _warned:
        _warned = True
        log.warning(
            "PostgreSQL's autovacuum is off: prefloop analyzes the tables that change in its "
            "periodic sweep, so that query plans follow the data; dead rows still need VACUUM "
            "(turn autovacuum on)"
        )
    lock = {"key": _ANALYZER_LOCK}
    if not connection.execute(text("SELECT pg_try_advisory_lock(:key)"), lock).scalar():
        connection.rollback()
        return []
    analyzed: list[str] = []
    try:
        tables = list(connection.execute(_CHANGED_TABLES).scalars())
        connection.commit()
        quote = connection.dialect.identifier_preparer.quote
        for table in tables:
            try:
                connection.execute(text("SET LOCAL lock_timeout = '1s'"))
                connection.execute(text(f"ANALYZE {quote(table)}"))
                connection.commit()
            except DBAPIError as exc:  # its lock was held a second (or not ours): next sweep
                connection.rollback()
                log.debug("not analyzed now: %s (%s)", table, exc.orig)
                continue
            analyzed.append(table)
    finally:
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), lock)
        connection.commit()
    return analyzed
