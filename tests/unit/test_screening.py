"""Screening: with PREFLOOP_SCREENING on, new labelers start in screening by every door."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from app.cli import cli


def test_new_labelers_start_in_screening_by_every_door(
    app_env, make_user, api_as, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    from app.config import get_settings
    from app.db import get_sessionmaker
    from app.models import User
    from app.services.accounts import get_user

    before = api_as("labeler")
    me = before.get("/api/v1/me").json()
    assert me["status"] == "approved" and me["user_id"] == before.user.id

    monkeypatch.setenv("PREFLOOP_SCREENING", "true")
    get_settings.cache_clear()
    labeler = api_as("labeler")
    me = labeler.get("/api/v1/me").json()
    assert (me["user_id"], me["role"], me["status"]) == (labeler.user.id, "labeler", "screening")
    # researchers are not screened
    assert api_as("researcher").get("/api/v1/me").json()["status"] == "approved"

    result = CliRunner().invoke(
        cli, ["users", "create", "cli-labeler", "--password-stdin"], input="long enough pw\n"
    )
    assert result.exit_code == 0 and "in screening" in result.output
    with get_sessionmaker()() as s:
        assert get_user(s, "cli-labeler").labeler_status == "screening"
        # turning screening on does not move labelers who already work
        assert s.get(User, before.user.id).labeler_status == "approved"
