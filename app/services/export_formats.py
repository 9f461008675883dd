"""Encodings of export records as byte chunks: NDJSON, a JSON array, and Parquet.

Each encoder takes an iterator of records and yields chunks of about ``CHUNK_BYTES``, so a
stream of any length is written in constant memory.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from app.services import Invalid

CHUNK_BYTES = 256 * 1024
PARQUET_ROWS_PER_GROUP = 20_000

# output name -> (media type, file suffix)
OUTPUTS: dict[str, tuple[str, str]] = {
    "ndjson": ("application/x-ndjson", "jsonl"),
    "json": ("application/json", "json"),
    "parquet": ("application/vnd.apache.parquet", "parquet"),
}
_ACCEPT = {
    "application/x-ndjson": "ndjson",
    "application/jsonl": "ndjson",
    "application/json": "json",
    "application/vnd.apache.parquet": "parquet",
    "application/x-parquet": "parquet",
}

_encode_utf8 = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def encode_json(value: Any) -> str:
    """Compact UTF-8 JSON, the one form of every record. The characters that str.splitlines()
    and JavaScript take for line breaks are escaped, so one record is always one line."""
    text = _encode_utf8(value)
    # they can only occur inside strings, where the escape means the same
    if "\u2028" in text or "\u2029" in text or "\x85" in text:
        text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
        text = text.replace("\x85", "\\u0085")
    return text


def json_lines(records: Iterable[Any]) -> Iterator[str]:
    """Each record's JSON text; a stream that can make them itself (``json_lines()``) does."""
    make = getattr(records, "json_lines", None)
    return make() if make is not None else map(encode_json, records)


def choose_output(output: str | None, accept: str | None) -> str:
    """``output`` if given, else the first known type of the Accept header, else NDJSON."""
    if output:
        if output not in OUTPUTS:
            raise Invalid(
                f"unknown output {output!r}; choose one of {', '.join(OUTPUTS)}", field="output"
            )
        if output == "parquet" and not parquet_available():
            raise Invalid("parquet output needs pyarrow on the server", field="output")
        return output
    for part in (accept or "").split(","):
        media = part.split(";")[0].strip().lower()
        if media in _ACCEPT and (_ACCEPT[media] != "parquet" or parquet_available()):
            return _ACCEPT[media]
    return "ndjson"


def output_for_path(path: str) -> str:
    """The output a file name asks for: .json, .parquet, anything else NDJSON."""
    lowered = path.lower()
    if lowered.endswith(".parquet"):
        return "parquet"
    if lowered.endswith(".json"):
        return "json"
    return "ndjson"


def chunked(pieces: Iterable[str]) -> Iterator[bytes]:
    """UTF-8 chunks of about ``CHUNK_BYTES`` from many small strings."""
    buffer: list[str] = []
    size = 0
    for piece in pieces:
        buffer.append(piece)
        size += len(piece)
        if size >= CHUNK_BYTES:
            yield "".join(buffer).encode()
            buffer, size = [], 0
    if buffer:
        yield "".join(buffer).encode()


def encode_ndjson(records: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    """One compact JSON object per line (UTF-8, no ASCII escaping)."""
    return chunked(line + "\n" for line in json_lines(records))


def encode_json_array(records: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    """A single JSON array, one record per line inside it."""

    def pieces() -> Iterator[str]:
        yield "["
        separator = "\n"
        for line in json_lines(records):
            yield separator + line
            separator = ",\n"
        yield "\n]\n"

    return chunked(pieces())


def parquet_schema(kind: str, fmt: str | None) -> Any:
    """The Arrow schema of each export, fixed so every row group agrees."""
    import pyarrow as pa

    text, i64, f64 = pa.string(), pa.int64(), pa.float64()
    if kind == "comparisons" and fmt == "pairs":
        fields = [("pair_id", text), ("group_id", i64), ("prompt_id", i64), ("prompt", text)]
        fields += [("chosen", text), ("rejected", text), ("chosen_completion_id", i64)]
        fields += [("rejected_completion_id", i64), ("split", text), ("labeler_id", i64)]
        fields += [("agreement", f64), ("gold_accuracy", f64)]
    elif kind == "comparisons" and fmt == "consensus":
        completion = pa.struct(
            [("completion_id", i64), ("text", text), ("rank", i64), ("borda", f64)]
        )
        fields = [("task_id", i64), ("prompt_id", i64), ("prompt", text), ("split", text)]
        fields += [("use_case", text), ("k", i64), ("labeler_ids", pa.list_(i64))]
        fields += [("agreement", f64), ("completions", pa.list_(completion))]
    elif kind == "comparisons":
        completion = pa.struct(
            [
                ("completion_id", i64),
                ("text", text),
                ("rank", i64),
                ("likert", i64),
                ("flags", pa.list_(text)),
            ]
        )
        fields = [("ranking_id", i64), ("prompt_id", i64), ("prompt", text), ("split", text)]
        fields += [("use_case", text), ("labeler_id", i64), ("k", i64), ("task_id", i64)]
        fields += [("agreement", f64), ("gold_accuracy", f64)]
        fields += [("completions", pa.list_(completion))]
    elif kind == "demonstrations":
        fields = [("demonstration_id", i64), ("prompt_id", i64), ("prompt", text)]
        fields += [("completion", text), ("split", text), ("use_case", text)]
        fields += [("labeler_id", i64)]
    else:
        fields = [("prompt_id", i64), ("prompt", text), ("split", text), ("source", text)]
        fields += [("kind", text), ("use_case", text)]
    return pa.schema(fields)


class _ChunkSink:
    """A write-only file that keeps what was written until it is drained."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.position = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def drain(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def parquet_available() -> bool:
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return False
    return True


def encode_parquet(
    records: Iterable[dict[str, Any]], kind: str, fmt: str | None
) -> Iterator[bytes]:
    """A Parquet file written a row group at a time (needs pyarrow)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = parquet_schema(kind, fmt)
    sink = _ChunkSink()
    writer = pq.ParquetWriter(sink, schema, compression="zstd")
    batch: list[dict[str, Any]] = []
    try:
        for record in records:
            batch.append(record)
            if len(batch) >= PARQUET_ROWS_PER_GROUP:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                batch = []
                yield sink.drain()
        if batch:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
    finally:
        writer.close()
    yield sink.drain()


def encode(
    records: Iterable[dict[str, Any]], output: str, kind: str, fmt: str | None
) -> Iterator[bytes]:
    if output == "parquet":
        return encode_parquet(records, kind, fmt)
    if output == "json":
        return encode_json_array(records)
    return encode_ndjson(records)
