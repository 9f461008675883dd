"""The ``prefloop`` command: run the platform, manage accounts and tokens, migrate."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from app.cli_export import export_command
from app.cli_jobs import jobs_cli, models_cli
from app.cli_labelers import labelers_cli
from app.cli_simulate import SIMULATE_HELP, simulate_command
from app.cli_support import fail, open_session
from app.services import ServiceError
from trainer.cli import sample_command, score_command, train_app

T = TypeVar("T")

cli = typer.Typer(
    help="prefloop: human feedback in, instruction-following models out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_cli = typer.Typer(help="Database schema.", no_args_is_help=True)
users_cli = typer.Typer(help="User accounts.", no_args_is_help=True)
tokens_cli = typer.Typer(
    help="API tokens for the JSON API (Authorization: Bearer <token>).", no_args_is_help=True
)
cli.add_typer(db_cli, name="db")
# the trainer's own commands (trainer/ stands alone; the CLI only mounts them)
cli.add_typer(train_app, name="train")
cli.command("sample", help="Generate K completions per prompt from a checkpoint.")(sample_command)
cli.command("score", help="Add the reward model's score to each prompt/completion record.")(
    score_command
)
cli.add_typer(users_cli, name="users")
cli.add_typer(tokens_cli, name="tokens")
cli.command("export")(export_command)
prompts_cli = typer.Typer(help="Prompts: bulk import, split pins.", no_args_is_help=True)
cli.add_typer(prompts_cli, name="prompts")
cli.add_typer(jobs_cli, name="jobs")
cli.add_typer(models_cli, name="models")
cli.add_typer(labelers_cli, name="labelers")
cli.command("simulate", help=SIMULATE_HELP, no_args_is_help=True)(simulate_command)


# server and worker ----------------------------------------------------------------------------


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    worker: Annotated[
        bool,
        typer.Option("--worker/--no-worker", help="Start one embedded worker with the server."),
    ] = True,
    workers: Annotated[int, typer.Option(help="Web worker processes.")] = 1,
    access_log: Annotated[
        bool,
        typer.Option(
            "--access-log/--no-access-log",
            help="Log every request (off behind a proxy that logs them: it costs CPU per request).",
        ),
    ] = True,
) -> None:
    """Migrate, bootstrap (first admin, defaults), and serve the web app."""
    import uvicorn

    from app.config import InsecureSecretKey, get_settings
    from app.migrate import upgrade_to_head
    from app.services.bootstrap import bootstrap

    if workers > 1:
        # several processes on one SQLite file (these web processes, and this one's sweeper
        # and embedded worker): none may queue its own writers ahead of the others' (on one
        # connection, app.db.make_engine); every process reads this when it loads its settings
        os.environ["PREFLOOP_SQLITE_WRITER_QUEUE"] = "false"
        get_settings.cache_clear()
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        settings.session_secret()
    except InsecureSecretKey as exc:
        fail(f"refusing to start: {exc}", 2)
    upgrade_to_head()
    with open_session() as session:
        for message in bootstrap(session, bind_host=host):
            typer.secho(message, fg=typer.colors.YELLOW)
    from app.worker.heartbeat import JobSweeper

    # fails the jobs of dead workers and sends jobs the broker missed, even with no worker
    sweeper = JobSweeper()
    sweeper.start()
    embedded = None
    if worker:
        from app.worker.embedded import EmbeddedWorker

        # one process for both queues; production runs dedicated workers instead
        embedded = EmbeddedWorker(log=typer.echo)
        embedded.start()
    typer.echo(
        f"prefloop on http://{host}:{port}  (database: {settings.sqlalchemy_url.split('://')[0]})"
    )
    # every signal that ends the server stops the worker too: uvicorn shuts down gracefully on
    # SIGINT/SIGTERM and then raises the signal again, which with the default SIGTERM handler
    # would end the process before `finally`; SIGHUP and SIGQUIT would not even reach uvicorn
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, _exit_on_signal)
    try:
        uvicorn.run(
            "app.asgi:app",
            host=host,
            port=port,
            workers=workers,
            access_log=access_log,
            **uvicorn_options(),
        )
    finally:
        sweeper.stop()
        if embedded is not None:
            embedded.stop()


def uvicorn_options() -> dict[str, Any]:
    """Forwarded headers are trusted only from PREFLOOP_TRUSTED_PROXIES (uvicorn's own default
    trusts 127.0.0.1, so any local client could claim any address); a request's headers must
    arrive within PREFLOOP_HEADER_TIMEOUT_S and be at most PREFLOOP_MAX_HEADER_BYTES."""
    from app.config import get_settings
    from app.http_protocol import HeaderLimitsProtocol

    proxies = list(get_settings().trusted_proxies)
    return {
        # httptools, with a deadline and a size limit for a request's headers
        # (PREFLOOP_HEADER_TIMEOUT_S, PREFLOOP_MAX_HEADER_BYTES)
        "http": HeaderLimitsProtocol,
        "log_level": "info",
        "proxy_headers": bool(proxies),
        "forwarded_allow_ips": proxies or None,
        "server_header": False,
        "timeout_keep_alive": KEEP_ALIVE_S,
    }


# idle keep-alive connections are closed after this long. uvicorn's default (5 s) races with a
# client that sends its next request on the connection after a pause of about 5 s: a labeler's
# script or a load test saw "connection reset by peer". Longer than the idle timeout of common
# proxies and load balancers (60 s), as they ask of the servers behind them, so that the proxy,
# not the server, ends an idle connection.
KEEP_ALIVE_S = 65


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


@cli.command("worker")
def run_worker(
    queues: Annotated[str, typer.Option(help="Comma-separated queues: cpu, gpu.")] = "cpu,gpu",
    concurrency: Annotated[int, typer.Option(help="Tasks run at once.")] = 1,
    hostname: Annotated[
        str | None, typer.Option(help="Worker name (default: queues@host).")
    ] = None,
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "INFO",
    parent_pid: Annotated[
        int | None,
        typer.Option(help="Stop when this process is gone (set by `serve`).", hidden=True),
    ] = None,
) -> None:
    """Run a Celery worker consuming the given queues."""
    # a job reports its own progress; Hugging Face's progress bars would fill the log with
    # "Writing model shards" lines (set HF_HUB_DISABLE_PROGRESS_BARS=0 to have them back)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from app.broker import QUEUES, celery_app, queue_name

    if parent_pid is not None:
        from app.worker.embedded import exit_with_parent

        exit_with_parent(parent_pid)

    names = [q.strip() for q in queues.split(",") if q.strip()]
    unknown = [q for q in names if q not in QUEUES]
    if unknown or not names:
        fail(f"unknown queue(s) {unknown}; choose from {', '.join(QUEUES)}")
    argv = [
        "worker",
        f"--queues={','.join(queue_name(q) for q in names)}",
        f"--concurrency={concurrency}",
        f"--loglevel={loglevel}",
        "--pool=prefork" if concurrency > 1 else "--pool=solo",
        f"--hostname={hostname or ('-'.join(names) + '@%h')}",
    ]
    celery_app.worker_main(argv)


# database -------------------------------------------------------------------------------------


@db_cli.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration to the configured database."""
    from app.migrate import upgrade_to_head

    upgrade_to_head()
    typer.echo("database is at the latest revision")


# users ----------------------------------------------------------------------------------------


@users_cli.command("create")
def users_create(
    username: str,
    role: Annotated[str, typer.Option(help="labeler, researcher or admin.")] = "labeler",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    one_time_password: Annotated[
        bool,
        typer.Option(
            "--one-time-password",
            help="Generate a password, print it once; it must be changed at the first login.",
        ),
    ] = False,
) -> None:
    """Create a user; prompts for the password unless --password-stdin or --one-time-password."""
    from app.services.accounts import create_user_with_password, parse_role

    try:
        parse_role(role)
    except ServiceError as exc:
        fail(exc.detail, 2)
    password: str | None = None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password.strip():
            fail("password must not be empty", 2)
    elif not one_time_password:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    user, generated = _account_change(create_user_with_password, username, role, password)
    note = " (in screening until a researcher approves them)"
    typer.echo(
        f"created {user.role} {user.username!r}{note if user.labeler_status == 'screening' else ''}"
    )
    if generated:
        typer.echo(f"one-time password (shown once, to change at first login): {generated}")


@users_cli.command("held-out")
def users_held_out(
    username: str,
    state: Annotated[str, typer.Argument(help="on or off.")],
) -> None:
    """Mark a labeler as held out (their work never becomes training data) or not."""
    from app.services.accounts import set_held_out

    if state not in {"on", "off"}:
        fail("state must be 'on' or 'off'", 2)
    with open_session() as session:
        try:
            user = set_held_out(session, username, state == "on")
            session.commit()
        except ServiceError as exc:
            fail(exc.detail)
        typer.echo(f"{user.username}: held-out {'on' if user.held_out else 'off'}")


@users_cli.command("list")
def users_list() -> None:
    """List users: id, name, role, state (active or deactivated), flags, last login."""
    from app.services.accounts import list_users

    with open_session() as session:
        for user in list_users(session):
            flags = " held-out" if user.held_out else ""
            flags += " must-change-password" if user.must_change_password else ""
            state = "active" if user.is_active else "deactivated"
            last = f"{user.last_login_at:%Y-%m-%d %H:%M}" if user.last_login_at else "never"
            typer.echo(f"{user.id}\t{user.username}\t{user.role}\t{state}{flags}\t{last}")


def _account_change(action: Callable[..., T], *args: Any) -> T:
    """Run one account service function, commit, and return its result; errors exit 2 / 1."""
    with open_session() as session:
        try:
            result = action(session, *args)
            session.commit()
        except ServiceError as exc:
            fail(exc.detail, 2 if exc.status_code == 422 else 1)
        return result


@users_cli.command("deactivate")
def users_deactivate(username: str) -> None:
    """Deactivate a user: their sessions end and their tokens stop working (work is kept)."""
    from app.services.accounts import set_active

    _account_change(set_active, username, False)
    typer.echo(f"{username}: deactivated; sessions ended, tokens refused")


@users_cli.command("reactivate")
def users_reactivate(username: str) -> None:
    """Let a deactivated user sign in again."""
    from app.services.accounts import set_active

    _account_change(set_active, username, True)
    typer.echo(f"{username}: active")


@users_cli.command("role")
def users_role(
    username: str,
    role: Annotated[str, typer.Argument(help="labeler, researcher or admin.")],
) -> None:
    """Change a user's role; their sessions end (they sign in again with the new role)."""
    from app.services.accounts import set_role

    user = _account_change(set_role, username, role)
    typer.echo(f"{username}: role {user.role}")


@users_cli.command("reset-password")
def users_reset_password(username: str) -> None:
    """Set a one-time password (printed once) that must be changed at the next login; the
    user's sessions end."""
    from app.services.accounts import reset_password

    _, password = _account_change(reset_password, username)
    typer.echo(password)


@users_cli.command("sessions")
def users_sessions(
    username: Annotated[str | None, typer.Argument(help="Only this user's sessions.")] = None,
) -> None:
    """List live browser sessions: user, last activity, started, address, browser."""
    from app.services.accounts import session_activity

    rows = _account_change(session_activity, username)
    for row in rows:
        typer.echo(
            f"{row.username}\t{row.last_seen_at:%Y-%m-%d %H:%M}\t{row.created_at:%Y-%m-%d %H:%M}"
            f"\t{row.ip or '-'}\t{row.user_agent[:60] or '-'}"
        )
    if not rows:
        typer.echo("no live sessions")


@users_cli.command("logout")
def users_logout(username: str) -> None:
    """End all of a user's browser sessions (tokens are revoked with 'tokens revoke')."""
    from app.services.accounts import end_sessions

    ended = _account_change(end_sessions, username)
    typer.echo(f"{username}: ended {ended} session(s)")


# tokens ---------------------------------------------------------------------------------------


@tokens_cli.command("create")
def tokens_create(
    username: str,
    name: Annotated[str, typer.Option(help="A label to recognise the token by.")] = "",
    scope: Annotated[
        list[str] | None,
        typer.Option(help="Limit the token to a scope (e.g. 'ingest'); default: the owner's role."),
    ] = None,
) -> None:
    """Create an API token and print it (only this once)."""
    from app.services.accounts import create_token

    with open_session() as session:
        try:
            token, secret = create_token(session, username, name, scope)
            session.commit()
        except ServiceError as exc:
            fail(exc.detail)
        typer.echo(secret)


@tokens_cli.command("list")
def tokens_list(username: str) -> None:
    """List a user's tokens (id, prefix, name, scopes, last use, revoked)."""
    from app.services.accounts import get_user

    with open_session() as session:
        try:
            user = get_user(session, username)
        except ServiceError as exc:
            fail(exc.detail)
        for t in user.tokens:
            state = f"revoked {t.revoked_at:%Y-%m-%d}" if t.revoked_at else "active"
            used = f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never"
            typer.echo(
                f"{t.id}\t{t.prefix}…\t{t.name}\t{','.join(t.scopes) or '-'}\t{used}\t{state}"
            )


@tokens_cli.command("revoke")
def tokens_revoke(
    token_id: Annotated[int, typer.Argument(help="The id shown by 'tokens list'.")],
) -> None:
    """Revoke a token; requests with it get 401 from then on."""
    from app.services.accounts import revoke_token

    with open_session() as session:
        try:
            revoke_token(session, token_id)
            session.commit()
        except ServiceError as exc:
            fail(exc.detail)
        typer.echo(f"revoked token {token_id}")


# prompts --------------------------------------------------------------------------------------


@prompts_cli.command("import")
def prompts_import(
    file: Annotated[Path, typer.Argument(help="JSONL: one prompt object per line.")],
    report: Annotated[
        Path | None, typer.Option(help="Write each line's result to this JSONL file.")
    ] = None,
) -> None:
    """Ingest prompts ({"text", "user_id", "external_id"?, "use_case"?, "metadata"?} per line)
    through the curation pipeline, with a progress bar and a summary of statuses."""
    from app.services.intake_import import count_lines, import_jsonl

    if not file.is_file():
        fail(f"no such file: {file}", 2)
    total = count_lines(file)
    report_fh = report.open("w", encoding="utf-8") if report else None
    try:
        with open_session() as session, typer.progressbar(length=total, label="importing") as bar:
            summary = import_jsonl(session, file, on_batch=bar.update, report=report_fh)
    except ServiceError as exc:
        fail(exc.detail)
    finally:
        if report_fh is not None:
            report_fh.close()
    typer.echo(f"{summary.lines} prompts read from {file}")
    for status in ("accepted", "duplicate", "over_cap", "rejected"):
        typer.echo(f"  {status:<10} {summary.statuses.get(status, 0)}")
    for reason, n in summary.reasons.most_common(5):
        typer.echo(f"    {n} rejected: {reason}")


@prompts_cli.command("pin")
def prompts_pin(
    user_id: str,
    split: Annotated[str, typer.Argument(help="train, val or test.")],
    client: Annotated[
        str,
        typer.Option(
            help="The account that ingested this user ID (its username); default: prompts "
            "from 'prompts import'."
        ),
    ] = "",
) -> None:
    """Pin a user ID to a split; the user's existing prompts move with it."""
    from app.services.curation.splits import pin_message, pin_split

    with open_session() as session:
        try:
            moved = pin_split(session, user_id, split, client.strip())
            session.commit()
        except ServiceError as exc:
            fail(exc.detail, 2 if exc.status_code == 422 else 1)
        typer.echo(pin_message(session, user_id, split, moved))


def main() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    cli()


if __name__ == "__main__":
    main()
