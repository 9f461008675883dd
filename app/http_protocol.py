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
and headers of more than ``PREFLOOP_MAX_HEADER_BYTES`` get 431 and the connection is closed,
counted as they arrive, before the parser keeps any of a read that goes past the limit.

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


# how long a refused connection's further bytes are read and dropped before it is closed
LINGER_S = 2.0


class HeaderLimitsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` that closes a connection whose request headers are late (408) or
    too large (431)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = get_settings()
        self.header_timeout = settings.header_timeout_s
        self.max_header_bytes = settings.max_header_bytes
        self.header_timer: asyncio.TimerHandle | None = None
        # between a request's first byte and the end of its headers (the deadline's span)
        self.in_headers = False
        # the next bytes belong to a request's line and headers (not to a body), and how many
        # of those have come, with the last bytes of the previous read (an end of headers may
        # be split between two reads)
        self.awaiting_headers = True
        self.header_bytes = 0
        self.tail = b""
        self.refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return  # dropped while the refusal lingers
        if self.awaiting_headers and not self._headers_fit(data):
            self._refuse(HEADERS_TOO_LARGE)  # before the parser holds any of it
            return
        super().data_received(data)
        if self.in_headers and self.header_timer is None:
            self._arm()  # a request has begun and its headers are not all here yet

    def _headers_fit(self, data: bytes) -> bool:
        """Count the part of ``data`` up to the end of the headers; whether it is within
        the limit so far."""
        end = (self.tail + data).find(b"\r\n\r\n")
        if end < 0:
            self.header_bytes += len(data)
            self.tail = data[-3:]
        else:
            self.header_bytes += end + 4 - len(self.tail)
            self.tail = b""
        return self.header_bytes <= self.max_header_bytes

    def on_message_begin(self) -> None:
        self.in_headers = True
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self.in_headers = self.awaiting_headers = False
        self.header_bytes = 0
        self.tail = b""
        self._disarm()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self.awaiting_headers = True  # what comes next is the next request's
        super().on_message_complete()

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
        """Answer and close, lingering: the answer goes out with the end of the stream, and
        what the client still sends is read and dropped for ``LINGER_S``, so that its socket
        is not reset before it reads the answer (a close with unread data sends a reset)."""
        self._disarm()
        if self.transport.is_closing() or self.refused:
            return
        self.refused = True
        self.transport.write(answer)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_S, self.transport.close)
