"""Export API edges: who may export, bad parameters, snapshots, the CLI and the service contract."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from app.cli import cli
from tests.conftest import login
from tests.integration.export_data import add_prompt, add_ranking

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
def small_data(app_env: str, make_user) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Two prompts (train, val) with a K=4 ranking with one tie each."""
    from app.db import get_sessionmaker

    labeler = make_user("labeler")
    with get_sessionmaker()() as s:
        ids = {}
        for split in ("train", "val"):
            prompt = add_prompt(s, f"Say hello ({split})", split=split)
            texts = [f"{split} hello {i}" for i in range(4)]
            ids[split] = add_ranking(s, prompt, labeler.id, texts, [[0], [1, 2], [3]]).id
        s.commit()
    return ids


def test_anonymous_401_and_labeler_403(client, api_as) -> None:  # type: ignore[no-untyped-def]
    labeler = api_as("labeler")
    for method, url in ENDPOINTS:
        assert client.request(method, url).status_code == 401, url
        r = labeler.request(method, url, json={"export": "prompts"})
        assert r.status_code == 403, url
        # bad parameters do not tell a labeler more than "forbidden"
        assert labeler.get(url.split("?")[0] + "?split=nope").status_code == 403


def test_researcher_by_session_cookie_and_admin_by_token(
    client, make_user, api_as, small_data
) -> None:  # type: ignore[no-untyped-def]
    login(client, make_user("researcher"))
    r = client.get("/api/v1/export/comparisons", params={"format": "pairs"})
    assert r.status_code == 200 and r.headers["x-total-count"] == "10"
    assert len(ndjson(r.text)) == 10  # K=4 with one tie: 6 - 1 pairs per ranking, two rankings
    admin = api_as("admin")
    assert admin.get("/api/v1/export/comparisons").headers["x-total-count"] == "2"


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("comparisons", {"split": "training"}, "split"),
        ("comparisons", {"format": "triples"}, "format"),
        ("comparisons", {"output": "xml"}, "output"),
        ("comparisons", {"after": "abc"}, "after"),
        ("comparisons", {"format": "pairs", "after": "3:x"}, "after"),
        ("comparisons", {"labeler_id": "bob"}, "labeler_id"),
        ("comparisons", {"labeler_id": "999999"}, "labeler_id"),
        ("comparisons", {"labeler": "nobody"}, "labeler"),
        ("comparisons", {"since": "yesterday"}, "since"),
        ("comparisons", {"since": "2026-02-01", "until": "2026-01-01"}, "since"),
        ("comparisons", {"include_held_out_labelers": "maybe"}, "include_held_out_labelers"),
        ("comparisons", {"use_case": "Poetry slam"}, "use_case"),
        ("comparisons", {"spilt": "train"}, "spilt"),
        ("comparisons", {"dataset": "ppo"}, "dataset"),
        ("demonstrations", {"format": "pairs"}, "format"),
        ("prompts", {"dataset": "sft"}, "dataset"),
        ("prompts", {"after": "-1"}, "after"),
    ],
)
def test_bad_parameters_are_422_naming_the_parameter(api_as, path, params, field) -> None:  # type: ignore[no-untyped-def]
    r = api_as("researcher").get(f"/api/v1/export/{path}", params=params)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["field"] == field and isinstance(body["detail"], str)


def test_repeated_parameter_is_422(api_as) -> None:  # type: ignore[no-untyped-def]
    r = api_as("researcher").get("/api/v1/export/prompts?split=train&split=val")
    assert r.status_code == 422 and r.json()["field"] == "split"


def test_snapshot_freezes_rows_with_hash_and_filters(api_as, small_data, data_dir) -> None:  # type: ignore[no-untyped-def]
    api = api_as("researcher")
    body = {"export": "comparisons", "format": "pairs", "split": "train"}
    r = api.post("/api/v1/export/snapshots", json=body)
    assert r.status_code == 201, r.text
    snap = r.json()
    assert snap["row_count"] == 5 and snap["filters"] == {"split": "train"}
    assert (snap["export"], snap["format"]) == ("comparisons", "pairs")
    download = api.get(snap["download_url"])
    assert download.status_code == 200
    assert hashlib.sha256(download.content).hexdigest() == snap["sha256"]
    assert download.headers["x-content-sha256"] == snap["sha256"]
    live = api.get("/api/v1/export/comparisons", params={"format": "pairs", "split": "train"})
    assert download.content == live.content  # a snapshot is exactly the export
    path = Path(api.get(f"/api/v1/export/snapshots/{snap['snapshot_id']}").json()["download_url"])
    assert path.name == "download"
    stored = list((data_dir / "artifacts" / "snapshots").glob(f"{snap['sha256']}.jsonl"))
    assert len(stored) == 1 and stored[0].stat().st_size == snap["bytes"]
    again = api.post("/api/v1/export/snapshots", json=body).json()
    assert again["sha256"] == snap["sha256"] and again["snapshot_id"] != snap["snapshot_id"]
    listed = api.get("/api/v1/export/snapshots").json()
    assert [s["snapshot_id"] for s in listed][:2] == [again["snapshot_id"], snap["snapshot_id"]]


def test_snapshot_errors(api_as) -> None:  # type: ignore[no-untyped-def]
    api = api_as("researcher")
    assert api.get("/api/v1/export/snapshots/424242").status_code == 404
    assert api.get("/api/v1/export/snapshots/424242/download").status_code == 404
    assert api.post("/api/v1/export/snapshots", json={"export": "ratings"}).status_code == 422
    r = api.post("/api/v1/export/snapshots", json={"export": "prompts", "format": "pairs"})
    assert r.status_code == 422 and r.json()["field"] == "format"
    r = api.post("/api/v1/export/snapshots", json={"export": "comparisons", "labeler_id": 999})
    assert r.status_code == 422 and r.json()["field"] == "labeler_id"


def test_cli_writes_the_same_rows_as_the_api(api_as, small_data, tmp_path) -> None:  # type: ignore[no-untyped-def]
    runner = CliRunner()
    out = tmp_path / "pairs.jsonl"
    result = runner.invoke(cli, ["export", "comparisons", "--format", "pairs", "-o", str(out)])
    assert result.exit_code == 0, result.output
    api = api_as("researcher")
    assert out.read_bytes() == api.get("/api/v1/export/comparisons?format=pairs").content
    as_json = tmp_path / "val.json"
    result = runner.invoke(cli, ["export", "comparisons", "--split", "val", "-o", str(as_json)])
    assert result.exit_code == 0, result.output
    assert [r["ranking_id"] for r in json.loads(as_json.read_text())] == [small_data["val"]]
    bad = runner.invoke(cli, ["export", "prompts", "--split", "dev", "-o", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "split" in bad.output and "Traceback" not in bad.output
    snap = runner.invoke(cli, ["export", "snapshot", "comparisons", "--format", "pairs"])
    assert snap.exit_code == 0 and "10 rows" in snap.output, snap.output


def test_service_contract_on_a_callers_session(session, small_data) -> None:  # type: ignore[no-untyped-def]
    from app.schemas.export import ExportFilters
    from app.services.export import count_records, create_snapshot, iter_records

    filters = ExportFilters(split="val")
    pairs = list(iter_records(session, "comparisons", filters, "pairs"))
    assert count_records(session, "comparisons", filters, "pairs") == len(pairs) == 5
    assert all(p["group_id"] == small_data["val"] for p in pairs)
    snapshot = create_snapshot(session, "comparisons", ExportFilters(), "rankings")
    session.commit()
    data = Path(snapshot.path).read_bytes()
    assert hashlib.sha256(data).hexdigest() == snapshot.sha256 and snapshot.row_count == 2
    assert [r["ranking_id"] for r in ndjson(data.decode())] == sorted(small_data.values())
