"""Engine, session factory and the declarative base."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping
from contextlib import closing
from contextvars import ContextVar
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, TypeVar, cast

import anyio
from anyio import to_thread
from sqlalchemy import (
    ColumnElement,
    CursorResult,
    DateTime,
    Engine,
    MetaData,
    Result,
    ScalarSelect,
    String,
    create_engine,
    event,
    inspect,
    literal_column,
    select,
)
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapper,
    Session,
    make_transient_to_detached,
    sessionmaker,
)
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection, QueuePool
from sqlalchemy.types import TypeDecorator
from sqlalchemy.util import queue as pool_queue

from app.config import get_settings

# stable constraint names so Alembic migrations are identical on SQLite and PostgreSQL
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given; use utcnow()")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def utcnow() -> datetime:
    return datetime.now(UTC)


def sql_constant(value: str) -> ColumnElement[str]:
    """``value`` written into the statement's text instead of bound as a parameter: for the
    fixed words of a statement that runs on every request (a status, a kind).

    psycopg prepares a statement run often, and PostgreSQL then plans it once (a generic plan)
    unless that plan is estimated dearer than planning each call anew. A generic plan cannot
    use a partial index such as the open tasks' (``status = 'open'``) unless the text itself
    says ``'open'``. With its constants bound, the queue's claim was planned on every call
    (1.1 ms of the server's CPU against 0.3 ms to run it, issue 14), or its one plan walked
    the primary key past every task no longer open.
    """
    if not value.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"not a plain word: {value!r}")  # never data: nothing to escape
    # rendered when the statement is compiled (SQLAlchemy caches that), not on each execution
    return literal_column(f"'{value}'", String)


ValueT = TypeVar("ValueT")


def planned_for_any(value: ColumnElement[ValueT]) -> ScalarSelect[ValueT]:
    """``value`` (a bound parameter) as a one-row sub-select, ``(SELECT $1)``: PostgreSQL then
    estimates the statement the same way whatever the value is, so once psycopg has prepared
    it, its one generic plan always wins over planning each execution anew.

    For a key whose every value selects about as many rows (a task's assignments or rankings).
    Bound plainly, PostgreSQL compares the generic plan's estimate, made for an average value,
    with the custom plans' for the values seen, plus a charge for planning; a shared task's
    read of its earlier rankings came out a few points dearer as a generic plan whenever the
    statistics lagged the data, and was then planned on every submission: 200-300 us of the
    server's CPU to plan against 15-45 us to run (issue 14)."""
    return select(value).scalar_subquery()


def rows_matched(result: Result[Any]) -> int:
    """The rows an UPDATE or DELETE matched (``Session.execute`` types its result as a plain
    ``Result``; for these statements it is a ``CursorResult``)."""
    return cast("CursorResult[Any]", result).rowcount


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime()}


# how long a SQLite write transaction waits for this process's other writers (in the pool)
# and for another process's (SQLite's busy timeout)
SQLITE_WRITER_WAIT_S = 30.0

# True while database work runs on the event loop's own thread (``on_the_loop``): there it
# may not wait, for the pool's connection nor for SQLite's lock
_on_the_loop: ContextVar[bool] = ContextVar("on_the_loop", default=False)


class WriterBusy(Exception):
    """Work on the event loop would have to wait: this process's SQLite connection is in use
    (by a worker thread's work), or another process holds SQLite's write lock.
    ``on_the_loop`` then waits without holding up the loop, and tries again."""


# while SQLite's write lock is another process's, ``on_the_loop`` tries again this often (no
# signal says when it is free; SQLite's own busy handler sleeps up to 100 ms between tries)
WRITER_RETRY_S = 0.02


class WritersPool(QueuePool):
    """The read-write pool of a SQLite process whose writers take turns (one connection,
    ``sqlite_writer_queue``): on the event loop (``on_the_loop``) a checkout takes the idle
    connection or raises ``WriterBusy``, never waits; in a worker thread it queues as
    ``QueuePool`` does, and the loop lets a thread that waits go first (else the loop, which
    takes the connection back within microseconds, kept routes in threads waiting: a health
    check took a second beside ten labelers). ``returned`` lets the loop wait for the
    connection without blocking."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loop_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._threads_waiting = 0
        self._waiters_lock = threading.Lock()

    def _do_get(self) -> ConnectionPoolEntry:
        if _on_the_loop.get():
            if self._threads_waiting:
                raise WriterBusy("a worker thread waits for the process's SQLite connection")
            if self._overflow >= self._max_overflow:
                # every connection is made: QueuePool's own queue of idle ones, no waiting
                try:
                    return self._pool.get(False)
                except pool_queue.Empty:
                    raise WriterBusy("the process's SQLite connection is in use") from None
            return super()._do_get()
        with self._waiters_lock:
            self._threads_waiting += 1
        try:
            return super()._do_get()
        finally:
            with self._waiters_lock:
                self._threads_waiting -= 1

    def _do_return_conn(self, record: ConnectionPoolEntry) -> None:
        super()._do_return_conn(record)
        if self._loop_waiters:
            with self._waiters_lock:
                waiters, self._loop_waiters = self._loop_waiters, []
            for loop, future in waiters:
                if not loop.is_closed():
                    loop.call_soon_threadsafe(_wake, future)

    async def returned(self, timeout: float) -> None:
        """Until a connection comes back to the pool, or ``timeout`` (seconds) passed."""
        loop = asyncio.get_running_loop()
        waiter = (loop, loop.create_future())
        with self._waiters_lock:
            self._loop_waiters.append(waiter)
        try:
            with anyio.move_on_after(timeout):
                await waiter[1]
        finally:
            with self._waiters_lock:
                if waiter in self._loop_waiters:
                    self._loop_waiters.remove(waiter)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def runs_on_the_loop(engine: Engine) -> bool:
    """Whether ``on_the_loop`` runs work on the event loop with ``engine``: SQLite, its
    writers taking turns on one connection (``sqlite_writer_queue``, one web process)."""
    return isinstance(engine.pool, WritersPool)


WorkT = TypeVar("WorkT")


async def on_the_loop(work: Callable[[], WorkT]) -> WorkT:
    """Run ``work`` (sync database work of the request's) on the event loop's own thread
    when the database is this process's SQLite file with its writers taking turns, else in
    the thread pool.

    SQLite runs in the process: the labeling hot path's transaction (three to five
    statements) takes less time than its trips through the thread pool and the hand-overs of
    the GIL between a worker thread that holds the write lock and the event loop serving the
    other labelers (issue 14). The loop never waits there: when the connection is in use (a
    worker thread's work: another route, the periodic jobs) or another process holds SQLite's
    write lock, the first statement raises ``WriterBusy``; the request then waits, without
    holding up the loop, until the connection comes back (or ``WRITER_RETRY_S``), and tries
    again, for ``SQLITE_WRITER_WAIT_S`` in all as in a thread (then the pool's timeout: a
    503). So ``work`` must do nothing that matters before its first statement, and hold one
    transaction (a second one's ``WriterBusy`` would run the first again)."""
    engine = get_engine()
    if not runs_on_the_loop(engine):
        return await to_thread.run_sync(work)
    deadline: float | None = None  # from the first WriterBusy on: the usual call needs none
    while True:
        entered = _on_the_loop.set(True)
        try:
            return work()
        except WriterBusy:
            pass
        finally:
            _on_the_loop.reset(entered)
        if deadline is None:
            deadline = time.monotonic() + SQLITE_WRITER_WAIT_S
        left = deadline - time.monotonic()
        if left <= 0:
            raise PoolTimeout(
                f"SQLite's writers: no turn within {SQLITE_WRITER_WAIT_S:.0f} s", code="3o7r"
            )
        pool = engine.pool  # a new one if the engine was disposed of meanwhile
        if isinstance(pool, WritersPool):
            await pool.returned(min(left, WRITER_RETRY_S))


def make_engine(url: str, *, read_only: bool = False) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and serialised writers.

    ``hide_parameters``: a failed statement's error and log never carry its parameters (prompt
    texts, password hashes).

    ``read_only`` (SQLite): plain deferred transactions that never take the write lock, for
    long reads such as streamed exports that must not block writers.
    """
    settings = get_settings()
    pool: dict[str, Any] = {
        "pool_size": settings.db_pool_size,
        "max_overflow": settings.db_max_overflow,
        "pool_timeout": settings.db_pool_timeout_s,
    }
    if url.startswith("sqlite"):
        if settings.sqlite_writer_queue and not read_only:
            # this process's writers take turns on one connection, queued in the pool for as
            # long as SQLite's own busy timeout waits (then a 503). SQLite lets one transaction
            # write at a time anyway (each takes the write lock, below), but its busy handler
            # polls in sleeps of up to 100 ms: with ten labelers on one web process, writers
            # slept while the database was free, and the p99 of next-task was 60 times its
            # median (950 against 15 ms; 110-120 against 43-48 queued, issue 14). One
            # connection also keeps its page cache: SQLite drops a connection's whole cache when
            # another one has written since its last transaction, and with a pool of them
            # taking turns every transaction read again each page it touched (60 reads of the
            # file a labeling cycle at ten labelers, none with one connection)
            pool = {
                "poolclass": WritersPool,
                "pool_size": 1,
                "max_overflow": 0,
                "pool_timeout": SQLITE_WRITER_WAIT_S,
            }
        engine = create_engine(
            url,
            # sqlite3's timeout is SQLite's busy timeout (sqlite3_busy_timeout)
            connect_args={"check_same_thread": False, "timeout": SQLITE_WRITER_WAIT_S},
            hide_parameters=True,
            **pool,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # let SQLAlchemy issue BEGIN itself so BEGIN IMMEDIATE below takes effect
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.close()

        # read-only: plain deferred transactions. Otherwise one writer at a time: every
        # read-write transaction takes the write lock up front, which is what makes the task
        # queue and the per-user cap correct on SQLite (a deferred transaction that reads then
        # writes can fail with SQLITE_BUSY instead)
        begin = "BEGIN" if read_only else "BEGIN IMMEDIATE"
        busy_timeout_ms = int(SQLITE_WRITER_WAIT_S * 1000)  # as sqlite3's timeout sets it

        # the dialect's own BEGIN, not SQLAlchemy's documented "begin" event listener: any
        # listener of the engine's events makes every statement run the engine's statement
        # events too, each an empty list walked (with the BEGIN run as a statement: 6.8% of a
        # labeling cycle's instructions, issue 14)
        def do_begin(connection: PoolProxiedConnection) -> None:
            with closing(connection.cursor()) as cursor:
                if read_only or not _on_the_loop.get():
                    cursor.execute(begin)
                    return
                # on the event loop: the write lock now or never (another process holds it)
                cursor.execute("PRAGMA busy_timeout=0")
                try:
                    cursor.execute(begin)
                except sqlite3.OperationalError as exc:
                    if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:  # or its variants
                        raise
                    raise WriterBusy("another process holds SQLite's write lock") from exc
                finally:
                    cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")

        engine.dialect.do_begin = do_begin  # type: ignore[method-assign,assignment]
        return engine
    connect_args: dict[str, object] = {}
    if settings.db_pgbouncer:
        # PgBouncer in transaction mode hands each transaction any server connection: a
        # statement prepared on one is unknown on the next, so psycopg must never prepare
        connect_args["prepare_threshold"] = None
    engine = create_engine(url, connect_args=connect_args, **pool, hide_parameters=True)
    _ping_when_idle(engine)
    return engine


# a pooled connection is pinged on checkout only when it sat idle longer than this: one used a
# moment ago is alive, and SQLAlchemy's pool_pre_ping (a round trip on every checkout, two per
# submission) was a measurable part of the labeling hot path (issue 14)
PING_AFTER_IDLE_S = 5.0


def _ping_when_idle(engine: Engine) -> None:
    """Pessimistic disconnect handling as SQLAlchemy documents it (a "checkout" listener that
    raises ``DisconnectionError``, so the pool replaces the connection and tries again), for
    connections idle past ``PING_AFTER_IDLE_S``. A server that went away within that window is
    met by the request itself: its error invalidates the pool (every older connection is
    replaced) and ``is_saturation`` makes it a 503 with Retry-After."""

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop("idle_since", None)
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_S:
            return  # just connected, or used a moment ago
        try:
            engine.dialect.do_ping(dbapi_conn)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise DisconnectionError("the pooled connection is gone") from exc


def is_saturation(exc: BaseException) -> bool:
    """The database cannot take this request now (retry later), not a bug: no free
    connection in the pool in time, PostgreSQL out of connections, SQLite's lock held too
    long, or the connection was lost under the request (a server restart: the pool has
    replaced its connections by the retry)."""
    if isinstance(exc, PoolTimeout):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, OperationalError):
        if getattr(exc.orig, "sqlstate", None) in {"53300", "57P03"}:
            return True  # too_many_connections, cannot_connect_now
        message = str(exc.orig)
        return any(
            text in message
            for text in (
                "too many clients",
                "too many connections",
                "remaining connection slots",
                "no more connections allowed",  # PgBouncer's max_client_conn
                "database is locked",
            )
        )
    return False


@lru_cache
def get_engine() -> Engine:
    settings = get_settings()
    if settings.sqlalchemy_url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    return make_engine(settings.sqlalchemy_url)


@lru_cache
def get_sessionmaker() -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(), expire_on_commit=False)


@lru_cache
def get_readonly_sessionmaker() -> sessionmaker[Session]:
    """Sessions for long read-only work; on SQLite they do not hold the write lock."""
    settings = get_settings()
    if not settings.sqlalchemy_url.startswith("sqlite"):
        return get_sessionmaker()
    return sessionmaker(bind=make_engine(settings.sqlalchemy_url, read_only=True))


# the request's session when a middleware opened it before the route's dependencies ran (the
# authentication of a request with a body, app.middleware.AuthenticateBeforeBody): the route
# works in it too, so the request costs one session and one pooled connection, not two
request_session: ContextVar[Session | None] = ContextVar("request_session", default=None)
# request scope key: a route sets it (True) when its response needs no database connection once
# it has started (a file sent from disk, the route's session closed before it returned); the
# request's place at the database gate (app.middleware.DatabaseBusy) is then given up as the
# response starts, so a client that downloads slowly holds no place that labelers need
NO_DATABASE_AFTER_START = "prefloop.no_database_after_start"


async def get_session() -> AsyncGenerator[Session, None]:
    """FastAPI dependency: one session per request, rolled back on error.

    Async so that opening and closing cost no trip through the thread pool (two per request):
    making a session does no I/O, nor does closing one whose transaction ended (the route
    committed); only a rollback or the close of an open transaction runs in a thread."""
    session = request_session.get() or get_sessionmaker()()
    try:
        yield session
    except Exception:
        await to_thread.run_sync(session.rollback)
        raise
    finally:
        await close_session(session)


async def close_session(session: Session) -> None:
    """Close ``session`` from the event loop: in a thread only when a transaction is open (its
    rollback is I/O). Closing twice is harmless."""
    if session.in_transaction():
        await to_thread.run_sync(session.close)
    else:
        session.close()


def get_readonly_session() -> Iterator[Session]:
    """FastAPI dependency for reads that take a while (statistics pages): on SQLite it does
    not hold the write lock, so labelers' submissions do not wait behind it."""
    session = get_readonly_sessionmaker()()
    try:
        yield session
    finally:
        session.close()


ModelT = TypeVar("ModelT", bound=Base)


@lru_cache(maxsize=16)
def _attribute_keys(model: type[Base]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The names of ``model``'s column attributes, and of those of its primary key."""
    mapper: Mapper[Any] = inspect(model)
    primary = tuple(mapper.get_property_by_column(column).key for column in mapper.primary_key)
    return tuple(prop.key for prop in mapper.column_attrs), primary


def mapped_columns(model: type[Base]) -> list[ColumnElement[Any]]:
    """Every column ``model`` maps, labelled with its attribute's name: a Core statement's
    columns from which ``attached`` makes the object."""
    mapper: Mapper[Any] = inspect(model)
    return [prop.columns[0].label(prop.key) for prop in mapper.column_attrs]


def column_values(model: type[Base], values: Mapping[Any, Any]) -> dict[str, Any]:
    """The values of ``model``'s column attributes in ``values`` (a row's mapping read with
    ``mapped_columns(model)``), as a plain dict: for ``attached`` in a later session."""
    keys, _ = _attribute_keys(model)
    return {key: values[key] for key in keys}


def attached(session: Session, model: type[ModelT], values: Mapping[Any, Any]) -> ModelT:
    """The ``model`` object whose columns a Core statement read (``values``: a row's mapping
    with at least ``mapped_columns(model)``), in ``session`` as if an ORM query had loaded
    it; the session's own object when it has one already (as a query returns it). For a
    statement on every request: through Core and this, it costs less CPU than the ORM's
    query (issue 14)."""
    keys, primary = _attribute_keys(model)
    mapper: Mapper[Any] = inspect(model)
    identity = mapper.identity_key_from_primary_key(tuple(values[key] for key in primary))
    existing = session.identity_map.get(identity)
    if existing is not None:
        return cast(ModelT, existing)
    instance = cast(ModelT, mapper.class_manager.new_instance())
    instance.__dict__.update({key: values[key] for key in keys})
    make_transient_to_detached(instance)  # loaded state, no history
    session.add(instance)
    return instance


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"
