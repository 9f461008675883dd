"""``prefloop labelers``: the screening decisions and the labeler table from a shell (the same
services as /admin/labelers and /api/v1/labelers)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from app.cli_support import fail, open_session
from app.services import ServiceError

labelers_cli = typer.Typer(
    help="Labelers: the quality table, screening decisions (approve, reject).",
    no_args_is_help=True,
)


def _figure(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)


@labelers_cli.command("list")
def labelers_list(
    status: Annotated[
        str | None, typer.Option(help="Only labelers in this state: screening, approved, rejected.")
    ] = None,
) -> None:
    """One line per labeler: id, name, status, group, rankings, gold accuracy, agreement with
    others, outlier flags (the figures of docs/quality.md, all time)."""
    from app.schemas.quality import QualityFilters
    from app.services.labeler_stats import labeler_stats

    if status is not None and status not in {"screening", "approved", "rejected"}:
        fail("status must be screening, approved or rejected", 2)
    with open_session() as session:
        rows = labeler_stats(session, QualityFilters())
    typer.echo("id\tlabeler\tstatus\tgroup\trankings\tgold_accuracy\tagreement\toutliers")
    for row in rows:
        if status is not None and row["status"] != status:
            continue
        typer.echo(
            "\t".join(
                [
                    str(row["labeler_id"]),
                    row["username"],
                    row["status"],
                    row["group"],
                    str(row["rankings"]),
                    _figure(row["gold_accuracy"]),
                    _figure(row["agreement_with_others"]),
                    ",".join(row["outliers"]) or "-",
                ]
            )
        )


def _decide(username: str, decision: str, note: str, held_out: bool | None = None) -> None:
    from app.services.accounts import get_user
    from app.services.screening import approve, reject

    with open_session() as session:
        try:
            labeler = get_user(session, username)
            if decision == "approve":
                labeler = approve(session, labeler.id, note=note, held_out=held_out)
            else:
                labeler = reject(session, labeler.id, note=note)
            session.commit()
        except ServiceError as exc:
            fail(exc.detail, 2 if exc.status_code == 422 else 1)
        group = " (held-out group)" if labeler.held_out else ""
        typer.echo(f"{labeler.username}: {labeler.labeler_status}{group}")


@labelers_cli.command("approve")
def labelers_approve(
    username: str,
    note: Annotated[str, typer.Option(help="Why, kept with the decision.")] = "",
    held_out: Annotated[
        bool | None,
        typer.Option(
            "--held-out/--training",
            help="Also put them in the held-out group (work never trains) or the training one.",
        ),
    ] = None,
) -> None:
    """Approve a labeler: they receive every task from now on (idempotent, logged)."""
    _decide(username, "approve", note, held_out)


@labelers_cli.command("reject")
def labelers_reject(
    username: str,
    note: Annotated[str, typer.Option(help="Why, kept with the decision.")] = "",
) -> None:
    """Reject a labeler: they receive no task and their held tasks go back to the queue."""
    _decide(username, "reject", note)
