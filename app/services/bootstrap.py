"""What a fresh installation needs before its first request: an admin and default data."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import User
from app.services.accounts import ensure_first_admin
from app.services.demo import load_demo_data, register_tiny_base
from app.services.use_cases import ensure_default_use_cases

# each step is idempotent; it returns a line to print, or None
STEPS: list[Callable[[Session], str | None]] = []


def _first_admin(session: Session) -> str | None:
    credentials = ensure_first_admin(session)
    if credentials is None:
        return None
    username, password = credentials.split(":", 1)
    return (
        f"Created the first admin account.\n  username: {username}\n  password: {password}\n"
        "  (shown once; you will be asked to change it at first login)"
    )


STEPS.append(_first_admin)
STEPS.append(ensure_default_use_cases)
STEPS.append(register_tiny_base)


def is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def bootstrap(session: Session, *, bind_host: str | None = None) -> list[str]:
    """Run every step, then the demo data. Demo labelers (with generated passwords, printed
    once) are created only on a new installation (no account yet) served on loopback: never
    on a server others can reach, never beside real accounts."""
    fresh_data_dir = session.scalar(select(func.count()).select_from(User)) == 0
    messages = []
    for step in STEPS:
        message = step(session)
        session.commit()
        if message:
            messages.append(message)
    demo = load_demo_data(session, labelers=fresh_data_dir and is_loopback(bind_host))
    session.commit()
    if demo:
        messages.append(demo)
    return messages
