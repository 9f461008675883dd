"""Who a request comes from, for sharing the database gate fairly (``app.middleware.FairGate``).

A client is a credential that has worked: the bearer token, or the browser's session cookie,
of a request that was authenticated in this process before. Anything else (no credential, or one
not yet seen to work, invented ones included) counts as its address's: otherwise a flood
that made up a new token or cookie for every request would count as thousands of clients,
each within its share.

Keys are Python's (salted, per process) hashes of the credential: small, and not the secret.
"""

from __future__ import annotations

import threading

from starlette.types import Scope

# credentials seen to work in this process (their hashes), the oldest forgotten first
VERIFIED_MAX = 10_000
_verified: dict[int, None] = {}
_lock = threading.Lock()


# the signed session cookie (Starlette's SessionMiddleware, set up in app.main)
SESSION_COOKIE = "prefloop_session"
_SESSION_COOKIE = SESSION_COOKIE.encode() + b"="


def credential_of(scope: Scope) -> bytes | None:
    """The request's credential as sent: its Authorization header, else its session cookie's
    signed data (without the timestamp and signature, which Starlette renews on every
    response: the same session keeps one credential)."""
    cookies: bytes | None = None
    name: bytes
    value: bytes
    for name, value in scope["headers"]:
        if name == b"authorization":
            return value
        if name == b"cookie":
            cookies = value
    if cookies is None:
        return None
    for cookie in cookies.split(b";"):
        cookie = cookie.strip()
        if cookie.startswith(_SESSION_COOKIE):
            return cookie[len(_SESSION_COOKIE) :].split(b".", 1)[0]
    return None


def client_of(scope: Scope) -> int | str:
    """The request's client: its credential's hash when that credential has worked here,
    else its address (the proxy's client address when PREFLOOP_TRUSTED_PROXIES is set)."""
    credential = credential_of(scope)
    if credential is not None:
        key = hash(credential)
        if key in _verified:
            return key
    peer = scope.get("client")
    return f"address {peer[0] if peer else 'unknown'}"


def credential_worked(scope: Scope) -> None:
    """Remember that this request's credential authenticated (called once it has)."""
    credential = credential_of(scope)
    if credential is None:
        return
    key = hash(credential)
    if key in _verified:
        return
    with _lock:
        _verified[key] = None
        if len(_verified) > VERIFIED_MAX:
            del _verified[next(iter(_verified))]
