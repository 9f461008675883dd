"""uvicorn's HTTP protocol (httptools), with a deadline and a size limit for a request's
headers.

uvicorn bounds an idle keep-alive connection (``timeout_keep_alive``), but not a connection
that has not finished sending a request's headers: one that connects and sends nothing, or a
header line every few seconds (a "slowloris"), was held open for as long as its client liked.
Enough of them exhaust the server's file descriptors (about 20,000 here), and then nobody
connects; a reverse proxy in front would bound them too, but the server should not depend on
one. Here the headers of a request must have arrived in full within
``PREFLOOP_HEADER_TIMEOUT_S`` of the connection being made, or of its first byte on a
connection kept alive; otherwise the client gets 408 and the connection is closed.

Nor did uvicorn bound their size with httptools: one connection sent 400 MB of header lines in
0.4 s, and the web process held all of it (its memory grew by 400 MB). Here a request line
and headers of more than ``PREFLOOP_MAX_HEADER_BYTES`` get 431 and the connection is closed;
a connection holds at most that much, and one read, of unfinished headers.

The timer is armed only when a read ends with a request's headers unfinished (and on a new
connection): the usual request, whose headers come in one read, costs nothing more.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.config import get_settings


def _plain_answer(status: str, text: str) -> bytes:
    body = text.encode()
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"connection: close\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode() + body


REQUEST_TIMEOUT = _plain_answer(
    "408 Request Timeout",
    "the request headers did not arrive within PREFLOOP_HEADER_TIMEOUT_S\n",
)
HEADERS_TOO_LARGE = _plain_answer(
    "431 Request Header Fields Too Large",
    "the request line and headers are larger than PREFLOOP_MAX_HEADER_BYTES\n",
)


class HeaderLimitsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` that closes a connection whose request headers are late (408) or
    too large (431)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = get_settings()
        self.header_timeout = settings.header_timeout_s
        self.max_header_bytes = settings.max_header_bytes
        self.header_timer: asyncio.TimerHandle | None = None
        self.in_headers = False
        self.header_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self.in_headers:
            return
        # a request has begun and its headers are not all here yet: all of this read is theirs
        self.header_bytes += len(data)
        if self.header_bytes > self.max_header_bytes:
            self._refuse(HEADERS_TOO_LARGE)
        elif self.header_timer is None:
            self._arm()

    def on_message_begin(self) -> None:
        self.in_headers = True
        self.header_bytes = 0
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self.in_headers = False
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self.header_timer = self.loop.call_later(self.header_timeout, self._headers_late)

    def _disarm(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def _headers_late(self) -> None:
        self.header_timer = None
        self._refuse(REQUEST_TIMEOUT)

    def _refuse(self, answer: bytes) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self.transport.write(answer)
            self.transport.close()
