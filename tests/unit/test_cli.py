"""The prefloop command: accounts and tokens, with clear errors and exit codes."""

from __future__ import annotations

import os

from typer.testing import CliRunner

from app.cli import cli

runner = CliRunner()


def invoke(*args: str, input: str | None = None):
    return runner.invoke(cli, list(args), input=input)


def test_every_command_has_help() -> None:
    for args in (
        [],
        ["serve"],
        ["worker"],
        ["db", "upgrade"],
        ["users", "create"],
        ["users", "held-out"],
        ["tokens", "create"],
        ["tokens", "revoke"],
        ["labelers", "list"],
        ["labelers", "approve"],
        ["labelers", "reject"],
    ):
        result = invoke(*args, "--help")
        assert result.exit_code == 0, (args, result.output)
        assert "Usage" in result.output


def test_users_create_and_bad_input(app_env) -> None:
    ok = invoke(
        "users", "create", "ada", "--role", "researcher", "--password-stdin", input="s3cret-pass\n"
    )
    assert ok.exit_code == 0 and "created researcher 'ada'" in ok.output
    dup = invoke(
        "users", "create", "ada", "--role", "labeler", "--password-stdin", input="another-pass\n"
    )
    assert dup.exit_code != 0 and "already exists" in dup.output
    role = invoke(
        "users", "create", "bob", "--role", "boss", "--password-stdin", input="s3cret-pass\n"
    )
    assert role.exit_code == 2 and "unknown role 'boss'" in role.output
    empty = invoke("users", "create", "bob", "--password-stdin", input="\n")
    assert empty.exit_code == 2 and "password must not be empty" in empty.output
    for result in (dup, role, empty):
        assert "Traceback" not in result.output


def test_held_out_flag(app_env, make_user, session) -> None:
    from app.models import User

    user = make_user("labeler")
    assert invoke("users", "held-out", user.username, "on").exit_code == 0
    assert session.get(User, user.id).held_out is True
    session.rollback()  # release the SQLite write lock before the CLI writes
    bad = invoke("users", "held-out", user.username, "maybe")
    assert bad.exit_code == 2 and "'on' or 'off'" in bad.output
    missing = invoke("users", "held-out", "nobody", "on")
    assert missing.exit_code == 1 and "no user 'nobody'" in missing.output


def test_screening_decisions_from_the_shell(app_env, make_user, monkeypatch) -> None:
    from app.config import get_settings
    from app.db import get_sessionmaker
    from app.models import ScreeningDecision, User

    monkeypatch.setenv("PREFLOOP_SCREENING", "true")
    get_settings.cache_clear()
    try:
        newcomer = make_user("labeler")
    finally:
        monkeypatch.delenv("PREFLOOP_SCREENING")
        get_settings.cache_clear()
    listed = invoke("labelers", "list", "--status", "screening")
    assert listed.exit_code == 0 and f"{newcomer.username}\tscreening" in listed.output
    ok = invoke("labelers", "approve", newcomer.username, "--note", "gold 0.9", "--held-out")
    assert ok.exit_code == 0 and "approved (held-out group)" in ok.output
    assert newcomer.username not in invoke("labelers", "list", "--status", "screening").output
    rejected = invoke("labelers", "reject", newcomer.username, "--note", "spam")
    assert rejected.exit_code == 0 and f"{newcomer.username}: rejected" in rejected.output
    with get_sessionmaker()() as s:
        assert s.get_one(User, newcomer.id).labeler_status == "rejected"
        notes = s.query(ScreeningDecision.decision, ScreeningDecision.note).order_by(
            ScreeningDecision.id
        )
        assert [tuple(n) for n in notes] == [("approved", "gold 0.9"), ("rejected", "spam")]
    researcher = make_user("researcher")
    refused = invoke("labelers", "approve", researcher.username)
    assert refused.exit_code == 1 and "no labeler" in refused.output
    assert invoke("labelers", "reject", "nobody").exit_code == 1
    assert invoke("labelers", "list", "--status", "maybe").exit_code == 2


def test_tokens_create_prints_only_the_token_and_revoke_works(app_env, make_user, client) -> None:
    user = make_user("researcher")
    result = invoke("tokens", "create", user.username, "--name", "laptop")
    assert result.exit_code == 0
    secret = result.output.strip()
    assert secret.startswith("pfl_") and "\n" not in secret
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/me", headers=headers).json()["username"] == user.username
    listing = invoke("tokens", "list", user.username)
    token_id = listing.output.split("\t", 1)[0]
    assert "laptop" in listing.output and secret not in listing.output
    assert invoke("tokens", "revoke", token_id).exit_code == 0
    assert client.get("/api/v1/me", headers=headers).status_code == 401
    assert invoke("tokens", "revoke", "99999").exit_code == 1
    assert invoke("tokens", "create", "nobody").exit_code == 1
    bad_scope = invoke("tokens", "create", user.username, "--scope", "root")
    assert bad_scope.exit_code == 1 and "unknown scope" in bad_scope.output


def test_unknown_worker_queue_is_refused(app_env) -> None:
    result = invoke("worker", "--queues", "tpu")
    assert result.exit_code == 1 and "unknown queue" in result.output


def test_db_upgrade_on_a_fresh_data_dir(tmp_path, monkeypatch) -> None:
    """The embedded default's first `prefloop db upgrade` creates its data dir."""
    from tests.conftest import _reset_caches

    for name in ("PREFLOOP_DATABASE_URL", "PREFLOOP_BROKER_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PREFLOOP_DATA_DIR", str(tmp_path / "fresh" / "var"))
    _reset_caches()
    try:
        result = invoke("db", "upgrade")
        assert result.exit_code == 0, result.output
        assert (tmp_path / "fresh" / "var" / "prefloop.sqlite").exists()
    finally:
        _reset_caches()


def test_account_commands_do_not_load_torch() -> None:
    """The training commands are mounted, but only they import torch (seconds at every call)."""
    import subprocess
    import sys

    code = "import sys, app.cli; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_worker_log_has_no_progress_bars(monkeypatch) -> None:
    # before: every checkpoint a job saved wrote two "Writing model shards" tqdm lines as
    # WARNING records into the worker's log (the job reports its own progress)
    from app.broker import celery_app

    seen: list[list[str]] = []
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    monkeypatch.setattr(celery_app, "worker_main", lambda argv: seen.append(argv))
    assert invoke("worker", "--queues", "cpu").exit_code == 0
    assert seen and os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "0")  # an operator's choice stays
    assert invoke("worker", "--queues", "cpu").exit_code == 0
    assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "0"
