"""Slow clients stall nobody else. One that sends its request body slowly holds no place at
the database gate and no connection: everyone else is served meanwhile, and the slow request
gets 408 once ``PREFLOOP_BODY_TIMEOUT_S`` has passed. One that stops reading its response is
cut off after ``PREFLOOP_SEND_TIMEOUT_S``, and exports streamed at once are bounded
(``PREFLOOP_EXPORT_STREAMS``), so slow downloads never hold every place.

Before: a signed-in labeler with as many connections as the gate has places, each sending a
submission's body a byte at a time, made every other request (even /healthz) wait the pool's
timeout and answer 503; on PostgreSQL each also kept a transaction open. A real server
(uvicorn in a thread) and raw sockets, since a test client sends its body at once.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.middleware import SMALL_BODY_BYTES
from tests.conftest import configure_env
from tests.live_server import serving

GATE = 2  # places at the gate: db_pool_size 2, no overflow
BODY_TIMEOUT_S = 2.0


@pytest.fixture
def server(app_env: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """The app under uvicorn on a free port, with a small gate and a short body timeout."""
    from app.main import create_app

    configure_env(monkeypatch, data_dir, app_env, db_pool_size=str(GATE), db_max_overflow="0",
                  db_pool_timeout_s="1", body_timeout_s=str(BODY_TIMEOUT_S),
                  export_streams="1")  # fmt: skip
    with serving(create_app()) as port:
        yield port


def _request(port: int, method: str, path: str, token: str, body: bytes | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    started = time.monotonic()
    conn.request(method, path, body, headers)
    response = conn.getresponse()
    payload = response.read()
    conn.close()
    return response.status, time.monotonic() - started, payload


def _start_slow_body(port: int, token: str, form: str) -> socket.socket:
    """A submission whose body stops after its first byte: declared small, declared large,
    or chunked."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = (
        f"POST /api/v1/tasks/1/submission HTTP/1.1\r\nHost: test\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
    )
    if form == "chunked":
        sock.sendall((head + "Transfer-Encoding: chunked\r\n\r\n1\r\n{\r\n").encode())
    else:
        size = 600 if form == "small" else SMALL_BODY_BYTES + 600
        sock.sendall((head + f"Content-Length: {size}\r\n\r\n{{").encode())
    return sock


def _answer_of(sock: socket.socket) -> bytes:
    received = b""
    while b"\r\n\r\n" not in received or not received.rstrip().endswith(b"}"):
        piece = sock.recv(4096)
        if not piece:
            break
        received += piece
    return received


@pytest.mark.parametrize("form", ["small", "large", "chunked"])
def test_slow_bodies_hold_no_place_and_end_in_408(server, make_user, make_token, form) -> None:
    slow_token = make_token(make_user("labeler"))
    other = make_token(make_user("labeler"))
    slow = [_start_slow_body(server, slow_token, form) for _ in range(GATE + 2)]
    try:
        time.sleep(0.5)  # the slow requests are in, waiting on their bodies
        # before: 503 after the pool's timeout (1 s here), every place held by a slow body
        status, seconds, _ = _request(server, "GET", "/api/v1/tasks/next", other)
        assert status == 204, (status, seconds)
        status, _, _ = _request(server, "GET", "/healthz", other)
        assert status == 200
        for sock in slow:
            answer = _answer_of(sock)
            assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
            assert b"connection: close" in answer.lower()
            detail = json.loads(answer.split(b"\r\n\r\n", 1)[1])
            assert detail["field"] == "body" and "PREFLOOP_BODY_TIMEOUT_S" in detail["detail"]
    finally:
        for sock in slow:
            sock.close()
    # the places came back: the gate serves as many at once as before
    assert _request(server, "GET", "/api/v1/tasks/next", other)[0] == 204


def test_a_large_body_with_a_pause_is_stored_whole(server, make_user, make_token) -> None:
    # spooled while its place is given up, then replayed to the route: nothing lost
    token = make_token(make_user("researcher"))
    prompts = [
        {"text": f"Explain tides to a child, version {n}. " + "Waves. " * 40, "user_id": f"u{n}"}
        for n in range(200)
    ]
    body = json.dumps({"prompts": prompts}).encode()
    assert len(body) > SMALL_BODY_BYTES
    sock = socket.create_connection(("127.0.0.1", server), timeout=30)
    try:
        sock.sendall(
            (
                f"POST /api/v1/prompts HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body[: len(body) // 2]
        )
        time.sleep(BODY_TIMEOUT_S / 2)  # a pause shorter than the timeout
        sock.sendall(body[len(body) // 2 :])
        answer = _answer_of(sock)
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    results = json.loads(answer.split(b"\r\n\r\n", 1)[1])["results"]
    assert len(results) == 200 and {r["status"] for r in results} == {"accepted"}


def test_a_public_form_comes_whole_or_not_at_all(server) -> None:
    # anyone may post the login form: a body that could trickle in is refused unread
    sock = socket.create_connection(("127.0.0.1", server), timeout=30)
    try:
        sock.sendall(
            b"POST /login HTTP/1.1\r\nHost: test\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n1\r\nu\r\n"
        )
        answer = _answer_of(sock)
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_a_client_that_stops_reading_is_cut_off_and_frees_its_place(
    app_env, data_dir, monkeypatch
) -> None:
    # the ASGI app called directly: the first client takes nothing of its response (its send
    # never returns), as one that stopped reading a download. Before: it held the only place
    # for good, and the second request answered 503 after the pool's timeout
    import anyio

    from app.main import create_app

    configure_env(monkeypatch, data_dir, app_env, db_pool_size="1", db_max_overflow="0",
                  db_pool_timeout_s="5", send_timeout_s="1")  # fmt: skip
    app = create_app()
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": "/healthz", "raw_path": b"/healthz", "root_path": "",
        "query_string": b"", "headers": [], "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }  # fmt: skip
    statuses: dict[str, int] = {}

    async def receive() -> dict:
        await anyio.sleep_forever()
        return {}

    def client(name: str, reads: bool):
        async def send(message: dict) -> None:
            if message["type"] == "http.response.start":
                statuses[name] = message["status"]
            elif not reads:
                await anyio.sleep_forever()

        return send

    async def main() -> None:
        with anyio.fail_after(15):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(app, dict(scope), receive, client("stalled", reads=False))
                await anyio.sleep(0.2)  # the stalled one holds the place
                await app(dict(scope), receive, client("waiting", reads=True))

    anyio.run(main)
    assert statuses == {"stalled": 200, "waiting": 200}


def test_exports_streamed_at_once_are_bounded(server, make_user, make_token, monkeypatch) -> None:
    # the first export's client reads slowly (its stream waits on an event); the second is
    # refused with 503 and Retry-After instead of taking a place the labelers need
    from app.services.export_formats import encode
    from tests.labeling_support import make_prompt

    released = threading.Event()

    def slow_encode(*args, **kwargs):
        for n, piece in enumerate(encode(*args, **kwargs)):
            yield piece
            if n == 0:
                released.wait(20)

    monkeypatch.setattr("app.api.export.encode", slow_encode)
    monkeypatch.setattr("app.services.export_formats.CHUNK_BYTES", 1)  # a record a piece
    for n in range(3):
        make_prompt(f"Name a river, number {n}.", split="test")  # test split: no tasks
    researcher = make_token(make_user("researcher"))
    labeler = make_token(make_user("labeler"))
    first = socket.create_connection(("127.0.0.1", server), timeout=30)
    try:
        first.sendall(
            f"GET /api/v1/export/prompts HTTP/1.1\r\nHost: test\r\n"
            f"Authorization: Bearer {researcher}\r\n\r\n".encode()
        )
        assert first.recv(4096).startswith(b"HTTP/1.1 200")  # streaming, held open
        status, _, payload = _request(server, "GET", "/api/v1/export/prompts", researcher)
        assert status == 503 and b"PREFLOOP_EXPORT_STREAMS" in payload
        assert _request(server, "GET", "/api/v1/tasks/next", labeler)[0] == 204
    finally:
        released.set()
        first.close()
    deadline = time.monotonic() + 10
    while _request(server, "GET", "/api/v1/export/prompts", researcher)[0] != 200:
        assert time.monotonic() < deadline, "the first export's place never came back"
        time.sleep(0.1)


def test_a_slow_snapshot_download_holds_no_place(server, make_user, make_token, tmp_path) -> None:
    # before: a snapshot download held its place at the gate for as long as its client took to
    # read the file; as many clients as places, reading nothing, made every other request wait
    # the pool's timeout and answer 503. The file needs no connection: the place is given up
    # as it starts
    from app.db import get_sessionmaker
    from app.models import Snapshot

    path = tmp_path / "snapshot.jsonl"
    path.write_bytes(b'{"n": 1}\n' * 4_000_000)  # 36 MB: far more than the sockets buffer
    with get_sessionmaker()() as s:
        snapshot = Snapshot(dataset="prompts", format="ndjson", filters={}, row_count=4_000_000,
                            sha256="0" * 64, path=str(path))  # fmt: skip
        s.add(snapshot)
        s.commit()
        snapshot_id = snapshot.id
    researcher = make_token(make_user("researcher"))
    labeler = make_token(make_user("labeler"))
    readers = []
    try:
        for _ in range(GATE):
            sock = socket.create_connection(("127.0.0.1", server), timeout=30)
            sock.sendall(
                f"GET /api/v1/export/snapshots/{snapshot_id}/download HTTP/1.1\r\nHost: test\r\n"
                f"Authorization: Bearer {researcher}\r\n\r\n".encode()
            )
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")  # started; nothing more is read
            readers.append(sock)
        assert _request(server, "GET", "/api/v1/tasks/next", labeler)[0] == 204
        # a download read to its end is the file, byte for byte
        status, _, payload = _request(
            server, "GET", f"/api/v1/export/snapshots/{snapshot_id}/download", researcher
        )
        assert status == 200 and payload == path.read_bytes()
    finally:
        for sock in readers:
            sock.close()
