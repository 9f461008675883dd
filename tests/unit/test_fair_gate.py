"""The database gate is fair between clients (app.middleware.FairGate, DatabaseBusy).

Before: places were handed out in plain arrival order, so one client keeping many requests in
flight held everyone else behind them. Measured with `prefloop serve --workers 2` on
PostgreSQL: while one labeler's token kept 1,000 requests in flight, another labeler managed
3 cycles in 15 s (p50 5.3 s, worst 7.7 s; the pool's timeout, then 503s, with more); now 68
(p50 210 ms, worst 918 ms). A client's requests beyond its share now wait behind every other
client's; with one client only, the order is still arrival order."""

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

        async def request(client: bytes, name: str, hold: anyio.Event | None = None) -> None:
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
            tg.start_soon(request, b"flood", "flood 1", first)
            await _settle()
            for n in range(2, 5):  # three more of the same client: beyond its share
                tg.start_soon(request, b"flood", f"flood {n}")
                await _settle()
            tg.start_soon(request, b"labeler", "labeler")  # arrives last, within its share
            await _settle()
            assert order == ["flood 1"] and gate.waiting == 4
            first.set()
        assert order == ["flood 1", "labeler", "flood 2", "flood 3", "flood 4"]
        assert gate.free == 1 and gate.waiting == 0 and gate.load == {}

    run(main)


def test_one_client_alone_is_served_in_arrival_order(settings) -> None:
    async def main() -> None:
        gate = FairGate(places=1, share=1)
        order: list[int] = []
        holder = gate.arrive(b"only")
        assert await gate.take(holder)

        async def request(n: int) -> None:
            assert await gate.take(gate.arrive(b"only"))
            order.append(n)
            gate.release()
            gate.leave(b"only")

        async with anyio.create_task_group() as tg:
            for n in range(5):
                tg.start_soon(request, n)
                await _settle()
            gate.release()
            gate.leave(b"only")
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


def test_the_middleware_tells_clients_apart_by_their_credentials(settings) -> None:
    # DatabaseBusy over an app whose requests hold their place until released: one token
    # fills the gate and queues more; a request with another token (or a browser's cookie)
    # is next in, before the token's queued ones
    async def main() -> None:
        release = {name: anyio.Event() for name in ("t1", "t2", "t3", "t4", "cookie", "other")}
        served: list[str] = []

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            name = scope["path"].strip("/")
            served.append(name)
            await release[name].wait()
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        busy = DatabaseBusy(app)
        statuses: dict[str, int] = {}

        async def call(name: str, headers: list[tuple[bytes, bytes]]) -> None:
            scope: Scope = {"type": "http", "method": "GET", "path": f"/{name}", "headers": headers}

            async def receive() -> Message:
                return {"type": "http.request", "body": b"", "more_body": False}

            async def send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    statuses[name] = message["status"]

            await busy(scope, receive, send)

        token = [(b"authorization", b"Bearer pfl_flood")]
        async with anyio.create_task_group() as tg:
            for name in ("t1", "t2", "t3", "t4"):
                tg.start_soon(call, name, token)
                await _settle()
            tg.start_soon(call, "cookie", [(b"cookie", b"prefloop_session=abc")])
            await _settle()
            tg.start_soon(call, "other", [(b"authorization", b"Bearer pfl_other")])
            await _settle()
            assert served == ["t1", "t2"]
            for name in ("t1", "t2", "cookie", "other", "t3", "t4"):
                release[name].set()
                await _settle()
        assert served == ["t1", "t2", "cookie", "other", "t3", "t4"]
        assert set(statuses.values()) == {204}

    run(main)
