"""The admin pages' whole-table figures: fresh on every view while they are cheap; when they are
not, computed in the background (a view waits for them briefly at most), served from memory
within the TTL, then served stale while one background refresh runs (both backends); and shown
with their time on the pages."""

from __future__ import annotations

import threading

from sqlalchemy import func, select

from tests.conftest import login
from tests.labeling_support import make_prompt


def _prompts(session) -> int:
    from app.models import Prompt

    return session.scalar(select(func.count()).select_from(Prompt))


def _slow_figures(monkeypatch) -> threading.Event:
    """Figures that count as slow (never recomputed in the request) and whose background
    computations wait for the returned event: no timing decides what a view gets."""
    from app.config import get_settings
    from app.services import admin_figures

    monkeypatch.setenv("PREFLOOP_ADMIN_FIGURES_TTL_S", "60")
    get_settings.cache_clear()
    monkeypatch.setattr(admin_figures, "FAST_S", 0.0)
    monkeypatch.setattr(admin_figures, "FIRST_WAIT_S", 0.0)
    gate = threading.Event()
    computed = admin_figures._computed

    def gated(compute, session):
        gate.wait(60)
        return computed(compute, session)

    monkeypatch.setattr(admin_figures, "_computed", gated)
    return gate


def test_figures_cached_then_refreshed_in_background(app_env, monkeypatch) -> None:
    from app.db import get_sessionmaker
    from app.services import admin_figures

    gate = _slow_figures(monkeypatch)
    clock = [1000.0]
    monkeypatch.setattr(admin_figures, "_clock", lambda: clock[0])
    calls: list[int] = []

    def compute(session) -> int:
        calls.append(1)
        return _prompts(session)

    def view():
        # a session per view, as per request (SQLite: each transaction holds the write lock)
        with get_sessionmaker()() as s:
            return admin_figures.cached_figures(s, "prompts", compute)

    make_prompt()
    assert view() is None  # the first view: counting in the background
    gate.set()
    admin_figures.wait_for_refreshes()
    first = view()
    assert first.value == 1 and len(calls) == 1
    make_prompt()
    clock[0] += 59  # within the TTL: from memory, no query
    assert view().value == 1 and len(calls) == 1
    clock[0] += 1  # expired: the stale figures at once, a refresh behind them
    assert view().value == 1
    admin_figures.wait_for_refreshes()
    assert len(calls) == 2
    refreshed = view()
    assert refreshed.value == 2 and refreshed.computed_at >= first.computed_at
    assert len(calls) == 2


def test_slow_figures_are_kept_longer_than_the_ttl(app_env, monkeypatch) -> None:
    """Figures that take s seconds to count are kept s / MAX_SHARE seconds at least (20 s):
    before, every TTL (60 s) each web process counted them again, and at a million prompts
    (~5 s of scans) that background work showed in the labelers' p99."""
    from app.db import get_sessionmaker
    from app.services import admin_figures

    gate = _slow_figures(monkeypatch)
    gate.set()
    clock = [1000.0]
    monkeypatch.setattr(admin_figures, "_clock", lambda: clock[0])
    computed = admin_figures._computed

    def ten_seconds(compute, session):
        figures = computed(compute, session)
        figures.seconds = 10.0
        return figures

    monkeypatch.setattr(admin_figures, "_computed", ten_seconds)
    calls: list[int] = []

    def view():
        with get_sessionmaker()() as s:
            figures = admin_figures.cached_figures(s, "prompts", lambda s: calls.append(1))
        admin_figures.wait_for_refreshes()
        return figures

    view()
    assert len(calls) == 1
    clock[0] += 199  # past the TTL (60 s), within 10 s / 0.05 = 200 s: from memory
    view()
    assert len(calls) == 1
    clock[0] += 1
    view()  # now counted again, in the background
    assert len(calls) == 2


def test_cheap_figures_are_fresh_on_every_view(app_env, monkeypatch) -> None:
    """A small installation (figures computed in milliseconds) sees each new prompt at once,
    whatever the TTL."""
    from app.config import get_settings
    from app.db import get_sessionmaker
    from app.services import admin_figures

    monkeypatch.setenv("PREFLOOP_ADMIN_FIGURES_TTL_S", "60")
    get_settings.cache_clear()
    monkeypatch.setattr(admin_figures, "FAST_S", 3600.0)  # every computation counts as cheap
    monkeypatch.setattr(admin_figures, "FIRST_WAIT_S", 3600.0)
    for expected in (0, 1, 2):
        with get_sessionmaker()() as s:
            figures = admin_figures.cached_figures(s, "prompts", _prompts)
        # the first view waited for the background computation; later ones compute in it
        assert figures is not None and figures.value == expected
        make_prompt()


def test_figures_ttl_zero_computes_every_time(app_env) -> None:
    from app.db import get_sessionmaker
    from app.services.admin_figures import cached_figures

    for expected in (0, 1):
        with get_sessionmaker()() as s:
            figures = cached_figures(s, "prompts", _prompts)
            assert figures is not None and figures.value == expected
        make_prompt()


def test_admin_pages_show_when_their_figures_were_computed(client, make_user) -> None:
    login(client, make_user("researcher"))
    for page in ("/admin/data", "/admin/overview"):
        r = client.get(page)
        assert r.status_code == 200 and 'id="figures-time"' in r.text and " UTC" in r.text


def test_admin_pages_say_figures_are_being_counted(client, make_user, monkeypatch) -> None:
    from app.services import admin_figures

    gate = _slow_figures(monkeypatch)
    make_prompt()
    login(client, make_user("researcher"))
    for page in ("/admin/data", "/admin/overview"):
        gate.clear()  # this page's first computation waits until the page has answered
        r = client.get(page)
        assert r.status_code == 200 and 'id="figures-counting"' in r.text
        gate.set()
        admin_figures.wait_for_refreshes()
        r = client.get(page)
        assert 'id="figures-counting"' not in r.text and 'id="figures-time"' in r.text


def test_the_json_data_overview_answers_the_pages_figures(api_as, monkeypatch) -> None:
    """``GET /api/v1/data/overview`` shares the data page's cache: a 503 with Retry-After while
    they are first counted, then the kept figures with their time (``as_of``) within the TTL,
    the same as the page shows."""
    from datetime import datetime

    from app.services import admin_figures

    gate = _slow_figures(monkeypatch)
    clock = [1000.0]
    monkeypatch.setattr(admin_figures, "_clock", lambda: clock[0])
    api = api_as("researcher")
    make_prompt()
    r = api.get("/api/v1/data/overview")
    assert r.status_code == 503 and r.headers["Retry-After"] == "3" and r.json()["detail"]
    gate.set()
    admin_figures.wait_for_refreshes()
    first = api.get("/api/v1/data/overview")
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["curation"]["by_status"]["accepted"] == 1
    as_of = datetime.fromisoformat(body["as_of"])
    make_prompt()
    clock[0] += 59  # within the TTL: the same figures, from memory
    assert api.get("/api/v1/data/overview").json() == body
    page = api.get("/admin/data")  # the page shows the same computation
    assert as_of.strftime("%H:%M:%S") in page.text
    clock[0] += 1  # expired: stale at once, then refreshed in the background
    assert api.get("/api/v1/data/overview").json() == body
    admin_figures.wait_for_refreshes()
    later = api.get("/api/v1/data/overview").json()
    assert later["curation"]["by_status"]["accepted"] == 2
    assert datetime.fromisoformat(later["as_of"]) >= as_of
