"""``prefloop jobs`` and ``prefloop models``: the jobs API from a shell (same services)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from app.cli_support import fail, open_session
from app.schemas.jobs import JobKind
from app.services import ServiceError

jobs_cli = typer.Typer(
    help="Training jobs: launch, list, show, cancel, re-run.", no_args_is_help=True
)
models_cli = typer.Typer(help="The model registry.", no_args_is_help=True)


def _echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


def _user(session: Any, username: str | None) -> Any:
    if username is None:
        return None
    from app.services.accounts import get_user

    return get_user(session, username)


def _dispatch(session: Any, job: Any) -> None:
    """Commit the new job, send it to a worker and print its id."""
    from app.services.jobs import dispatch_job

    session.commit()  # a worker must find the row it is sent
    try:
        dispatch_job(session, job)
    except ServiceError as exc:
        fail(exc.detail)
    session.commit()
    typer.echo(job.id)


@jobs_cli.command(
    "launch",
    epilog="Hyper-parameters left out get the defaults that fit the job's model: the method's "
    "for real checkpoints; the 'tiny' preset and models trained from it have their own "
    "(prefloop train sft|rm|ppo --help lists them). The stored job shows the values used.",
)
def jobs_launch(
    kind: Annotated[str, typer.Argument(help=f"One of: {', '.join(JobKind)}.")],
    params: Annotated[
        str, typer.Option(help='Parameters as JSON, e.g. \'{"base_model": "tiny"}\'.')
    ] = "{}",
    params_file: Annotated[
        Path | None, typer.Option(help="Read the parameters from a JSON file instead.")
    ] = None,
    as_user: Annotated[
        str | None, typer.Option("--as", help="Record this user as the launcher.")
    ] = None,
) -> None:
    """Validate and enqueue a job; prints its id (workers pick it up)."""
    from app.services.jobs import create_job

    try:
        raw = params_file.read_text() if params_file is not None else params
        values = json.loads(raw)
    except (OSError, json.JSONDecodeError) as exc:
        fail(f"parameters are not readable JSON: {exc}", 2)
    if not isinstance(values, dict):
        fail("parameters must be a JSON object", 2)
    with open_session() as session:
        try:
            job = create_job(session, kind, values, _user(session, as_user))
        except ServiceError as exc:
            where = f" ({exc.field})" if exc.field else ""
            fail(f"{exc.detail}{where}", 2 if exc.status_code == 422 else 1)
        _dispatch(session, job)


@jobs_cli.command("list")
def jobs_list(
    status: Annotated[str | None, typer.Option(help="Only jobs in this status.")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
) -> None:
    """Jobs with their status and progress, newest first."""
    from app.services.jobs import list_jobs

    with open_session() as session:
        for job in list_jobs(session, limit, status):
            error = f"\t{job.error[:80]}" if job.error else ""
            typer.echo(
                f"{job.id}\t{job.kind}\t{job.status}\t{job.progress_step}/{job.progress_total}{error}"
            )


@jobs_cli.command("show")
def jobs_show(job_id: int) -> None:
    """Everything the API returns for a job, as JSON."""
    from app.services.jobs import get_job, job_view

    with open_session() as session:
        try:
            _echo_json(job_view(session, get_job(session, job_id)))
        except ServiceError as exc:
            fail(exc.detail)


@jobs_cli.command("cancel")
def jobs_cancel(job_id: int) -> None:
    """Cancel a queued job, or stop a running one at its next step."""
    from app.services.jobs import cancel_job

    with open_session() as session:
        try:
            job = cancel_job(session, job_id)
            session.commit()
        except ServiceError as exc:
            fail(exc.detail)
        typer.echo(
            f"job {job.id}: {job.status}{' (stops at its next step)' if job.status == 'running' else ''}"
        )


@jobs_cli.command("rerun")
def jobs_rerun(
    job_id: int,
    as_user: Annotated[
        str | None, typer.Option("--as", help="Record this user as the launcher.")
    ] = None,
) -> None:
    """Launch a failed or cancelled job again with the same parameters; prints the new id."""
    from app.services.jobs import rerun_job

    with open_session() as session:
        try:
            job = rerun_job(session, job_id, _user(session, as_user))
        except ServiceError as exc:
            fail(exc.detail)
        _dispatch(session, job)


@models_cli.command("list")
def models_list() -> None:
    """Registered model versions: id, kind, parents, path (current policy marked *)."""
    from app.services.models_registry import list_versions

    with open_session() as session:
        for v in list_versions(session):
            mark = "*" if v.is_current else " "
            parents = ",".join(str(p) for p in v.parent_ids) or "-"
            typer.echo(f"{mark}{v.id}\t{v.kind}\tparents {parents}\t{v.path}")


@models_cli.command("current")
def models_current(model_version_id: int) -> None:
    """Mark a base, SFT or PPO version as the current policy."""
    from app.services.models_registry import mark_current

    with open_session() as session:
        try:
            version = mark_current(session, model_version_id)
            session.commit()
        except ServiceError as exc:
            fail(exc.detail, 2)
        typer.echo(f"model version {version.id} ({version.kind}) is the current policy")
