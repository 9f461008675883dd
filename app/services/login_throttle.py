"""Login throttling: growing delays per (account, client address) and per client address.

Two counters are kept in ``login_throttles`` for every attempt: one for the account as tried
from this address, and one for the address alone (``username`` empty). An account counter
allows ``login_max_failures`` failures, an address counter four times as many (several people
may share one address); beyond that, each further attempt must wait a delay that doubles from
``login_base_delay_s`` up to ``login_max_delay_s``. The account is never locked as such: a
stranger's guesses from another address do not keep its owner out. Counters are forgotten
``login_window_s`` after their last failure, and a success clears its account's counter.

Invariant: concurrent attempts never exceed the limit. An attempt *reserves* its failure
before the (slow, Argon2) password check, in one short transaction that locks both rows
(INSERT ... ON CONFLICT DO NOTHING, then SELECT ... FOR UPDATE in key order; SQLite serialises
writers with BEGIN IMMEDIATE). A success gives the reservation back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.config import get_settings
from app.db import is_postgres, utcnow
from app.models import LoginThrottle
from app.services import ServiceError

ADDRESS = ""  # the username of an address-wide counter (no username is empty)
ADDRESS_FACTOR = 4


class LoginThrottled(ServiceError):
    status_code = 429

    def __init__(self, retry_after_s: float):
        seconds = max(1, int(retry_after_s + 0.999))
        wait = f"{seconds} seconds" if seconds < 120 else f"{(seconds + 59) // 60} minutes"
        super().__init__(f"too many failed logins; try again in {wait}")
        self.retry_after_s = seconds


@dataclass(frozen=True)
class Reservation:
    keys: list[tuple[str, str]]


def _limit(username: str) -> int:
    limit = get_settings().login_max_failures
    return limit * ADDRESS_FACTOR if username == ADDRESS else limit


def delay_after(failures: int, limit: int) -> float:
    """Seconds the next attempt must wait after ``failures`` failures (0 below the limit)."""
    if failures < limit:
        return 0.0
    settings = get_settings()
    # cap the exponent first: 2 ** a large count overflows a float
    exponent = min(failures - limit, 64)
    return float(min(settings.login_base_delay_s * 2.0**exponent, settings.login_max_delay_s))


def reserve_attempt(session: Session, username: str | None, ip: str) -> Reservation:
    """Count this attempt as a failure in advance, or raise ``LoginThrottled``; commits.

    ``username`` None: the name cannot belong to any account, only the address is counted.
    """
    settings = get_settings()
    ip = ip[:64]
    keys = sorted({(ADDRESS, ip)} | ({(username[:64], ip)} if username else set()))
    dialect = postgresql if is_postgres(session) else sqlite
    now = utcnow()
    session.execute(
        dialect.insert(LoginThrottle)
        .values([{"username": u, "ip": a, "failures": 0, "last_failure_at": now} for u, a in keys])
        .on_conflict_do_nothing(index_elements=["username", "ip"])
    )
    rows = list(
        session.scalars(
            select(LoginThrottle)
            .where(tuple_(LoginThrottle.username, LoginThrottle.ip).in_(keys))
            .order_by(LoginThrottle.username, LoginThrottle.ip)
            .with_for_update()
        )
    )
    forget_before = now - timedelta(seconds=settings.login_window_s)
    wait = 0.0
    for row in rows:
        if row.last_failure_at < forget_before:
            row.failures, row.blocked_until = 0, None
        if row.blocked_until is not None and row.blocked_until > now:
            wait = max(wait, (row.blocked_until - now).total_seconds())
    if wait:
        session.commit()
        raise LoginThrottled(wait)
    for row in rows:
        row.failures += 1
        row.last_failure_at = now
        pause = delay_after(row.failures, _limit(row.username))
        row.blocked_until = now + timedelta(seconds=pause) if pause else None
    session.commit()
    return Reservation(keys=keys)


def release_attempt(session: Session, reservation: Reservation) -> None:
    """The attempt succeeded: clear its account's counter, give the address its slot back."""
    rows = session.scalars(
        select(LoginThrottle)
        .where(tuple_(LoginThrottle.username, LoginThrottle.ip).in_(reservation.keys))
        .order_by(LoginThrottle.username, LoginThrottle.ip)
        .with_for_update()
    )
    for row in rows:
        if row.username != ADDRESS:
            session.delete(row)
            continue
        row.failures = max(row.failures - 1, 0)
        if row.failures < _limit(ADDRESS):
            row.blocked_until = None


def forget_stale(session: Session, now: datetime | None = None) -> None:
    """Delete counters whose failures are all forgotten (keeps the table small)."""
    cutoff = (now or utcnow()) - timedelta(seconds=get_settings().login_window_s)
    session.execute(delete(LoginThrottle).where(LoginThrottle.last_failure_at < cutoff))
