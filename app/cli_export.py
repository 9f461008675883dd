"""``prefloop export``: the export API's data sets and snapshots, from a shell."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from app.cli_support import fail
from app.services import ServiceError


def _progress(records: Any, bar: Any) -> Any:
    for n, record in enumerate(records, 1):
        if n % 1000 == 0:
            bar.update(1000)
        yield record


def _write(stream: Any, output: str, chosen: str) -> None:
    """Stream the export to ``output`` ('-': standard output), under a temporary name first."""
    from app.services.export_formats import encode

    if output == "-":
        if chosen == "parquet":
            stream.close()
            fail("parquet is binary; give a file with -o", 2)
        for chunk in encode(stream, chosen, stream.kind, stream.fmt):
            sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
        return
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with (
        partial.open("wb") as sink,
        typer.progressbar(length=stream.count, label=stream.kind, file=sys.stderr) as bar,
    ):
        # a _Progress is read through its json_lines(), as the stream it wraps
        records: Any = _progress(stream, bar) if chosen == "parquet" else _Progress(stream, bar)
        for chunk in encode(records, chosen, stream.kind, stream.fmt):
            sink.write(chunk)
    partial.replace(path)  # a half-written file never has the final name
    typer.echo(f"wrote {stream.count} records to {path}", err=True)


class _Progress:
    """The stream's JSON lines, advancing a progress bar."""

    def __init__(self, stream: Any, bar: Any):
        self.stream, self.bar = stream, bar

    def json_lines(self) -> Any:
        return _progress(self.stream.json_lines(), self.bar)


def export_command(
    export: Annotated[str, typer.Argument(help="comparisons, demonstrations or prompts.")],
    output: Annotated[
        str | None,
        typer.Option(
            "--output", "-o", help="File ('-': standard output); .json / .parquet pick the format."
        ),
    ] = None,
    format: Annotated[
        str | None,
        typer.Option(
            help="comparisons: rankings (default), pairs, or consensus (one Borda ranking per task)."
        ),
    ] = None,
    dataset: Annotated[str | None, typer.Option(help="prompts: ppo for API prompts only.")] = None,
    split: Annotated[str | None, typer.Option(help="train, val or test.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Created at or after (ISO 8601, UTC if no zone).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Created before (ISO 8601).")] = None,
    use_case: Annotated[str | None, typer.Option(help="The prompt's use case.")] = None,
    labeler_id: Annotated[int | None, typer.Option(help="Only this labeler's labels.")] = None,
    include_held_out_labelers: Annotated[
        bool,
        typer.Option(
            "--include-held-out-labelers", help="Include held-out labelers' work (default: no)."
        ),
    ] = False,
    min_gold_accuracy: Annotated[
        float | None,
        typer.Option(help="Only labelers whose gold accuracy is at least this (0..1)."),
    ] = None,
    exclude_labeler: Annotated[
        str | None, typer.Option(help="Leave out these labelers' labels (ids: 3,7).")
    ] = None,
    after: Annotated[
        str | None, typer.Option(help="Resume after this record id (pairs: a pair_id).")
    ] = None,
    as_: Annotated[
        str | None,
        typer.Option("--as", help="ndjson, json or parquet (default: from the file name)."),
    ] = None,
    snapshot: Annotated[
        bool,
        typer.Option(
            "--snapshot", help="Freeze the export into a content-hashed snapshot instead."
        ),
    ] = False,
) -> None:
    """Write an export to a file (the records of /api/v1/export/...), or freeze a snapshot.

    prefloop export comparisons --format pairs --split train -o rm-train.jsonl
    """
    from app.services.export import ExportStream
    from app.services.export_formats import choose_output, output_for_path
    from app.services.export_params import parse_filters

    values = {
        "split": split, "since": since, "until": until, "use_case": use_case,
        "labeler_id": labeler_id, "include_held_out_labelers": include_held_out_labelers or None,
        "dataset": dataset, "after": after, "min_gold_accuracy": min_gold_accuracy,
        "exclude_labeler": exclude_labeler,
    }  # fmt: skip
    try:
        filters = parse_filters({k: v for k, v in values.items() if v is not None})
        if snapshot:
            if output is not None or after is not None:
                fail("--snapshot writes to the artifact store; leave out -o and --after", 2)
            _snapshot(export, filters, format)
            return
        if output is None:
            fail("give -o FILE (or -o - for standard output), or --snapshot", 2)
        chosen = choose_output(as_ or output_for_path(output), None)
        stream = ExportStream(export, filters, format)
    except ServiceError as exc:
        fail(exc.detail, 2)
    _write(stream, output, chosen)


def _snapshot(export: str, filters: Any, fmt: str | None) -> None:
    from app.db import get_sessionmaker
    from app.services.export import create_snapshot

    with get_sessionmaker()() as session:
        snapshot = create_snapshot(session, export, filters, fmt)
        session.commit()
        typer.echo(
            f"snapshot {snapshot.id}: {snapshot.row_count} rows, sha256 {snapshot.sha256}\n"
            f"  {snapshot.path}"
        )
