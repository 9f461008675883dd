"""A request's headers must arrive within PREFLOOP_HEADER_TIMEOUT_S and be at most
PREFLOOP_MAX_HEADER_BYTES (app.http_protocol).

Before: uvicorn bounded idle keep-alive connections only; a client that connected and sent
nothing, or a header line now and then (a "slowloris"), held its connection for as long as it
liked, and enough of them leave the server no file descriptors; and one connection's 400 MB
of header lines were all held in the web process's memory. The server here runs with the
options ``prefloop serve`` gives uvicorn (``app.cli.uvicorn_options``)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from tests.live_server import serving

HEADER_TIMEOUT_S = 2.0
MAX_HEADER_BYTES = 8192


async def hello(scope, receive, send) -> None:
    if scope["type"] != "http":
        return
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]}
    )
    await send({"type": "http.response.body", "body": b"hello"})


@pytest.fixture
def port(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    from app.cli import uvicorn_options
    from app.config import get_settings

    monkeypatch.setenv("PREFLOOP_HEADER_TIMEOUT_S", str(HEADER_TIMEOUT_S))
    monkeypatch.setenv("PREFLOOP_MAX_HEADER_BYTES", str(MAX_HEADER_BYTES))
    get_settings.cache_clear()
    try:
        with serving(hello, **{**uvicorn_options(), "log_level": "warning"}) as p:
            yield p
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=30)


def _until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (30 s at most)."""
    received = b""
    while piece := sock.recv(4096):
        received += piece
    return received


def _get(sock: socket.socket) -> bytes:
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = b""
    while not answer.endswith(b"hello"):
        piece = sock.recv(4096)
        assert piece, answer
        answer += piece
    return answer


def test_a_connection_that_sends_nothing_is_closed(port) -> None:
    with _connect(port) as idle, _connect(port) as other:
        assert _get(other).startswith(b"HTTP/1.1 200")  # the server serves others meanwhile
        answer = _until_closed(idle)
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout")


def test_headers_sent_a_line_at_a_time_are_cut_off(port) -> None:
    with _connect(port) as slow:
        slow.sendall(b"GET / HTTP/1.1\r\n")
        slow.settimeout(HEADER_TIMEOUT_S / 4)
        answer = b""
        for _ in range(40):  # 10 header timeouts' worth of header lines, unless cut off
            try:
                slow.sendall(b"X-Slow: 1\r\n")
                answer += slow.recv(4096)
            except TimeoutError:
                continue
            except OSError:  # reset once closed
                break
            if not answer or answer.endswith(b"\n"):
                break
    assert answer.startswith(b"HTTP/1.1 408"), answer


def test_unhurried_clients_are_served(port) -> None:
    # headers in two pieces, a pause shorter than the timeout between
    with _connect(port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n")
        time.sleep(HEADER_TIMEOUT_S / 10)  # far from the deadline, even on a loaded machine
        sock.sendall(b"Host: x\r\n\r\n")
        answer = b""
        while not answer.endswith(b"hello"):
            answer += sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200")
        # a connection kept alive may wait longer than the header timeout between requests
        # (its idle time is bounded by the keep-alive timeout, 65 s)
        time.sleep(HEADER_TIMEOUT_S * 1.25)
        assert _get(sock).startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("where", ["header lines", "request line", "one piece"])
def test_headers_larger_than_the_limit_are_refused(port, where) -> None:
    with _connect(port) as sock:
        if where == "one piece":  # all of it in one read: counted before it is parsed
            big = b"X-Big: " + b"a" * (MAX_HEADER_BYTES + 100) + b"\r\n"
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n")
        elif where == "header lines":
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
            line = b"X-Big: " + b"a" * 1000 + b"\r\n"
            sent = 0
            try:
                while sent < 100 * MAX_HEADER_BYTES:  # until refused (before: 800 KB held)
                    sock.sendall(line)
                    sent += len(line)
            except OSError:  # reset once refused and closed
                pass
        else:
            sock.sendall(b"GET /" + b"a" * (2 * MAX_HEADER_BYTES) + b" HTTP/1.1\r\n")
        answer = _until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large"), answer[:80]
    assert b"PREFLOOP_MAX_HEADER_BYTES" in answer


def test_headers_within_the_limit_are_served(port) -> None:
    cookie = b"Cookie: c=" + b"a" * (MAX_HEADER_BYTES - 200) + b"\r\n"
    with _connect(port) as sock:
        # sent in small pieces: the count is per request, not per read
        request = b"GET / HTTP/1.1\r\nHost: x\r\n" + cookie + b"\r\n"
        for i in range(0, len(request), 512):
            sock.sendall(request[i : i + 512])
        answer = b""
        while not answer.endswith(b"hello"):
            answer += sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200")
        # and the next request on the connection counts afresh
        sock.sendall(request)
        answer = b""
        while not answer.endswith(b"hello"):
            answer += sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200")
