"""Export API edges: who may export, bad parameters, snapshots, the CLI and the service contract."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from app.cli import cli
from tests.conftest import login
from tests.integration.export_seed import TRICKY, ExportEnv, export_env  # noqa: F401 (fixture)

ENDPOINTS = [
    ("GET", "/api/v1/export/comparisons"),
    ("GET", "/api/v1/export/comparisons?format=pairs"),
    ("GET", "/api/v1/export/demonstrations"),
    ("GET", "/api/v1/export/prompts?dataset=ppo"),
    ("GET", "/api/v1/export/snapshots"),
    ("GET", "/api/v1/export/snapshots/1"),
    ("GET", "/api/v1/export/snapshots/1/download"),
    ("POST", "/api/v1/export/snapshots"),
]


def ndjson(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line]


@pytest.fixture
def env(export_env: ExportEnv) -> ExportEnv:  # noqa: F811
    return export_env


def test_anonymous_401_and_labeler_403(env) -> None:
    for method, url in ENDPOINTS:
        assert env.anonymous.request(method, url).status_code == 401, url
        r = env.labeler.request(method, url, json={"export": "prompts"})
        assert r.status_code == 403, url
        # bad parameters do not tell a labeler more than "forbidden"
        assert env.labeler.get(url.split("?")[0] + "?split=nope").status_code == 403


def test_researcher_by_session_cookie(env) -> None:
    browser = login(TestClient(env.anonymous.app), env.researcher_user)
    r = browser.get("/api/v1/export/comparisons", params={"format": "pairs"})
    assert r.status_code == 200
    assert r.content == env.researcher.get("/api/v1/export/comparisons?format=pairs").content
    assert int(r.headers["x-total-count"]) == len(ndjson(r.text)) > 0


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("comparisons", {"split": "training"}, "split"),
        ("comparisons", {"format": "triples"}, "format"),
        ("comparisons", {"output": "xml"}, "output"),
        ("comparisons", {"after": "abc"}, "after"),
        ("comparisons", {"format": "pairs", "after": "3:x"}, "after"),
        ("comparisons", {"labeler_id": "bob"}, "labeler_id"),
        ("comparisons", {"since": "yesterday"}, "since"),
        ("comparisons", {"since": "2026-02-01", "until": "2026-01-01"}, "since"),
        ("comparisons", {"include_held_out_labelers": "maybe"}, "include_held_out_labelers"),
        ("comparisons", {"spilt": "train"}, "spilt"),
        ("comparisons", {"dataset": "ppo"}, "dataset"),
        ("demonstrations", {"format": "pairs"}, "format"),
        ("prompts", {"dataset": "sft"}, "dataset"),
        ("prompts", {"after": "-1"}, "after"),
    ],
)
def test_bad_parameters_are_422_naming_the_parameter(env, path, params, field) -> None:
    r = env.researcher.get(f"/api/v1/export/{path}", params=params)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["field"] == field and isinstance(body["detail"], str)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"labeler_id": "999999"}, "labeler_id"),
        ({"labeler": "nobody"}, "labeler"),
        ({"exclude_labeler": "1,999999"}, "exclude_labeler"),
        ({"use_case": "Poetry slam"}, "use_case"),
    ],
)
def test_a_filter_naming_nothing_is_404_naming_the_parameter(env, params, field) -> None:
    # well formed, so not a 422: the labeler or use case it names does not exist
    r = env.researcher.get("/api/v1/export/comparisons", params=params)
    assert r.status_code == 404, r.text
    assert r.json()["field"] == field


def test_repeated_parameter_is_422(env) -> None:
    r = env.researcher.get("/api/v1/export/prompts?split=train&split=val")
    assert r.status_code == 422 and r.json()["field"] == "split"


def test_snapshot_freezes_rows_with_hash_and_filters(env, data_dir) -> None:
    api = env.researcher
    body = {"export": "comparisons", "format": "pairs", "split": "train"}
    live = api.get("/api/v1/export/comparisons", params={"format": "pairs", "split": "train"})
    r = api.post("/api/v1/export/snapshots", json=body)
    assert r.status_code == 201, r.text
    snap = r.json()
    assert snap["row_count"] == int(live.headers["x-total-count"]) > 0
    assert snap["filters"] == {"split": "train"}
    assert (snap["export"], snap["format"]) == ("comparisons", "pairs")
    download = api.get(snap["download_url"])
    assert download.status_code == 200
    assert hashlib.sha256(download.content).hexdigest() == snap["sha256"]
    assert download.headers["x-content-sha256"] == snap["sha256"]
    assert download.content == live.content  # a snapshot is exactly the export
    meta = api.get(f"/api/v1/export/snapshots/{snap['snapshot_id']}").json()
    assert meta == snap
    stored = data_dir / "artifacts" / "snapshots" / f"{snap['sha256']}.jsonl"
    assert stored.stat().st_size == snap["bytes"] == len(download.content)
    again = api.post("/api/v1/export/snapshots", json=body).json()
    assert again["sha256"] == snap["sha256"] and again["snapshot_id"] != snap["snapshot_id"]
    listed = api.get("/api/v1/export/snapshots").json()
    assert [s["snapshot_id"] for s in listed][:2] == [again["snapshot_id"], snap["snapshot_id"]]


def test_snapshot_errors(env) -> None:
    api = env.researcher
    assert api.get("/api/v1/export/snapshots/424242").status_code == 404
    assert api.get("/api/v1/export/snapshots/424242/download").status_code == 404
    assert api.post("/api/v1/export/snapshots", json={"export": "ratings"}).status_code == 422
    r = api.post("/api/v1/export/snapshots", json={"export": "prompts", "format": "pairs"})
    assert r.status_code == 422 and r.json()["field"] == "prompts.format"
    r = api.post("/api/v1/export/snapshots", json={"export": "prompts", "min_gold_accuracy": 1})
    assert r.status_code == 422 and r.json()["field"] == "prompts.min_gold_accuracy"
    r = api.post("/api/v1/export/snapshots", json={"export": "comparisons", "labeler_id": 999})
    assert r.status_code == 404 and r.json()["field"] == "labeler_id"


def test_cli_writes_the_same_rows_as_the_api(env, tmp_path) -> None:
    import pyarrow.parquet as pq

    runner = CliRunner()
    api = env.researcher
    out = tmp_path / "pairs.jsonl"
    result = runner.invoke(cli, ["export", "comparisons", "--format", "pairs", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == api.get("/api/v1/export/comparisons?format=pairs").content
    as_json = tmp_path / "val.json"
    result = runner.invoke(cli, ["export", "demonstrations", "--split", "val", "-o", str(as_json)])
    assert result.exit_code == 0, result.output
    live = api.get("/api/v1/export/demonstrations", params={"split": "val", "output": "json"})
    assert json.loads(as_json.read_text()) == live.json() != []
    parquet = tmp_path / "rankings.parquet"
    result = runner.invoke(cli, ["export", "comparisons", "--split", "test", "-o", str(parquet)])
    assert result.exit_code == 0, result.output
    live = api.get("/api/v1/export/comparisons?split=test").text
    assert pq.read_table(parquet).to_pylist() == ndjson(live) != []
    stdout = runner.invoke(cli, ["export", "prompts", "--after", "2", "-o", "-"])
    assert stdout.exit_code == 0
    assert ndjson(stdout.stdout) == ndjson(api.get("/api/v1/export/prompts?after=2").text)
    bad = runner.invoke(cli, ["export", "prompts", "--split", "dev", "-o", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "split" in bad.output and "Traceback" not in bad.output
    assert not (tmp_path / "x").exists()
    missing = runner.invoke(cli, ["export", "comparisons"])
    assert missing.exit_code == 2 and "-o FILE" in missing.output
    snap = runner.invoke(cli, ["export", "prompts", "--dataset", "ppo", "--snapshot"])
    total = api.get("/api/v1/export/prompts?dataset=ppo").headers["x-total-count"]
    assert snap.exit_code == 0 and f"{total} rows" in snap.output, snap.output


def test_service_contract_matches_the_http_bytes(env) -> None:
    """iter_records/count_records on a caller's session give what the API streams; the pairs
    fast path (texts encoded once per ranking) writes exactly the dicts' JSON."""
    from app.db import get_sessionmaker
    from app.schemas.export import ExportFilters
    from app.services.export import count_records, iter_records
    from app.services.export_formats import encode_json

    for kind, fmt, params in (
        ("comparisons", "pairs", {"format": "pairs"}),
        ("comparisons", "rankings", {"format": "rankings", "split": "test"}),
        ("demonstrations", None, {"include_held_out_labelers": "true"}),
        ("prompts", None, {"dataset": "ppo"}),
    ):
        body = env.researcher.get(f"/api/v1/export/{kind}", params=params).content
        filters = ExportFilters.model_validate({k: v for k, v in params.items() if k != "format"})
        with get_sessionmaker()() as session:
            records = list(iter_records(session, kind, filters, fmt))
            assert count_records(session, kind, filters, fmt) == len(records)
        assert body == "".join(encode_json(r) + "\n" for r in records).encode()
        if fmt == "pairs":  # the texts JSON must escape made it, one record per line
            texts = {r["chosen"] for r in ndjson(body.decode())}
            assert all(any(t in text for text in texts) for t in TRICKY)


def test_create_snapshot_on_a_callers_session(env) -> None:
    from app.db import get_sessionmaker
    from app.schemas.export import ExportFilters
    from app.services.export import create_snapshot

    with get_sessionmaker()() as session:
        snapshot = create_snapshot(session, "comparisons", ExportFilters(split="test"), "rankings")
        session.commit()
        data = Path(snapshot.path).read_bytes()
    assert hashlib.sha256(data).hexdigest() == snapshot.sha256
    live = env.researcher.get("/api/v1/export/comparisons?split=test")
    assert data == live.content and snapshot.row_count == int(live.headers["x-total-count"])


def test_a_client_that_goes_away_mid_stream_ends_the_read(env, monkeypatch) -> None:
    import anyio
    from starlette.requests import ClientDisconnect

    from app.api.export import _ClosingStreamingResponse
    from app.schemas.export import ExportFilters
    from app.services import export_formats
    from app.services.export import ExportStream

    monkeypatch.setattr(export_formats, "CHUNK_BYTES", 1)  # one record per chunk
    stream = ExportStream("comparisons", ExportFilters(), "pairs")
    body = export_formats.encode(stream, "ndjson", "comparisons", "pairs")
    given_back: list[bool] = []
    response = _ClosingStreamingResponse(
        body, stream, lambda: given_back.append(True), media_type="application/x-ndjson"
    )
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body":
            assert stream.session.in_transaction()  # mid-stream
            raise OSError("connection reset by peer")

    async def receive() -> dict[str, Any]:
        await anyio.sleep_forever()
        return {}

    scope = {"type": "http", "asgi": {"spec_version": "2.4"}}
    with pytest.raises(ClientDisconnect):
        anyio.run(response, scope, receive, send)
    assert len(sent) == 2 and not stream.session.in_transaction()
    assert given_back == [True]  # its place among PREFLOOP_EXPORT_STREAMS, once


def test_a_stream_reads_one_snapshot_and_blocks_no_writer(env, monkeypatch) -> None:
    """Mid-stream, a labeler's write goes through (SQLite too), and neither the records nor
    X-Total-Count change under the reader."""
    from sqlalchemy import delete

    from app.db import get_sessionmaker
    from app.models import Assignment, Completion, Prompt, Ranking, Task
    from app.schemas.export import ExportFilters
    from app.services import export
    from tests.integration.export_data import add_prompt, add_ranking

    monkeypatch.setattr(export, "PAGE_SIZE", 2)  # many pages: the read spans the write
    before = ndjson(env.researcher.get("/api/v1/export/comparisons").text)
    stream = export.ExportStream("comparisons", ExportFilters(), "rankings")
    records = iter(stream)
    first = next(records)
    labeler_id = first["labeler_id"]
    with get_sessionmaker()() as s:
        prompt = add_prompt(s, "Written while an export runs", split="train")
        ranking = add_ranking(s, prompt, labeler_id, ["a", "b", "c", "d"], [[0], [1], [2], [3]])
        s.commit()
    try:
        streamed = [first, *records]
        assert streamed == before and stream.count == len(before)
        after = ndjson(env.researcher.get("/api/v1/export/comparisons").text)
        assert [r["ranking_id"] for r in after] == [r["ranking_id"] for r in before] + [ranking.id]
    finally:
        with get_sessionmaker()() as s:
            task_id = s.get_one(Ranking, ranking.id).task_id
            s.delete(s.get(Ranking, ranking.id))
            s.execute(delete(Assignment).where(Assignment.task_id == task_id))
            s.delete(s.get(Task, task_id))
            s.execute(delete(Completion).where(Completion.prompt_id == prompt.id))
            s.delete(s.get(Prompt, prompt.id))
            s.commit()
