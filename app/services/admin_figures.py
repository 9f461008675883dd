"""Whole-table figures for the admin pages (data-set sizes, curation counts), kept in memory for
``admin_figures_ttl_s`` seconds per web process.

At a million prompts each set of figures is seconds of full scans (docs/performance.md "At
scale"), too slow to repeat on every view of /admin and /admin/data; on a small installation
they take milliseconds and a researcher watching the data grow wants them fresh. So:
- figures whose last computation took under ``FAST_S`` are computed again on every view, in
  the request (always fresh while they are cheap);
- the first view in a process starts computing them in the background (on a read-only session)
  and waits up to ``FIRST_WAIT_S`` for them; if they are not ready it gets None: the page says
  they are being counted and reloads itself;
- a view within the TTL answers from memory (figures that took s seconds to count are kept
  at least s / ``MAX_SHARE`` seconds, so counting never takes more than that share of the
  time);
- a view after it answers the stale figures at once and starts one background refresh.
No view waits longer than ``FIRST_WAIT_S`` for the scans. Each page shows when its figures were
computed; ``GET /api/v1/data/overview`` answers the data page's figures with that time
(``as_of``), or a 503 with ``Retry-After`` where the page says they are being counted. ``admin_figures_ttl_s = 0`` computes on every view, in the request (the tests'
setting).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from app.config import get_settings
from app.db import get_readonly_sessionmaker, utcnow


@dataclass
class Figures:
    value: Any
    computed_at: datetime  # UTC, shown on the page
    monotonic: float = 0.0  # _clock() then, for the TTL
    seconds: float = 0.0  # how long computing them took


FAST_S = 0.25  # figures computed faster than this are recomputed on every view
# figures that took s seconds to count are kept at least s / MAX_SHARE seconds (20 s), whatever
# the TTL: counting them again takes at most this share of a web process's (and the
# database's) time. At a million prompts the data page's figures take ~5 s, so with a 60 s TTL
# two web processes spent a sixth of a core on them and the labelers' p99 showed it.
MAX_SHARE = 0.05
FIRST_WAIT_S = 2.0  # how long the first view waits for the background computation
COUNTING_RETRY_S = 3  # the JSON's Retry-After meanwhile (the pages reload after 3 s)
_clock = time.monotonic  # (tests move it)
_cache: dict[tuple[str, str], Figures] = {}
_refreshing: dict[tuple[str, str], threading.Thread] = {}
_lock = threading.Lock()


def cached_figures(
    session: Session, name: str, compute: Callable[[Session], Any]
) -> Figures | None:
    """``compute(session)``'s result, at most ``admin_figures_ttl_s`` seconds old (stale while
    one background refresh runs), or None while the first computation runs (see the module's
    docstring)."""
    ttl = get_settings().admin_figures_ttl_s
    if ttl <= 0:
        return _computed(compute, session)
    key = (session.get_bind().engine.url.render_as_string(hide_password=True), name)
    with _lock:
        figures = _cache.get(key)
    if figures is not None and figures.seconds < FAST_S:
        figures = _computed(compute, session)
        with _lock:
            _cache[key] = figures
        return figures
    if figures is None or _clock() - figures.monotonic >= max(ttl, figures.seconds / MAX_SHARE):
        thread = _start_refresh(key, compute)
        if figures is None and thread is not None:
            thread.join(FIRST_WAIT_S)
            with _lock:
                figures = _cache.get(key)
    return figures


def _computed(compute: Callable[[Session], Any], session: Session) -> Figures:
    started = time.perf_counter()
    value = compute(session)
    return Figures(value, utcnow(), _clock(), time.perf_counter() - started)


def _start_refresh(
    key: tuple[str, str], compute: Callable[[Session], Any]
) -> threading.Thread | None:
    """The background refresh of ``key`` under way, started now unless one already runs."""
    with _lock:
        if key in _refreshing:
            return _refreshing[key]
        thread = threading.Thread(
            target=_refresh, args=(key, compute), name=f"figures-{key[1]}", daemon=True
        )
        _refreshing[key] = thread
    thread.start()
    return thread


def _refresh(key: tuple[str, str], compute: Callable[[Session], Any]) -> None:
    try:
        with get_readonly_sessionmaker()() as session:
            figures = _computed(compute, session)
            session.rollback()
        with _lock:
            _cache[key] = figures
    finally:
        # a failed refresh keeps the old figures; the next view tries again
        with _lock:
            _refreshing.pop(key, None)


def wait_for_refreshes() -> None:
    """Join the background refreshes under way (tests, shutdown)."""
    with _lock:
        threads = list(_refreshing.values())
    for thread in threads:
        thread.join()


def clear() -> None:
    wait_for_refreshes()
    with _lock:
        _cache.clear()
