"""``prefloop export``: the export API's data sets and snapshots, from a shell."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from app.services import ServiceError

export_cli = typer.Typer(
    help="Export labeled data (the same records as /api/v1/export/...).", no_args_is_help=True
)

Output = Annotated[
    str,
    typer.Option(
        "--output",
        "-o",
        help="File to write ('-': standard output). .json / .parquet pick the format.",
    ),
]
As = Annotated[
    str | None, typer.Option("--as", help="ndjson, json or parquet (default: from the file name).")
]
Split = Annotated[str | None, typer.Option(help="train, val or test.")]
Since = Annotated[str | None, typer.Option(help="Created at or after (ISO 8601, UTC if no zone).")]
Until = Annotated[str | None, typer.Option(help="Created before (ISO 8601).")]
UseCase = Annotated[str | None, typer.Option("--use-case", help="The prompt's use case.")]
Labeler = Annotated[int | None, typer.Option("--labeler-id", help="Only this labeler's labels.")]
HeldOut = Annotated[
    bool,
    typer.Option(
        "--include-held-out-labelers", help="Include held-out labelers' work (default: left out)."
    ),
]
After = Annotated[str | None, typer.Option(help="Resume after this record id (pairs: pair_id).")]


def _fail(message: str, code: int = 1) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _filters(**values: Any) -> Any:
    from app.schemas.export import parse_filters

    return parse_filters({k: v for k, v in values.items() if v is not None and v is not False})


def _write(kind: str, fmt: str | None, output: str, as_: str | None, **values: Any) -> None:
    """Stream the export to ``output``; errors are a message and exit code 2, no traceback."""
    from app.services.export import ExportStream
    from app.services.export_formats import choose_output, encode, output_for_path

    try:
        chosen = choose_output(as_ or output_for_path(output), None)
        stream = ExportStream(kind, _filters(**values), fmt)
    except ServiceError as exc:
        _fail(exc.detail, 2)
    if output == "-":
        if chosen == "parquet":
            stream.close()
            _fail("parquet is binary; give a file with -o", 2)
        sink = sys.stdout.buffer
        for chunk in encode(stream, chosen, kind, stream.fmt):
            sink.write(chunk)
        sink.flush()
        return
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with (
        partial.open("wb") as sink,
        typer.progressbar(length=stream.count, label=kind, file=sys.stderr) as bar,
    ):
        for chunk in encode(_progress(stream, bar), chosen, kind, stream.fmt):
            sink.write(chunk)
    partial.replace(path)  # a half-written file never has the final name
    typer.echo(f"wrote {stream.count} records to {path}", err=True)


def _progress(records: Any, bar: Any) -> Any:
    for n, record in enumerate(records, 1):
        if n % 1000 == 0:
            bar.update(1000)
        yield record


@export_cli.command("comparisons")
def export_comparisons(
    output: Output,
    format: Annotated[str, typer.Option(help="rankings or pairs.")] = "rankings",
    as_: As = None,
    split: Split = None,
    since: Since = None,
    until: Until = None,
    use_case: UseCase = None,
    labeler_id: Labeler = None,
    include_held_out_labelers: HeldOut = False,
    after: After = None,
) -> None:
    """Rankings (one record per ranking) or pairs (chosen/rejected, ties left out)."""
    _write(
        "comparisons", format, output, as_, split=split, since=since, until=until,
        use_case=use_case, labeler_id=labeler_id,
        include_held_out_labelers=include_held_out_labelers, after=after,
    )  # fmt: skip


@export_cli.command("demonstrations")
def export_demonstrations(
    output: Output,
    as_: As = None,
    split: Split = None,
    since: Since = None,
    until: Until = None,
    use_case: UseCase = None,
    labeler_id: Labeler = None,
    include_held_out_labelers: HeldOut = False,
    after: After = None,
) -> None:
    """Demonstrations as prompt/completion records (the SFT data set)."""
    _write(
        "demonstrations", None, output, as_, split=split, since=since, until=until,
        use_case=use_case, labeler_id=labeler_id,
        include_held_out_labelers=include_held_out_labelers, after=after,
    )  # fmt: skip


@export_cli.command("prompts")
def export_prompts(
    output: Output,
    dataset: Annotated[str | None, typer.Option(help="ppo: API prompts only.")] = None,
    as_: As = None,
    split: Split = None,
    since: Since = None,
    until: Until = None,
    use_case: UseCase = None,
    labeler_id: Labeler = None,
    include_held_out_labelers: HeldOut = False,
    after: After = None,
) -> None:
    """Accepted prompts (no labels needed); --dataset ppo for the PPO data set."""
    _write(
        "prompts", None, output, as_, split=split, since=since, until=until, use_case=use_case,
        labeler_id=labeler_id, include_held_out_labelers=include_held_out_labelers,
        after=after, dataset=dataset,
    )  # fmt: skip


@export_cli.command("snapshot")
def export_snapshot(
    export: Annotated[str, typer.Argument(help="comparisons, demonstrations or prompts.")],
    format: Annotated[str | None, typer.Option(help="rankings or pairs (comparisons).")] = None,
    dataset: Annotated[str | None, typer.Option(help="ppo (prompts).")] = None,
    split: Split = None,
    since: Since = None,
    until: Until = None,
    use_case: UseCase = None,
    labeler_id: Labeler = None,
    include_held_out_labelers: HeldOut = False,
) -> None:
    """Freeze an export into a content-hashed file and print its id, rows, sha256 and path."""
    from app.db import get_sessionmaker
    from app.services.export import create_snapshot

    with get_sessionmaker()() as session:
        try:
            filters = _filters(
                split=split, since=since, until=until, use_case=use_case, labeler_id=labeler_id,
                include_held_out_labelers=include_held_out_labelers, dataset=dataset,
            )  # fmt: skip
            snapshot = create_snapshot(session, export, filters, format)
            session.commit()
        except ServiceError as exc:
            _fail(exc.detail, 2)
        typer.echo(
            f"snapshot {snapshot.id}: {snapshot.row_count} rows, sha256 {snapshot.sha256}\n"
            f"  {snapshot.path}"
        )
