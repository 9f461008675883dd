"""uvicorn's HTTP protocol (httptools), with a deadline for a request's headers.

uvicorn bounds an idle keep-alive connection (``timeout_keep_alive``), but not a connection
that has not finished sending a request's headers: one that connects and sends nothing, or a
header line every few seconds (a "slowloris"), was held open for as long as its client liked.
Enough of them exhaust the server's file descriptors (about 20,000 here), and then nobody
connects; a reverse proxy in front would bound them too, but the server should not depend on
one. Here the headers of a request must have arrived in full within
``PREFLOOP_HEADER_TIMEOUT_S`` of the connection being made, or of its first byte on a
connection kept alive; otherwise the client gets 408 and the connection is closed.

The timer is armed only when a read ends with a request's headers unfinished (and on a new
connection): the usual request, whose headers come in one read, costs nothing more.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.config import get_settings

REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\ncontent-length: 49\r\n\r\n"
    b"the request headers did not arrive in time (408)\n"
)


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` that closes a connection whose request headers are late."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = get_settings().header_timeout_s
        self.header_timer: asyncio.TimerHandle | None = None
        self.in_headers = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.in_headers and self.header_timer is None:
            self._arm()  # a request has begun and its headers are not all here yet

    def on_message_begin(self) -> None:
        self.in_headers = True
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
        if not self.transport.is_closing():
            self.transport.write(REQUEST_TIMEOUT)
            self.transport.close()
