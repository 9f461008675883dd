"""The database gate: at most as many requests as the connection pool holds work at once in a
process, the others wait their turn, fairly between clients (``FairGate``); a saturated
database answers 503 with ``Retry-After``, never 500 (``DatabaseBusy``). A response's body
must be taken by its client within ``send_timeout_s`` (``ClientStoppedReading``)."""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import deque

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.clients import client_of
from app.config import get_settings
from app.db import NO_DATABASE_AFTER_START, is_saturation
from app.middleware.replies import WatchedSend, answer

logger = logging.getLogger(__name__)


class ClientStoppedReading(Exception):
    """A client took no part of its response for ``send_timeout_s``."""


class _TimedSend(WatchedSend):
    """``WatchedSend`` whose body messages must be taken by the client within
    ``send_timeout_s`` (a send waits only while the client does not read). The request's
    place at the gate is given up as the response starts when the route said it needs no
    database connection from then on (``NO_DATABASE_AFTER_START``)."""

    def __init__(self, send: Send, timeout: float, scope: Scope, place: Place) -> None:
        super().__init__(send)
        self.timeout = timeout
        self.scope = scope
        self.place = place

    async def __call__(self, message: Message) -> None:
        if message["type"] != "http.response.body":
            if self.scope.get(NO_DATABASE_AFTER_START):
                self.place.give_up()
            await super().__call__(message)
            return
        try:
            # asyncio's own timeout: a third of anyio's fail_after's CPU, on every response
            async with asyncio.timeout(self.timeout):
                await self.send(message)
        except TimeoutError:
            raise ClientStoppedReading() from None


def _stopped_reading(exc: BaseException) -> bool:
    """``exc`` is ``ClientStoppedReading``, alone or in a group (a streamed response's)."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_stopped_reading(e) for e in exc.exceptions)
    return isinstance(exc, ClientStoppedReading)


SATURATED = "the database is busy; retry in a moment (nothing was stored by this request)"


# scope key: the request's place at DatabaseBusy's gate (a ``Place``)
GATE_PLACE = "prefloop.gate_place"


class GateTimeout(Exception):
    """A request that gave its place up (while its body arrived) found none again in
    ``db_pool_timeout_s``: answered as a saturated database (503)."""


class _Waiter:
    """A request waiting at the gate: ``future`` is set True when its turn comes, False when
    its time runs out, or cancelled with its task. ``left``: no longer counted in
    ``FairGate.waiting``, which happens at once when its wait ends, not when its task next
    runs (a place given back in between must not stay idle behind it)."""

    __slots__ = ("future", "left")

    def __init__(self, future: asyncio.Future[bool]) -> None:
        self.future = future
        self.left = False


class FairGate:
    """The places at the database gate of one event loop, handed out in arrival order, except
    that a client with more than ``share`` requests in at once waits behind every other
    client's. Before, one signed-in client sending many requests at once held the queue and
    everyone else waited behind them: while one labeler's token kept 1,000 requests in flight,
    another labeler's cycle took 5.3 s at the median (the pool's timeout, then 503s, with
    more); 210 ms after (docs/performance.md).

    A client is a credential that has worked in this process (a bearer token, a browser's
    cookies), else an address (``app.clients``); a request counts against its client from
    arrival to its end. With one client only (a load test on one token) the order is plain
    arrival order.

    Waiting behind the others is a priority, not a ban: while requests of both kinds wait, one
    place in ``BEYOND_SHARE_TURN`` goes to the longest-waiting request beyond its share. Else
    the first requests of many labelers behind one address (an office, a load test: their
    tokens not yet seen to work in this process, so all counted as the address's) waited
    while the others' requests kept coming, until the timeout's 503."""

    BEYOND_SHARE_TURN = 5

    def __init__(self, places: int, share: int) -> None:
        self.free = places
        self.share = share
        self.load: dict[int | str, int] = {}
        self.waiting = 0  # waiters whose wait has not ended, in either queue
        self.within_share: deque[_Waiter] = deque()
        self.beyond_share: deque[_Waiter] = deque()
        # places handed within share while requests beyond share waited, since the last
        # place handed beyond share
        self.within_in_a_row = 0

    def arrive(self, client: int | str) -> bool:
        """Count a request of ``client``; whether it is within the client's share."""
        load = self.load.get(client, 0) + 1
        self.load[client] = load
        return load <= self.share

    def leave(self, client: int | str) -> None:
        load = self.load[client] - 1
        if load:
            self.load[client] = load
        else:
            del self.load[client]

    async def take(self, within_share: bool) -> bool:
        """A place: at once when one is free and nobody waits, else in turn, for up to
        ``db_pool_timeout_s`` (False when none came).

        A waiter is a bare asyncio future with a timer (``loop.call_later``): its turn sets it
        True, the timer False. anyio's ``Event`` and ``move_on_after`` cost five times as much
        per wait (a cancel scope entered and left), and at 100 labelers most requests wait
        here."""
        if self.free and not self.waiting:
            self.free -= 1
            return True
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        waiter = _Waiter(future)
        (self.within_share if within_share else self.beyond_share).append(waiter)
        self.waiting += 1
        timer = loop.call_later(get_settings().db_pool_timeout_s, self._expire, waiter)
        taken = False
        try:
            taken = await future
        finally:
            timer.cancel()
            granted = future.done() and not future.cancelled() and future.result()
            if not granted:  # timed out or cancelled: its turn never came
                if not future.done():
                    future.cancel()
                self._leave(waiter)
            elif not taken:  # cancelled just as its turn came: pass the place on
                self.release()
        return taken

    def _leave(self, waiter: _Waiter) -> None:
        if not waiter.left:
            waiter.left = True
            self.waiting -= 1

    def _expire(self, waiter: _Waiter) -> None:
        """``waiter``'s time ran out: it leaves without a place (unless its turn came first)."""
        if not waiter.future.done():
            waiter.future.set_result(False)
            self._leave(waiter)

    def release(self) -> None:
        """Give a place back: to the first waiter within its client's share, else to the first
        beyond it (first anyway when its turn has come, see ``BEYOND_SHARE_TURN``), else to
        the free ones."""
        queues = (self.within_share, self.beyond_share)
        if self.within_in_a_row >= self.BEYOND_SHARE_TURN - 1:
            queues = (self.beyond_share, self.within_share)
        for queue in queues:
            while queue:
                waiter = queue.popleft()
                if waiter.future.done():  # timed out, or cancelled before its task ran
                    self._leave(waiter)
                    continue
                waiter.future.set_result(True)
                self._leave(waiter)
                if queue is self.beyond_share:
                    self.within_in_a_row = 0
                elif self.beyond_share:
                    self.within_in_a_row += 1
                return
        self.free += 1


class Place:
    """A request's place at the gate, which it gives up while it waits on its client."""

    def __init__(self, gate: FairGate, within_share: bool) -> None:
        self.gate = gate
        self.within_share = within_share
        self.held = False

    async def take(self) -> bool:
        """Wait for a place in turn, up to ``db_pool_timeout_s``."""
        self.held = await self.gate.take(self.within_share)
        return self.held

    def give_up(self) -> None:
        if self.held:
            self.held = False
            self.gate.release()


class DatabaseBusy:
    """A saturated database (no connection in ``db_pool_timeout_s``, PostgreSQL's "too many
    clients") answers 503 with ``Retry-After``, never 500: JSON under /api/, a plain page
    otherwise. The request's transaction was rolled back, so nothing half-done is stored.

    At most as many requests as the connection pool holds (``db_pool_size`` +
    ``db_max_overflow``) run at once in this process; the others wait their turn here, first
    come first served between clients (``FairGate``), for up to ``db_pool_timeout_s`` (then
    the same 503). Without this gate the waiting happened in the pool, which is not fair: a
    newcomer takes a connection another thread has waited seconds for, and a request that
    holds a connection can wait behind them for a thread to run its route. Under 100 labelers
    the p99 was the pool's timeout."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # one gate per event loop (a server has one; the test client makes one per call)
        self._gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, FairGate] = (
            weakref.WeakKeyDictionary()
        )

    def _gate(self) -> FairGate:
        loop = asyncio.get_running_loop()
        gate = self._gates.get(loop)
        if gate is None:
            settings = get_settings()
            places = settings.db_pool_size + settings.db_max_overflow
            gate = FairGate(places, settings.fair_share_requests)
            self._gates[loop] = gate
        return gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/static/"):
            await self.app(scope, receive, send)
            return
        gate = self._gate()
        client = client_of(scope)
        place = Place(gate, gate.arrive(client))
        try:
            await self._in_turn(place, scope, receive, send)
        finally:
            gate.leave(client)

    async def _in_turn(self, place: Place, scope: Scope, receive: Receive, send: Send) -> None:
        if not await place.take():
            await self._busy(scope, receive, send)
            return
        scope[GATE_PLACE] = place
        watched = _TimedSend(send, get_settings().send_timeout_s, scope, place)
        try:
            await self.app(scope, receive, watched)
        except Exception as exc:
            if _stopped_reading(exc):
                # the response is cut short: returning unfinished makes the server close the
                # connection, and the place is free again
                logger.warning(
                    "%s %s: the client took nothing for %g s (PREFLOOP_SEND_TIMEOUT_S); "
                    "connection closed",
                    scope.get("method"),
                    scope["path"],
                    watched.timeout,
                )
                return
            if watched.started or not (isinstance(exc, GateTimeout) or is_saturation(exc)):
                raise
            await self._busy(scope, receive, send)
        finally:
            place.give_up()

    async def _busy(self, scope: Scope, receive: Receive, send: Send) -> None:
        page = (
            "<!doctype html><title>Busy</title><p>The server is busy. Please retry in"
            " a moment; nothing was saved by this request.</p>"
        )
        headers = {"Retry-After": str(get_settings().db_retry_after_s)}
        await answer(scope, receive, send, 503, {"detail": SATURATED}, page, headers)
