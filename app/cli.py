"""The ``prefloop`` command: run the platform, manage accounts and tokens, migrate."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from app.cli_export import export_command
from app.cli_jobs import jobs_cli, models_cli
from app.cli_simulate import SIMULATE_HELP, simulate_command
from app.services import ServiceError
from trainer.cli import sample_command, score_command, train_app

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
cli.command("simulate", help=SIMULATE_HELP, no_args_is_help=True)(simulate_command)


def fail(message: str, code: int = 1) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _session():  # type: ignore[no-untyped-def]
    from app.db import get_sessionmaker

    return get_sessionmaker()()


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
) -> None:
    """Migrate, bootstrap (first admin, defaults), and serve the web app."""
    import uvicorn

    from app.config import get_settings
    from app.migrate import upgrade_to_head
    from app.services.bootstrap import bootstrap

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade_to_head()
    with _session() as session:
        for message in bootstrap(session):
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
    try:
        uvicorn.run("app.asgi:app", host=host, port=port, workers=workers, log_level="info")
    finally:
        sweeper.stop()
        if embedded is not None:
            embedded.stop()


@cli.command("worker")
def run_worker(
    queues: Annotated[str, typer.Option(help="Comma-separated queues: cpu, gpu.")] = "cpu,gpu",
    concurrency: Annotated[int, typer.Option(help="Tasks run at once.")] = 1,
    hostname: Annotated[
        str | None, typer.Option(help="Worker name (default: queues@host).")
    ] = None,
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "INFO",
) -> None:
    """Run a Celery worker consuming the given queues."""
    from app.broker import QUEUES, celery_app, queue_name

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
) -> None:
    """Create a user; prompts for the password unless --password-stdin."""
    from app.services.accounts import create_user, parse_role

    try:
        parse_role(role)
    except ServiceError as exc:
        fail(exc.detail, 2)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    with _session() as session:
        try:
            user = create_user(session, username, password, role)
            session.commit()
        except ServiceError as exc:
            fail(exc.detail, 2 if exc.status_code == 422 else 1)
        note = (
            " (in screening until a researcher approves them)"
            if user.labeler_status == "screening"
            else ""
        )
        typer.echo(f"created {user.role} {user.username!r}{note}")


@users_cli.command("held-out")
def users_held_out(
    username: str,
    state: Annotated[str, typer.Argument(help="on or off.")],
) -> None:
    """Mark a labeler as held out (their work never becomes training data) or not."""
    from app.services.accounts import set_held_out

    if state not in {"on", "off"}:
        fail("state must be 'on' or 'off'", 2)
    with _session() as session:
        try:
            user = set_held_out(session, username, state == "on")
            session.commit()
        except ServiceError as exc:
            fail(exc.detail)
        typer.echo(f"{user.username}: held-out {'on' if user.held_out else 'off'}")


@users_cli.command("list")
def users_list() -> None:
    """List users with their roles."""
    from sqlalchemy import select

    from app.models import User

    with _session() as session:
        for user in session.scalars(select(User).order_by(User.id)):
            flags = " held-out" if user.held_out else ""
            typer.echo(f"{user.id}\t{user.username}\t{user.role}{flags}")


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

    with _session() as session:
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

    with _session() as session:
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

    with _session() as session:
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
        with _session() as session, typer.progressbar(length=total, label="importing") as bar:
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
    user_id: str, split: Annotated[str, typer.Argument(help="train, val or test.")]
) -> None:
    """Pin a user ID to a split; the user's existing prompts move with it."""
    from app.services.curation.splits import pin_split

    with _session() as session:
        try:
            moved = pin_split(session, user_id, split)
            session.commit()
        except ServiceError as exc:
            fail(exc.detail, 2 if exc.status_code == 422 else 1)
        typer.echo(f"pinned {user_id!r} to {split}; moved {moved} prompt(s)")


def main() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    cli()


if __name__ == "__main__":
    main()
