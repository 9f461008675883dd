"""The database gate is fair between clients (app.middleware.FairGate, DatabaseBusy).

Before: places were handed out in plain arrival order, so one client keeping many requests in
flight held everyone else behind them. Measured with `prefloop serve --workers 2` on
PostgreSQL: while one labeler's token kept 1,000 requests in flight, another labeler managed
3 cycles in 15 s (p50 5.3 s, worst 7.7 s; the pool's timeout, then 503s, with more); now 68
(p50 210 ms, worst 918 ms). A client's requests beyond its share now wait behind every other
client's (one place in FairGate.BEYOND_SHARE_TURN still goes to them, so none starves); with
one client only, the order is still arrival order."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator

import anyio
import pytest
from starlette.types import Message, Receive, Scope, Send

from app.middleware import DatabaseBusy, FairGate


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A gate of two places, a share of one request, a short wait for a place."""
    from app.config import get_settings

    for key, value in {
        "DB_POOL_SIZE": "2",
        "DB_MAX_OVERFLOW": "0",
        "FAIR_SHARE_REQUESTS": "1",
        "DB_POOL_TIMEOUT_S": "1",
    }.items():
        monkeypatch.setenv(f"PREFLOOP_{key}", value)
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


def run(main: Callable[[], Awaitable[None]]) -> None:
    anyio.run(main)


async def _settle() -> None:
    for _ in range(5):
        await anyio.sleep(0)


def test_a_client_beyond_its_share_waits_behind_the_others(settings) -> None:
    async def main() -> None:
        gate = FairGate(places=1, share=1)
        order: list[str] = []

        async def request(client: str, name: str, hold: anyio.Event | None = None) -> None:
            within = gate.arrive(client)
            try:
                assert await gate.take(within)
                order.append(name)
                if hold is not None:
                    await hold.wait()
                gate.release()
            finally:
                gate.leave(client)

        first = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(request, "flood", "flood 1", first)
            await _settle()
            for n in range(2, 5):  # three more of the same client: beyond its share
                tg.start_soon(request, "flood", f"flood {n}")
                await _settle()
            tg.start_soon(request, "labeler", "labeler")  # arrives last, within its share
            await _settle()
            assert order == ["flood 1"] and gate.waiting == 4
            first.set()
        assert order == ["flood 1", "labeler", "flood 2", "flood 3", "flood 4"]
        assert gate.free == 1 and gate.waiting == 0 and gate.load == {}

    run(main)


def test_a_request_beyond_its_share_still_gets_a_turn_while_others_keep_coming(settings) -> None:
    # Many labelers behind one address (or a load test on one machine): each one's first
    # request in a web process counts as the address's, so most of them are beyond its share.
    # The others' requests, within their shares, kept coming, and the first ones waited until
    # the timeout (503). Now one place in BEYOND_SHARE_TURN goes to the longest-waiting
    # request beyond its share.
    async def main() -> None:
        gate = FairGate(places=1, share=1)
        turn = FairGate.BEYOND_SHARE_TURN
        order: list[str] = []

        async def request(client: str, name: str) -> None:
            within = gate.arrive(client)
            try:
                assert await gate.take(within)
                order.append(name)
                await _settle()
                gate.release()
            finally:
                gate.leave(client)

        holder = gate.arrive("address")
        assert await gate.take(holder)
        async with anyio.create_task_group() as tg:
            tg.start_soon(request, "address", "first request of a labeler behind the address")
            await _settle()
            for n in range(2 * turn):  # other clients, one request each, all within share
                tg.start_soon(request, f"labeler {n}", f"labeler {n}")
                await _settle()
            gate.release()
            gate.leave("address")
        first = "first request of a labeler behind the address"
        assert order.index(first) == turn - 1, order
        assert len(order) == 2 * turn + 1 and gate.free == 1 and gate.load == {}

    run(main)


def test_one_client_alone_is_served_in_arrival_order(settings) -> None:
    async def main() -> None:
        gate = FairGate(places=1, share=1)
        order: list[int] = []
        holder = gate.arrive("only")
        assert await gate.take(holder)

        async def request(n: int) -> None:
            assert await gate.take(gate.arrive("only"))
            order.append(n)
            gate.release()
            gate.leave("only")

        async with anyio.create_task_group() as tg:
            for n in range(5):
                tg.start_soon(request, n)
                await _settle()
            gate.release()
            gate.leave("only")
        assert order == [0, 1, 2, 3, 4] and gate.load == {}

    run(main)


def test_no_place_is_lost_to_a_timeout_or_a_cancelled_wait(settings) -> None:
    async def main() -> None:
        gate = FairGate(places=1, share=8)
        assert await gate.take(True)
        # a wait that times out (db_pool_timeout_s: 1 s) answers False and leaves no trace
        assert not await gate.take(True)
        assert gate.waiting == 0
        # a wait that is cancelled (the client went away) leaves no trace either
        with anyio.move_on_after(0.05):
            await gate.take(True)
        assert gate.waiting == 0
        gate.release()  # nobody waits: the place is free again
        assert gate.free == 1
        assert await gate.take(True)
        # cancelled just as its turn came (the task cancelled after the place was handed to it,
        # before it ran): the place goes on to the next waiter
        doomed = asyncio.create_task(gate.take(True))
        await _settle()
        results: list[bool] = []

        async def next_waiter() -> None:
            results.append(await gate.take(True))

        async with anyio.create_task_group() as tg:
            tg.start_soon(next_waiter)
            await _settle()
            gate.release()  # to the first waiter ...
            doomed.cancel()  # ... which is cancelled before it runs
            with pytest.raises(asyncio.CancelledError):
                await doomed
        assert results == [True] and gate.free == 0 and gate.waiting == 0
        gate.release()
        assert gate.free == 1

    run(main)


def test_a_place_given_back_while_a_wait_ends_is_not_left_idle(settings) -> None:
    """A wait that has just ended (here cancelled: its client went away) but whose task has not
    run yet no longer counts as waiting: a place given back in that moment is free for the
    next request at once. Before, the ended wait still counted, so the next request queued
    behind a free place until its own timeout (a 503), and the place stayed idle while
    requests waited."""

    async def main() -> None:
        gate = FairGate(places=1, share=8)
        assert await gate.take(True)
        ending = asyncio.create_task(gate.take(True))
        await _settle()
        assert gate.waiting == 1
        ending.cancel()  # its task runs later; the place comes back first
        gate.release()
        with anyio.fail_after(0.5):  # the gate's own timeout is 1 s
            assert await gate.take(True)
        with pytest.raises(asyncio.CancelledError):
            await ending
        assert gate.free == 0 and gate.waiting == 0

    run(main)


def test_the_middleware_tells_clients_apart_by_credentials_that_worked(settings) -> None:
    # DatabaseBusy over an app whose requests hold their place until released. A token seen
    # to work fills the gate and queues more; a request with another working credential (a
    # token, a browser's cookies) is next in, before the token's queued ones. Credentials not
    # seen to work (invented ones) count as their address's: a flood that invents a new token
    # for every request is one client, and a request from another address overtakes it.
    from app.clients import credential_worked

    async def main() -> None:
        names = ("t1", "t2", "t3", "t4", "cookie", "other", "f1", "f2", "f3", "f4", "elsewhere")
        release = {name: anyio.Event() for name in names}
        served: list[str] = []

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            name = scope["path"].strip("/")
            served.append(name)
            await release[name].wait()
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        busy = DatabaseBusy(app)
        statuses: dict[str, int] = {}

        def scope_of(name: str, headers: list[tuple[bytes, bytes]], address: str) -> Scope:
            return {"type": "http", "method": "GET", "path": f"/{name}", "headers": headers,
                    "client": (address, 5000)}  # fmt: skip

        async def call(scope: Scope) -> None:
            async def receive() -> Message:
                return {"type": "http.request", "body": b"", "more_body": False}

            async def send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    statuses[scope["path"].strip("/")] = message["status"]

            await busy(scope, receive, send)

        token = [(b"authorization", b"Bearer pfl_flood")]
        cookie = [(b"cookie", b"prefloop_session=abc")]
        other = [(b"authorization", b"Bearer pfl_other")]
        for headers in (token, cookie, other):
            credential_worked(scope_of("-", headers, "10.0.0.1"))
        async with anyio.create_task_group() as tg:
            for name in ("t1", "t2", "t3", "t4"):
                tg.start_soon(call, scope_of(name, token, "10.0.0.1"))
                await _settle()
            tg.start_soon(call, scope_of("cookie", cookie, "10.0.0.2"))
            await _settle()
            tg.start_soon(call, scope_of("other", other, "10.0.0.3"))
            await _settle()
            for n in range(1, 5):  # invented tokens, one address
                invented = [(b"authorization", f"Bearer pfl_invented{n}".encode())]
                tg.start_soon(call, scope_of(f"f{n}", invented, "10.0.0.9"))
                await _settle()
            tg.start_soon(call, scope_of("elsewhere", [], "10.0.0.4"))  # no credential
            await _settle()
            assert served == ["t1", "t2"]
            for name in ("t1", "t2", "cookie", "other", "f1", "elsewhere", "t3", "t4", "f2"):
                release[name].set()
                await _settle()
            release["f3"].set()
            release["f4"].set()
        assert served == [
            "t1", "t2", "cookie", "other", "f1", "elsewhere", "t3", "t4", "f2", "f3", "f4"
        ]  # fmt: skip
        assert set(statuses.values()) == {204}

    run(main)


def test_a_browser_session_stays_one_client_as_its_cookie_is_renewed() -> None:
    # Starlette signs the session cookie anew (timestamp, signature) on every response: the
    # session's data is the credential, so a browser does not become a stranger each second
    from app.clients import client_of, credential_worked

    def scope(cookie: bytes) -> Scope:
        return {"type": "http", "headers": [(b"cookie", cookie)], "client": ("10.1.1.1", 1)}

    first = scope(b"theme=dark; prefloop_session=eyJzaWQiOiAidGVzdC1yZW5ldyJ9.Z1x.sig1")
    renewed = scope(b"prefloop_session=eyJzaWQiOiAidGVzdC1yZW5ldyJ9.Z1y.sig2; theme=dark")
    assert client_of(first) == client_of(renewed) == "address 10.1.1.1"  # not yet worked
    credential_worked(first)
    assert client_of(renewed) == client_of(first) != "address 10.1.1.1"
    # another session, or no session cookie at all, is not that client
    other = scope(b"prefloop_session=eyJzaWQiOiAib3RoZXIifQ.Z1x.sig3")
    assert client_of(other) == "address 10.1.1.1"
    assert client_of(scope(b"theme=dark")) == "address 10.1.1.1"
