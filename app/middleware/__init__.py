"""ASGI middleware at the edge: security headers (``headers``), the request's body
(``body``: size limit, deadlines, spooling), the database gate (``gate``) and authentication
before a body is read (``authenticate``).

They are plain ASGI callables (no ``BaseHTTPMiddleware``). Order, outermost first:
``SecurityHeaders`` -> ``RequestSizeLimit`` -> ``ReceiveSmallBody`` -> ``DatabaseBusy`` ->
sessions (Starlette's signed cookie) -> ``AuthenticateBeforeBody`` -> the app.

No request waits on its client while it holds a place at the database gate or a connection:
a body of up to ``SMALL_BODY_BYTES`` arrives in full before the request queues at the gate,
and a larger one after its sender is authenticated, with the request's place given up
meanwhile (``PREFLOOP_BODY_TIMEOUT_S`` bounds both; then 408). Otherwise a signed-in client
sending bodies a byte at a time held every place, and everyone else got 503s. Such a large
body, when it is JSON, has its values counted before anything parses it
(``PREFLOOP_MAX_JSON_VALUES``, ``app.json_values``; then 413). The gate's places go in
arrival order, but fairly between clients (``FairGate``): one client's flood waits behind
everyone else's requests.
"""

from app.middleware.authenticate import AuthenticateBeforeBody, deferred_lookup_failed
from app.middleware.body import SMALL_BODY_BYTES, ReceiveSmallBody, RequestSizeLimit
from app.middleware.gate import DatabaseBusy, FairGate
from app.middleware.headers import SecurityHeaders
from app.middleware.replies import wants_json

__all__ = [
    "SMALL_BODY_BYTES",
    "AuthenticateBeforeBody",
    "DatabaseBusy",
    "FairGate",
    "ReceiveSmallBody",
    "RequestSizeLimit",
    "SecurityHeaders",
    "deferred_lookup_failed",
    "wants_json",
]
