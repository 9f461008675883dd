"""The edge: request size limit and authentication before any body is read, security headers
and a Content-Security-Policy without inline script, the API docs' exposure, images in the
instructions, SQL parameters kept out of errors."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastapi.testclient import TestClient

from app.middleware import SMALL_BODY_BYTES
from tests.conftest import login

ROOT = Path(__file__).resolve().parents[2]


def call_asgi(
    app: Any, method: str, path: str, headers: dict[str, str], chunks: list[bytes]
) -> tuple[int, int, bytes]:
    """Call the app directly: (status, how many times it read the body, response body)."""
    reads = 0
    pending = list(chunks)

    async def receive() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        if pending:
            chunk = pending.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(pending)}
        return {"type": "http.disconnect"}

    messages: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("203.0.113.5", 50000),
        "server": ("testserver", 80),
    }
    anyio.run(app, scope, receive, send)
    start = next(m for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return start["status"], reads, body


def test_a_declared_oversized_body_is_refused_before_it_is_read(client) -> None:
    # before: a 200 MiB body without a token was buffered (600 MiB of memory) before the 401
    headers = {"content-type": "application/json", "content-length": str(200 * 1024 * 1024)}
    status, reads, body = call_asgi(client.app, "POST", "/api/v1/prompts", headers, [b"{"])
    assert status == 413 and reads == 0
    assert b"PREFLOOP_MAX_REQUEST_BYTES" in body


def test_a_streamed_oversized_body_is_cut_off(app_env, monkeypatch, make_user, make_token) -> None:
    from app.config import get_settings
    from app.main import create_app

    monkeypatch.setenv("PREFLOOP_MAX_REQUEST_BYTES", "4096")
    get_settings.cache_clear()
    token = make_token(make_user("researcher"))
    app = create_app()
    headers = {
        "content-type": "application/json",
        "transfer-encoding": "chunked",
        "authorization": f"Bearer {token}",
    }
    status, reads, _ = call_asgi(app, "POST", "/api/v1/prompts", headers, [b" " * 1024] * 64)
    assert status == 413 and reads <= 6


def test_bodies_past_the_bulk_routes_are_limited_to_max_body_bytes(api_as) -> None:
    # before: a labeler's submission of 28 MB of tiny JSON values ([[1],[1],...]) held the web
    # process 11 s parsing it (every other request waited), then answered 403
    labeler, researcher = api_as("labeler"), api_as("researcher")
    big = b'{"ranking": [' + b",".join([b"[1]"] * 600_000) + b"]}"  # 2.4 MB
    headers = {"content-type": "application/json"}
    r = labeler.post("/api/v1/tasks/1/submission", content=big, headers=headers)
    assert r.status_code == 413 and "PREFLOOP_MAX_BODY_BYTES" in r.json()["detail"], r.text
    # chunked (no length declared): counted as it arrives and cut off at the limit
    token = labeler.headers["Authorization"]
    chunked = dict(headers, authorization=token, **{"transfer-encoding": "chunked"})
    status, reads, text = call_asgi(
        labeler.app, "POST", "/api/v1/tasks/1/submission", chunked, [b" " * 65536] * 40
    )
    assert status == 413 and reads <= 18 and b"PREFLOOP_MAX_BODY_BYTES" in text
    # a bulk route takes bodies up to PREFLOOP_MAX_REQUEST_BYTES: this one is read (and
    # refused for its shape, not its size)
    r = researcher.post("/api/v1/prompts", content=b'{"prompts": "' + b"x" * 2_000_000 + b'"}',
                        headers=headers)  # fmt: skip
    assert r.status_code == 422, r.text


def test_json_bodies_holding_too_many_values_are_refused_before_they_are_parsed(
    api_as, monkeypatch
) -> None:
    # before: a bulk route takes 32 MiB, and 32 MiB of [[1],[1],...] sent to the ingest route
    # held the web process 3.5 s parsing it (every other request waited), then got a 422
    from app.config import get_settings

    monkeypatch.setenv("PREFLOOP_MAX_JSON_VALUES", "100000")
    get_settings.cache_clear()
    researcher = api_as("researcher")
    headers = {"content-type": "application/json"}
    flood = b'{"prompts": [' + b",".join([b"[1]"] * 60_000) + b"]}"  # 120,002 values
    for media_type in ("application/json", "application/vnd.api+json", None):
        sent = {"content-type": media_type} if media_type else {}
        r = researcher.post("/api/v1/prompts", content=flood, headers=sent)
        assert r.status_code == 413, (media_type, r.text)
        assert r.json() == {
            "detail": "the request body holds more than 100000 JSON values "
            "(PREFLOOP_MAX_JSON_VALUES); send them in smaller requests",
            "field": "body",
        }
    # chunked (no length declared): counted once it has arrived, still before any parse
    chunked = dict(headers, authorization=researcher.headers["Authorization"],
                   **{"transfer-encoding": "chunked"})  # fmt: skip
    pieces = [flood[i : i + 65536] for i in range(0, len(flood), 65536)]
    status, _, text = call_asgi(researcher.app, "POST", "/api/v1/prompts", chunked, pieces)
    assert status == 413 and b"PREFLOOP_MAX_JSON_VALUES" in text
    # as large a body whose strings are full of JSON's punctuation holds few values: stored
    prompts = [{"text": f"{i}: " + "[1], {2}, " * 120, "user_id": f"u{i}"} for i in range(1000)]
    r = researcher.post("/api/v1/prompts", json={"prompts": prompts})
    assert r.status_code == 200, r.text
    assert [x["status"] for x in r.json()["results"]] == ["accepted"] * 1000


def test_strangers_are_refused_before_their_body_is_read(client) -> None:
    # POST /api/v1/completions takes a Pydantic body, which FastAPI reads and parses before
    # it runs the route's dependencies. before: the body was read, then 401
    body = b'{"completions": []}'
    headers = {"content-type": "application/json", "content-length": str(len(body))}
    for path in ("/api/v1/completions", "/api/v1/prompts", "/labeler/prompts/new"):
        status, reads, _ = call_asgi(client.app, "POST", path, headers, [body])
        assert reads == 0, path
        assert status == (401 if path.startswith("/api/") else 303), path
    # with credentials, even forged ones, a small body (at most 64 KiB) is received before
    # the lookup (so that no transaction waits on it, see test_slow_clients.py), never parsed;
    # a larger one is refused unread
    bad_token = dict(headers, authorization="Bearer pfl_forged")
    status, reads, text = call_asgi(client.app, "POST", "/api/v1/completions", bad_token, [body])
    assert (status, reads) == (401, 1) and b"invalid or revoked token" in text
    large = dict(bad_token, **{"content-length": str(SMALL_BODY_BYTES + 1)})
    chunks = [b" " * SMALL_BODY_BYTES, b" "]
    status, reads, text = call_asgi(client.app, "POST", "/api/v1/completions", large, chunks)
    assert (status, reads) == (401, 0) and b"invalid or revoked token" in text


def test_signed_in_clients_still_send_bodies(api_as) -> None:
    researcher = api_as("researcher")
    r = researcher.post("/api/v1/prompts", json={"prompts": [{"text": "Hi", "user_id": "u1"}]})
    assert r.status_code == 200 and r.json()["results"][0]["status"] == "accepted"


@pytest.mark.parametrize("path", ["/login", "/healthz", "/api/v1/me", "/no/such/page"])
def test_every_response_carries_the_security_headers(client, path) -> None:
    r = client.get(path)
    csp = r.headers["content-security-policy"]
    directives = dict(part.strip().split(" ", 1) for part in csp.split(";"))
    assert directives["script-src"] == "'self'"  # no inline script, no eval
    assert directives["frame-ancestors"] == "'none'"
    assert directives["img-src"] == "'self' data:"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "same-origin"


def test_no_template_or_static_page_has_inline_script() -> None:
    """The CSP refuses inline script, so none may exist: <script> without src, on* handlers,
    javascript: URLs."""
    offenders = []
    for path in list((ROOT / "templates").rglob("*.html")):
        html = path.read_text()
        for tag in re.findall(r"<script\b[^>]*>", html, flags=re.I):
            if "src=" not in tag:
                offenders.append(f"{path.name}: {tag}")
        offenders += [f"{path.name}: {m}" for m in re.findall(r"\son[a-z]+\s*=", html, re.I)]
        offenders += [f"{path.name}: javascript:" for _ in re.findall("javascript:", html, re.I)]
    assert not offenders


def test_api_docs_need_a_login_unless_made_public(client, make_user, monkeypatch) -> None:
    from app.config import get_settings

    # before: public, although the README said anonymous users reach only /login and /healthz
    assert client.get("/docs", follow_redirects=False).status_code == 303
    r = client.get("/openapi.json", headers={"Accept": "application/json"})
    assert r.status_code == 401
    assert client.get("/redoc").status_code == 404
    login(client, make_user("labeler"))
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/static/js/api_docs.js" in docs.text
    assert "<script>" not in docs.text and "cdn" not in docs.text.lower()
    assert client.get("/openapi.json").json()["info"]["title"] == "prefloop"
    monkeypatch.setenv("PREFLOOP_PUBLIC_API_DOCS", "true")
    get_settings.cache_clear()
    anonymous = TestClient(client.app)
    assert anonymous.get("/openapi.json").status_code == 200
    assert anonymous.get("/docs").status_code == 200
    for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', docs.text):
        assert anonymous.get(asset).status_code == 200, asset


def test_instructions_never_load_images_from_other_origins() -> None:
    from app.services.instructions import render_markdown

    html = render_markdown(
        "![pixel](https://tracker.example/p.gif?who=me) ![p2](//tracker.example/p.gif) "
        "![ok](/static/diagram.png)"
    )
    assert "tracker.example" not in html
    assert 'src="/static/diagram.png"' in html


def test_sql_errors_do_not_carry_their_parameters(session) -> None:
    from sqlalchemy import text
    from sqlalchemy.exc import StatementError

    secret = "customer e-mail jane@example.com"
    with pytest.raises(StatementError) as caught:
        session.execute(text("SELECT * FROM no_such_table WHERE x = :x"), {"x": secret})
    session.rollback()
    assert secret not in str(caught.value)
    assert "hidden" in str(caught.value)


def test_a_security_header_the_response_set_itself_is_kept() -> None:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from app.middleware import SecurityHeaders

    def framed(request: object) -> PlainTextResponse:
        return PlainTextResponse("ok", headers={"X-Frame-Options": "SAMEORIGIN"})

    app = SecurityHeaders(Starlette(routes=[Route("/", framed)]))
    r = TestClient(app).get("/")
    assert r.headers.get_list("x-frame-options") == ["SAMEORIGIN"]
    assert r.headers["x-content-type-options"] == "nosniff"  # the others are added
