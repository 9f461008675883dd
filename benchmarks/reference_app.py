"""The floor of the labeling job, for the ratio in benchmarks/labeling_http.py: a minimal
FastAPI app on the same database and uvicorn workers, doing per cycle only what any task
queue must (next: one ``SELECT … FOR UPDATE SKIP LOCKED`` + one ``UPDATE``; submit: one
``INSERT``), with no authentication, no validation and no rules.

On SQLite (the embedded default's floor) it does what SQLite allows a queue, as prefloop
does: every transaction takes the write lock up front (``BEGIN IMMEDIATE``, WAL), and the
``SELECT`` has no row lock.

    PREFLOOP_REFERENCE_DATABASE_URL=postgresql+psycopg://... \
        uvicorn benchmarks.reference_app:app --workers 2 --port 8002
"""

from __future__ import annotations

import json
import os
from typing import Any

from fastapi import FastAPI, Response
from sqlalchemy import Engine, create_engine, event, text

from app.config import get_settings

URL = os.environ.get(
    "PREFLOOP_REFERENCE_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/reference"
)
SQLITE = URL.startswith("sqlite")


# prefloop's pool, from its own settings (PREFLOOP_DB_POOL_SIZE, PREFLOOP_DB_MAX_OVERFLOW and
# their defaults): both sides keep the same connections open
_settings = get_settings()
POOL = {"pool_size": _settings.db_pool_size, "max_overflow": _settings.db_max_overflow}


def make_engine(url: str) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, **POOL)
    engine = create_engine(url, **POOL, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # SQLAlchemy's BEGIN below, not the driver's
        dbapi_conn.execute("PRAGMA journal_mode=WAL")
        dbapi_conn.execute("PRAGMA foreign_keys=ON")

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


engine = make_engine(URL)
app = FastAPI()

# ref_tasks_open: the claim reads unfilled tasks in id order, as prefloop's reads its open
# ones (ix_tasks_open_id); without it each claim stepped over every filled task, and the
# floor slowed down during its own run
SCHEMA = """
CREATE TABLE IF NOT EXISTS ref_tasks (
    id {key}, prompt text NOT NULL, outputs json NOT NULL,
    overlap int NOT NULL, filled int NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS ref_rankings (
    id {key}, task_id int NOT NULL REFERENCES ref_tasks(id), labeler int NOT NULL,
    ranking json NOT NULL, UNIQUE (task_id, labeler));
CREATE INDEX IF NOT EXISTS ref_tasks_open ON ref_tasks (id) WHERE filled < overlap;
"""
ROW_LOCK = "" if SQLITE else " FOR UPDATE SKIP LOCKED"


def seed(url: str, tasks: int) -> None:
    """The same tasks as the prefloop run: a prompt and five outputs each, overlap 1..3."""
    seeder = make_engine(url)
    key = "INTEGER PRIMARY KEY" if url.startswith("sqlite") else "serial PRIMARY KEY"
    with seeder.begin() as conn:
        for statement in SCHEMA.format(key=key).split(";"):
            if statement.strip():
                conn.execute(text(statement))
        conn.execute(
            text("INSERT INTO ref_tasks (prompt, outputs, overlap) VALUES (:p, :o, :v)"),
            [
                {
                    "p": f"Prompt {n}: explain something simply.",
                    "o": json.dumps([f"Output {i} of {n}" for i in range(5)]),
                    "v": 1 + n % 3,
                }
                for n in range(tasks)
            ],
        )
    with seeder.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("ANALYZE")  # as prefloop's database: statistics of a live one
    seeder.dispose()


@app.get("/next")
def next_task(labeler: int) -> Response:
    with engine.begin() as conn:
        row = conn.execute(
            text(
                "SELECT t.id, t.prompt, t.outputs FROM ref_tasks t WHERE t.filled < t.overlap"
                " AND NOT EXISTS (SELECT 1 FROM ref_rankings r WHERE r.task_id = t.id"
                " AND r.labeler = :l) ORDER BY t.id LIMIT 1" + ROW_LOCK
            ),
            {"l": labeler},
        ).first()
        if row is None:
            return Response(status_code=204)
        conn.execute(
            text("UPDATE ref_tasks SET filled = filled + 1 WHERE id = :id"), {"id": row.id}
        )
    body = {"task_id": row.id, "prompt": row.prompt, "completions": row.outputs}
    return Response(json.dumps(body), media_type="application/json")


@app.post("/submit/{task_id}")
def submit(task_id: int, labeler: int, body: dict) -> dict:
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO ref_rankings (task_id, labeler, ranking) VALUES (:t, :l, :r)"),
            {"t": task_id, "l": labeler, "r": json.dumps(body["ranking"])},
        )
    return {"task_id": task_id, "status": "submitted"}
