"""What the edge answers by itself (JSON under /api/, else a short page), and a ``send`` that
remembers whether the response has started."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.datastructures import Headers
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import Message, Receive, Scope, Send


def wants_json(path: str, headers: Headers) -> bool:
    return path.startswith("/api/") or "application/json" in headers.get("accept", "")


async def answer(
    scope: Scope,
    receive: Receive,
    send: Send,
    status: int,
    body: Mapping[str, object],
    page: str,
    headers: dict[str, str],
) -> None:
    """An answer of the edge's own: ``body`` as JSON under /api/ (or when JSON is asked for),
    else ``page``, a short HTML page."""
    response: Response
    if wants_json(scope["path"], Headers(scope=scope)):
        response = JSONResponse(body, status_code=status, headers=headers)
    else:
        response = HTMLResponse(page, status_code=status, headers=headers)
    await response(scope, receive, send)


class WatchedSend:
    """``send`` that remembers whether the response has started (after which an error can no
    longer be answered with a response of its own)."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self.send(message)
