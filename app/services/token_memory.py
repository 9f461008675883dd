"""A web process's memory of the bearer tokens it looked up lately (PostgreSQL only).

Every API request looks its bearer token up (``accounts.user_for_token``): the token, its user
and every column of the user, in one statement through SQLAlchemy, and the user made an ORM
object. For a token this process found valid a moment ago, that is replaced by a smaller
question asked on psycopg's own cursor: is the token still unrevoked, its user active, and the
user's row the very one remembered (``users.xmin``, the row version PostgreSQL keeps, which any
change to the row replaces: a new role, a pause, a password, a login)? Yes: the request goes
on as the remembered user. No: the memory is dropped and the full lookup answers. The question
is asked at the start of the request's transaction, where the lookup was: a revoked token is
refused from the moment its revocation committed, in every process, as before. It costs a web
process about half the lookup's CPU (240 us against 430 us in-process; issue 14,
docs/performance.md).

Only tokens that a lookup found valid are remembered (a made-up token never is), at most
``REMEMBERED_MAX``; an entry lasts until the token's last use is due to be written again
(``user_for_token`` writes it at most once a minute): a lookup then writes it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy.orm import Session

from app.db import utcnow

if TYPE_CHECKING:
    import psycopg

REMEMBERED_MAX = 4096

# a row if the token is still valid and its user's row the one remembered
CHECK_SQL = (
    "SELECT 1 FROM api_tokens JOIN users ON users.id = api_tokens.user_id"
    " WHERE api_tokens.token_hash = %s AND api_tokens.revoked_at IS NULL"
    " AND users.is_active AND users.xmin::text = %s"
)


@dataclass(frozen=True)
class Remembered:
    """What a lookup found behind a token: the user's columns, the token's id and scopes, the
    user's row version, and until when the token's last use needs no writing."""

    user_values: dict[str, Any]
    token_id: int
    token_scopes: tuple[str, ...]
    user_version: str
    until: datetime


_remembered: OrderedDict[str, Remembered] = OrderedDict()
_lock = threading.Lock()


def remember(token_hash: str, found: Remembered) -> None:
    with _lock:
        _remembered[token_hash] = found
        _remembered.move_to_end(token_hash)
        while len(_remembered) > REMEMBERED_MAX:
            _remembered.popitem(last=False)


def recall(token_hash: str) -> Remembered | None:
    """The remembered lookup of ``token_hash`` while it needs no write, else None."""
    found = _remembered.get(token_hash)
    if found is None or utcnow() >= found.until:
        return None
    return found


def forget(token_hash: str) -> None:
    with _lock:
        _remembered.pop(token_hash, None)


def forget_all() -> None:
    with _lock:
        _remembered.clear()


def still_valid(session: Session, token_hash: str, user_version: str) -> bool:
    """Whether the token is still valid and its user's row the one remembered, in
    ``session``'s transaction: one statement on psycopg's own cursor (about 100 us of CPU;
    through SQLAlchemy's ``exec_driver_sql`` about 170 us, issue 14)."""
    connection = cast("psycopg.Connection[Any]", session.connection().connection.dbapi_connection)
    with connection.cursor() as cursor:
        cursor.execute(CHECK_SQL, (token_hash, user_version))
        return cursor.fetchone() is not None
