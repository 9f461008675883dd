"""The labeling hot path stays small: one next-task + submission cycle through the JSON API
runs at most a fixed number of SQL statements (issue 14), on both databases."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event

from tests.labeling_support import make_prompt, make_ranking_task

# next-task + submission of the usual task (one labeler), the authentication lookup of each
# request included (on PostgreSQL, of a token the process remembers, the check that it is
# still valid: ``token_memory``) (issue 14's bound: 8); transaction control is not counted. PostgreSQL runs
# three fewer: the claim makes the hold, the hold's end locks the task, and the ranking's
# insert writes its entries, each in one statement (CTEs that SQLite does not allow)
MAX_STATEMENTS_PER_CYCLE = {"sqlite": 8, "postgresql": 5}
# the last of several labelers also reads, in one statement, the earlier rankings and how many
# submitted, reads the labeling settings (adaptive overlap) and writes the task's tally and status
MAX_STATEMENTS_PER_SHARED_CYCLE = {"sqlite": 11, "postgresql": 8}


def _database(app_env: str) -> str:
    return "postgresql" if app_env.startswith("postgresql") else "sqlite"


# statements that only control a transaction: not counted
TRANSACTION_CONTROL = {"BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "PRAGMA"}


def _controls_a_transaction(statement: str) -> bool:
    return statement.lstrip().split(None, 1)[0].upper() in TRANSACTION_CONTROL


@contextmanager
def _listening(**listeners: Any) -> Iterator[None]:
    """The app's engine calls each of ``listeners`` (event name -> function) meanwhile."""
    from app.db import get_engine

    engine = get_engine()
    for name, listener in listeners.items():
        event.listen(engine, name, listener)
    try:
        yield
    finally:
        for name, listener in listeners.items():
            event.remove(engine, name, listener)


@contextmanager
def _token_checks(report: Callable[[str], None]) -> Iterator[None]:
    """``report`` gets the SQL of each check of a remembered token meanwhile: it runs on
    psycopg's own cursor (``token_memory.still_valid``, PostgreSQL), unseen by the engine's
    events."""
    from app.services import token_memory

    still_valid = token_memory.still_valid

    def checked(session, token_hash: str, user_version: str) -> bool:
        report(token_memory.CHECK_SQL)
        return still_valid(session, token_hash, user_version)

    token_memory.still_valid = checked
    try:
        yield
    finally:
        token_memory.still_valid = still_valid


@contextmanager
def counted_statements() -> Iterator[list[str]]:
    """The statements run meanwhile, a remembered token's check included."""
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if not _controls_a_transaction(statement):
            seen.append(statement)

    with _listening(before_cursor_execute=record), _token_checks(seen.append):
        yield seen


def _cycle(labeler, kind: str) -> None:
    r = labeler.get("/api/v1/tasks/next", params={"kind": kind})
    assert r.status_code == 200, r.text
    task = r.json()
    body: dict[str, Any]
    if kind == "ranking":
        shown = [c["completion_id"] for c in task["completions"]]
        body = {"ranking": [[cid] for cid in reversed(shown)]}
    else:
        body = {"text": "An ideal answer."}
    r = labeler.post(f"/api/v1/tasks/{task['task_id']}/submission", json=body)
    assert r.status_code == 200, r.text


def _labeling_statements(seen: list[str]) -> list[str]:
    """The statements of the cycle, after checking that authentication is exactly one lookup
    (or check of a remembered token) per request."""
    auth = [s for s in seen if "FROM api_tokens" in s]
    assert len(auth) == 2, auth  # next and submission
    return seen


@pytest.fixture(autouse=True)
def _no_gold_draw(monkeypatch: pytest.MonkeyPatch) -> None:
    """The draw that mixes in a gold task (``gold_rate``) costs one more lookup: off here, so
    the count is the same every run."""
    monkeypatch.setenv("PREFLOOP_GOLD_RATE", "0")


def _warm_labeler(api_as):
    """A labeler with ranking tasks waiting, after one cycle: the token's last-used time is
    written once a minute, so the next cycle does not."""
    labeler = api_as("labeler")
    for _ in range(3):
        make_ranking_task(make_prompt(), k=5, overlap=1)
    _cycle(labeler, "ranking")
    return labeler


def test_a_ranking_cycle_runs_few_statements(api_as, app_env: str) -> None:
    labeler = _warm_labeler(api_as)
    with counted_statements() as seen:
        _cycle(labeler, "ranking")
    work = _labeling_statements(seen)
    assert len(work) <= MAX_STATEMENTS_PER_CYCLE[_database(app_env)], "\n".join(work)


@contextmanager
def transactions_ended() -> Iterator[list[str]]:
    """ "commit" or "rollback" for each transaction that ends on the app's engine meanwhile."""
    ended: list[str] = []
    with _listening(
        commit=lambda _connection: ended.append("commit"),
        rollback=lambda _connection: ended.append("rollback"),
    ):
        yield ended


def test_a_cycle_is_one_transaction_per_request(api_as, app_env: str) -> None:
    """On PostgreSQL a small body's early authentication (before the body is read) and its
    route share one transaction: a cycle is two transactions, not three. On SQLite, where the
    work runs on the event loop (``app.db.on_the_loop``), the submission's lookup commits
    before the loop goes on: no transaction is kept open across its other requests."""
    labeler = _warm_labeler(api_as)
    with transactions_ended() as ended:
        _cycle(labeler, "ranking")
    assert ended == ["commit"] * (2 if app_env.startswith("postgresql") else 3), ended


@contextmanager
def after_the_lookup() -> Iterator[list[str]]:
    """What the app's engine did next after each authentication lookup meanwhile: "commit",
    or "statement" (the route's first, in the lookup's transaction)."""
    steps: list[str] = []

    def statement(conn, cursor, text, parameters, context, executemany) -> None:
        if "FROM api_tokens" in text:
            steps.append("lookup")
        elif not _controls_a_transaction(text):
            steps.append("statement")

    next_steps: list[str] = []
    with (
        _listening(
            before_cursor_execute=statement, commit=lambda _connection: steps.append("commit")
        ),
        _token_checks(lambda _sql: steps.append("lookup")),
    ):
        yield next_steps
    next_steps.extend(steps[i + 1] for i, step in enumerate(steps[:-1]) if step == "lookup")


def test_on_sqlite_a_lookup_before_the_body_commits(api_as, app_env) -> None:
    """On SQLite every transaction holds the write lock: a small body to any route (one that
    may work outside the database first, as the intake's PII scan does, or a submission,
    whose route runs on the event loop after it) commits its lookup before the route runs, so
    no writer waits on that work. PostgreSQL shares the lookup's transaction with every small
    body's route. Next-task, without a body, looks its caller up in its route's
    transaction on both."""
    researcher = api_as("researcher")
    researcher.get("/api/v1/me")  # the token's last use is written once a minute
    on_postgresql = app_env.startswith("postgresql")
    with after_the_lookup() as steps:
        r = researcher.post("/api/v1/prompts", json={"prompts": [{"text": "Hi", "user_id": "u1"}]})
    assert r.status_code == 200, r.text
    assert steps == ["statement" if on_postgresql else "commit"], steps
    labeler = _warm_labeler(api_as)
    with after_the_lookup() as steps:
        _cycle(labeler, "ranking")
    # next-task's, then the submission's
    assert steps == ["statement", "statement" if on_postgresql else "commit"], steps


def test_a_large_body_is_not_awaited_inside_a_transaction(api_as) -> None:
    """A body larger than ``SMALL_BODY_BYTES`` may take a while to arrive: its authentication
    commits first, on both databases, so no transaction (nor, behind PgBouncer, server
    connection) waits on the upload."""
    from app.middleware import SMALL_BODY_BYTES

    labeler = api_as("labeler")
    make_ranking_task(make_prompt(), k=5, overlap=1)
    r = labeler.get("/api/v1/tasks/next", params={"kind": "ranking"})
    task = r.json()
    shown = [c["completion_id"] for c in task["completions"]]
    body = json.dumps({"ranking": [[cid] for cid in reversed(shown)]})
    padded = body + " " * (SMALL_BODY_BYTES + 1)  # JSON allows trailing whitespace
    with transactions_ended() as ended:
        r = labeler.post(
            f"/api/v1/tasks/{task['task_id']}/submission",
            content=padded,
            headers={"Content-Type": "application/json"},
        )
    assert r.status_code == 200, r.text
    assert ended == ["commit", "commit"], ended  # the lookup's, then the submission's


def test_a_shared_ranking_cycle_runs_few_statements(api_as, app_env: str) -> None:
    first, second = api_as("labeler"), api_as("labeler")
    for _ in range(2):
        make_ranking_task(make_prompt(), k=5, overlap=2)
    _cycle(first, "ranking")
    _cycle(second, "ranking")  # warm
    _cycle(first, "ranking")
    with counted_statements() as seen:
        _cycle(second, "ranking")  # the last of two labelers: the task is done
    work = _labeling_statements(seen)
    assert len(work) <= MAX_STATEMENTS_PER_SHARED_CYCLE[_database(app_env)], "\n".join(work)


def test_a_demonstration_cycle_runs_few_statements(api_as, app_env: str) -> None:
    from app.db import get_sessionmaker
    from app.services.queue_upkeep import ensure_demonstration_tasks

    labeler = api_as("labeler")
    for _ in range(3):
        make_prompt()
    with get_sessionmaker()() as s:
        ensure_demonstration_tasks(s)
        s.commit()
    _cycle(labeler, "demonstration")
    with counted_statements() as seen:
        _cycle(labeler, "demonstration")
    work = _labeling_statements(seen)
    assert len(work) <= MAX_STATEMENTS_PER_CYCLE[_database(app_env)], "\n".join(work)


def test_the_labelers_own_counts_read_assignments_alone(api_as) -> None:
    """The labeler home's counts of their finished work: one statement, on assignments only
    (their copy of the task's kind), never joined with tasks (issue 14)."""
    import re

    from app.db import get_sessionmaker
    from app.models import User
    from app.services.labeler_work import labeler_counts
    from app.services.queue_upkeep import ensure_demonstration_tasks

    labeler = api_as("labeler")
    for _ in range(3):
        make_ranking_task(make_prompt(split="test"), k=4, overlap=1)
    make_prompt()
    with get_sessionmaker()() as s:
        ensure_demonstration_tasks(s)
        s.commit()
    _cycle(labeler, "ranking")
    _cycle(labeler, "ranking")
    _cycle(labeler, "demonstration")
    task = labeler.get("/api/v1/tasks/next", params={"kind": "ranking"}).json()
    r = labeler.post(f"/api/v1/tasks/{task['task_id']}/submission", json={"skip": {"reason": "?"}})
    assert r.status_code == 200, r.text
    with get_sessionmaker()() as s:
        user = s.get_one(User, labeler.user.id)
        with counted_statements() as seen:
            counts = labeler_counts(s, user)
    done = {"demonstration": 1, "ranking": 2, "evaluation": 0, "skipped": 1}
    assert counts == {"today": done, "total": done}
    assert len(seen) == 1 and "assignments" in seen[0], seen
    assert not re.search(r"\btasks\b", seen[0]), seen[0]


# psycopg prepares a statement on its 6th execution; PostgreSQL plans the first 5 executions
# of a prepared statement for their parameters, then keeps one generic plan when it is not
# dearer: 14 claims give it the chance
CLAIMS = 14
OPEN_TASKS = 3000
# the partial ones (all kinds', the ranking kind's) and (kind, status, id): each reads open
# tasks alone, in id order
OPEN_TASK_INDEXES = ("ix_tasks_open_id", "ix_tasks_open_ranking_id", "ix_tasks_kind_status_id")


def test_postgresql_plans_the_queue_claim_once(app_env: str) -> None:
    """The claim of the next task is a prepared statement PostgreSQL plans once, and the plan
    it keeps reads the partial index of open tasks (issue 14). With the claim's fixed words
    bound as parameters, that index was out of the plan's reach: PostgreSQL either planned each
    call anew (1.1 ms of its CPU against 0.3 ms to run it, on 20,000 open tasks) or, as on
    this queue, kept a plan that walks the primary key, which a connection keeps for its
    lifetime while the tasks before the first open one pile up."""
    if not app_env.startswith("postgresql"):
        pytest.skip("prepared statements and plan caching are PostgreSQL's")
    from sqlalchemy import insert, text
    from sqlalchemy.orm import Session

    from app.db import get_engine
    from app.models import Task, User
    from app.services.queue import assign_next_task

    for n in range(CLAIMS):
        make_ranking_task(make_prompt(f"Explain topic {n} simply."))
    # a queue with many open tasks behind the first ones
    more = make_prompt("A prompt with many tasks.")
    with get_engine().begin() as connection:
        connection.execute(
            insert(Task),
            [{"prompt_id": more, "kind": "ranking", "overlap": 1, "filled": 0,
              "status": "open"} for _ in range(OPEN_TASKS)],
        )  # fmt: skip
    with get_engine().connect() as connection:
        connection.execute(text("ANALYZE"))
        connection.commit()
    # one connection throughout: prepared statements and their plans are per connection
    with get_engine().connect() as connection:
        with Session(bind=connection) as session:
            labelers = [
                User(username=f"claimer{n}", password_hash="-", role="labeler")
                for n in range(CLAIMS)
            ]
            session.add_all(labelers)
            session.commit()
            for labeler in labelers:
                assert assign_next_task(session, labeler, "ranking") is not None
                session.commit()
        plans = connection.execute(
            text(
                "SELECT name, cardinality(parameter_types), generic_plans, custom_plans"
                " FROM pg_prepared_statements WHERE statement LIKE 'WITH claimed AS%'"
            )
        ).all()
        assert len(plans) == 1, plans
        name, parameters, generic, custom = plans[0]
        assert generic >= 1, plans  # the claims after PostgreSQL's first five
        assert custom <= 5, plans
        # and that one plan reads an index of open tasks, not the primary key
        connection.execute(text("SET plan_cache_mode = force_generic_plan"))
        nulls = ", ".join(["NULL"] * parameters)
        plan = "\n".join(connection.execute(text(f"EXPLAIN EXECUTE {name}({nulls})")).scalars())
        connection.rollback()
    assert any(index in plan for index in OPEN_TASK_INDEXES), plan


def _plans_of(connection, key) -> tuple[int, int]:
    """Run ``SELECT sum(v) FROM skewed WHERE k = <key>`` 20 times for keys of one row each,
    on one connection (psycopg prepares it on the fifth); its (generic, custom) plan counts."""
    from sqlalchemy import Integer, column, func, select, table, text

    skewed = table("skewed", column("k", Integer), column("v", Integer))
    statement = select(func.sum(skewed.c.v)).where(skewed.c.k == key)
    for k in range(100, 120):
        connection.execute(statement, {"k": k})
    generic, custom = connection.execute(
        text(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
            " WHERE statement LIKE '%FROM skewed%'"
        )
    ).one()
    connection.execute(text("DEALLOCATE ALL"))
    return generic, custom


def test_a_value_planned_for_any_keeps_one_plan_on_postgresql(app_env: str) -> None:
    """``app.db.planned_for_any``: a key read as ``(SELECT $1)`` keeps its prepared statement's
    one generic plan, where a key bound plainly is planned on every execution when a few of
    its values have many rows and the ones looked up have few (issue 14: a shared task's read
    of its earlier rankings was, whenever the statistics lagged the data, 200-300 us of the
    server's CPU to plan against 15-45 us to run). The submission's read uses it."""
    if not app_env.startswith("postgresql"):
        pytest.skip("prepared statements and plan caching are PostgreSQL's")
    from sqlalchemy import Integer, bindparam, text
    from sqlalchemy.dialects import postgresql

    from app.db import get_engine, planned_for_any
    from app.services.submission_statements import submit_statements

    with get_engine().connect() as connection:
        connection.execute(text("CREATE TEMP TABLE skewed (k int, v int)"))
        # five keys with 40,000 rows each, then 2,000 keys with one row each
        connection.execute(
            text("INSERT INTO skewed SELECT g % 5, g FROM generate_series(1, 200000) g")
        )
        connection.execute(text("INSERT INTO skewed SELECT g, g FROM generate_series(6, 2000) g"))
        connection.execute(text("CREATE INDEX ON skewed (k)"))
        connection.execute(text("ANALYZE skewed"))
        generic, custom = _plans_of(connection, planned_for_any(bindparam("k", type_=Integer)))
        connection.rollback()
    assert custom <= 5 and generic >= 10, (generic, custom)
    # both of the submission's reads by task id (its counts, its earlier rankings)
    sql = str(submit_statements().after_lock.compile(dialect=postgresql.dialect()))
    assert sql.count("= (SELECT %(task_id)s") == 2, sql


def test_a_drained_kind_is_not_searched_again_until_a_task_of_it_opens(api_as) -> None:
    """Once a next-task finds no task of its kind open at all, the next ones count the kind's
    open tasks (an index read, whatever the database's statistics say) instead of running the
    claims, whose plan at a million prompts read every open task of the other kinds when the
    statistics lagged (issue 14); a task that opens is taken as usual."""
    labeler = api_as("labeler")
    make_ranking_task(make_prompt(), k=4, overlap=1)
    _cycle(labeler, "ranking")  # the only task, done
    assert labeler.get("/api/v1/tasks/next", params={"kind": "ranking"}).status_code == 204
    with counted_statements() as seen:
        r = labeler.get("/api/v1/tasks/next", params={"kind": "ranking"})
    assert r.status_code == 204
    claims = [s for s in seen if "UPDATE tasks" in s]
    assert claims == [], claims
    make_ranking_task(make_prompt(), k=4, overlap=1)
    r = labeler.get("/api/v1/tasks/next", params={"kind": "ranking"})
    assert r.status_code == 200 and len(r.json()["completions"]) == 4


def test_the_home_counts_a_drained_kind_without_searching_it(api_as) -> None:
    """The labeler home's waiting counts take the same way round a drained kind (one search
    finds it drained, the next visits count its open tasks first), and count a task that
    opens again."""
    from app.db import get_sessionmaker
    from app.models import User
    from app.services.queue import waiting_counts

    labeler = api_as("labeler")

    def counts() -> int:
        with get_sessionmaker()() as session:
            user = session.get(User, labeler.user.id)
            assert user is not None
            return waiting_counts(session, user)["ranking"]

    assert counts() == 0  # nothing at all: the kind found drained
    with counted_statements() as seen:
        assert counts() == 0
    searches = [s for s in seen if "ORDER BY" in s]
    assert searches == [], searches
    make_ranking_task(make_prompt(), k=4, overlap=1)
    assert counts() == 1


# earlier rounds' ranking tasks (done), then a backlog of open demonstration tasks, then this
# round's ranking tasks (intake makes a prompt's demonstration task when it arrives, a sampling
# job its ranking task later), the open ranking tasks a few percent of the open ones: a
# million-prompt queue's shape at a tenth of its size (issue 14)
EARLIER_RANKING_TASKS = 30_000
BACKLOG = 90_000
LATER_RANKING_TASKS = 2_500


def _tasks_rows_read(connection, statement: str, parameters: dict) -> int:
    """Rows of ``tasks`` that ``statement`` read to run (returned or filtered out), by
    ``EXPLAIN ANALYZE`` with the same parameters, rolled back."""
    plan = connection.exec_driver_sql(
        "EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters
    ).scalar()
    connection.rollback()

    def read(node: dict) -> int:
        own = 0
        if node.get("Relation Name") == "tasks":
            loops = node.get("Actual Loops", 1)
            own = (node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)) * loops
        return own + sum(read(child) for child in node.get("Plans", []))

    return read(plan[0]["Plan"])


def _ranking_tasks(prompt: int, n: int, status: str) -> None:
    """``n`` ranking tasks of ``prompt`` (outputs not needed here), ``done`` (filled) or open."""
    from sqlalchemy import text

    from app.db import get_engine

    with get_engine().begin() as connection:
        connection.execute(
            text(
                "INSERT INTO tasks (kind, prompt_id, overlap, filled, status, created_at,"
                " screening, overlap_added, agreement_credit, agreement_pairs)"
                " SELECT 'ranking', :prompt, 1, :filled, :status, now(), false, 0, 0, 0"
                " FROM generate_series(1, :n)"
            ),
            {"prompt": prompt, "n": n, "status": status, "filled": int(status == "done")},
        )


def test_a_kinds_tasks_made_after_a_backlog_of_another_kind_are_found_directly(
    app_env: str,
) -> None:
    """Ranking tasks made after a backlog of open demonstration tasks: the ranking claim and
    the home's ranking count read ranking tasks, not the backlog before them. PostgreSQL's
    plan walked the index of all open tasks in id order (it takes a kind's tasks as spread
    evenly over the ids), past every open demonstration task (here 90,000 rows read for each):
    150-260 ms per ranking next-task at a million prompts, against 0.4 ms on an index of that
    kind's open tasks (migration 0012)."""
    if not app_env.startswith("postgresql"):
        pytest.skip("PostgreSQL's planner; SQLite's embedded default is not at this scale")
    from sqlalchemy import text
    from sqlalchemy.orm import Session

    from app.db import get_engine
    from app.models import User
    from app.services.queue import assign_next_task, waiting_counts

    _ranking_tasks(make_prompt("A prompt of earlier rounds."), EARLIER_RANKING_TASKS, "done")
    with get_engine().begin() as connection:
        connection.execute(
            text(
                "INSERT INTO prompts (text, source, kind, client, user_id, split, status,"
                " created_at) SELECT 'Backlog prompt ' || n, 'api', 'api', '', 'customer-' || n,"
                " 'train', 'accepted', now() FROM generate_series(1, :n) AS n"
            ),
            {"n": BACKLOG},
        )
        connection.execute(
            text(
                "INSERT INTO tasks (kind, prompt_id, overlap, filled, status, created_at,"
                " screening, overlap_added, agreement_credit, agreement_pairs)"
                " SELECT 'demonstration', id, 1, 0, 'open', now(), false, 0, 0, 0"
                " FROM prompts WHERE text LIKE 'Backlog prompt %'"
            )
        )
    make_ranking_task(make_prompt("Rank these outputs."), k=4)
    _ranking_tasks(make_prompt("A prompt of this round."), LATER_RANKING_TASKS, "open")
    with get_engine().connect() as connection:
        connection.execute(text("ANALYZE"))
        connection.commit()

    seen: list[tuple[str, dict]] = []

    def remember(conn, cursor, statement, parameters, context, executemany) -> None:
        if "FROM tasks" in statement and isinstance(parameters, dict):
            seen.append((statement, dict(parameters)))

    with get_engine().connect() as connection:
        with Session(bind=connection) as session:
            labeler = User(username="late-ranker", password_hash="-", role="labeler")
            session.add(labeler)
            session.commit()
            with _listening(before_cursor_execute=remember):
                counts = waiting_counts(session, labeler)
                held = assign_next_task(session, labeler, "ranking")
            session.rollback()
        assert counts["ranking"] == 101 and counts["demonstration"] == 101, counts
        assert held is not None
        searches = [(s, p) for s, p in seen if "ORDER BY" in s and "kind = 'ranking'" in s]
        assert len(searches) == 2, [s for s, _ in seen]  # the home's count, the claim
        read = [_tasks_rows_read(connection, s, p) for s, p in searches]
    assert max(read) < 1_000, read
