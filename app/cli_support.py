"""What every ``prefloop`` command module shares: a clear one-line error with an exit code,
and a database session (imported lazily, so commands that need no database stay fast)."""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

import typer

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` on standard error and exit with ``code`` (2: bad input)."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def open_session() -> Session:
    from app.db import get_sessionmaker

    return get_sessionmaker()()
