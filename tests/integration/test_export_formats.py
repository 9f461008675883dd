"""Every export format against labeled data: ties, K = 4..9, held-out labelers, splits, resume."""

from __future__ import annotations

import io
import json
from itertools import combinations
from typing import Any

import pytest

from tests.integration.export_data import Expected
from tests.integration.export_seed import ExportEnv, export_env  # noqa: F401 (fixture)

SPLITS = ("train", "val", "test")


def lines(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    rows = [json.loads(line) for line in response.text.splitlines() if line]
    assert int(response.headers["x-total-count"]) == len(rows)
    return rows


def tie_groups(record: dict[str, Any]) -> list[list[str]]:
    """The ranking as tie groups of texts, best first (whatever numbers the ranks use)."""
    by_rank: dict[int, list[str]] = {}
    for c in record["completions"]:
        by_rank.setdefault(c["rank"], []).append(c["text"])
    return [sorted(by_rank[r]) for r in sorted(by_rank)]


def expected_pairs(groups: list[list[str]]) -> set[tuple[str, str]]:
    return {
        (better, worse)
        for i, j in combinations(range(len(groups)), 2)
        for better in groups[i]
        for worse in groups[j]
    }


@pytest.fixture
def data(export_env: ExportEnv) -> tuple[Any, Expected]:  # noqa: F811
    return export_env.researcher, export_env.expected


def test_rankings_hold_every_submitted_ranking_with_its_ties(data) -> None:
    api, expected = data
    rows = lines(api.get("/api/v1/export/comparisons", params={"format": "rankings"}))
    training = {
        rid: e for rid, e in expected.rankings.items() if rid not in expected.held_out_rankings
    }
    assert {r["ranking_id"] for r in rows} == set(training)
    assert sorted({r["k"] for r in rows}) == [4, 5, 6, 7, 8, 9]
    for r in rows:
        prompt_id, split, labeler_id, groups = training[r["ranking_id"]]
        assert (r["prompt_id"], r["split"], r["labeler_id"]) == (prompt_id, split, labeler_id)
        assert r["k"] == len(r["completions"]) == sum(len(g) for g in groups)
        assert tie_groups(r) == [sorted(g) for g in groups]
        assert min(c["rank"] for c in r["completions"]) == 1  # 1 = best
        assert set(r["completions"][0]) == {"completion_id", "text", "rank", "likert", "flags"}
        assert isinstance(r["prompt"], str) and r["use_case"]
    rated = [c for r in rows for c in r["completions"] if c["likert"] is not None]
    assert rated and all(1 <= c["likert"] <= 7 for c in rated)
    assert any("hallucination" in c["flags"] for r in rows for c in r["completions"])


def test_pairs_are_all_untied_ordered_pairs(data) -> None:
    api, expected = data
    rows = lines(api.get("/api/v1/export/comparisons", params={"format": "pairs"}))
    training = {
        rid: e for rid, e in expected.rankings.items() if rid not in expected.held_out_rankings
    }
    by_group: dict[int, set[tuple[str, str]]] = {}
    for r in rows:
        assert {
            "group_id",
            "prompt_id",
            "prompt",
            "chosen",
            "rejected",
            "split",
            "labeler_id",
        } <= set(r)
        prompt_id, split, labeler_id, _ = training[r["group_id"]]
        assert (r["prompt_id"], r["split"], r["labeler_id"]) == (prompt_id, split, labeler_id)
        by_group.setdefault(r["group_id"], set()).add((r["chosen"], r["rejected"]))
    for rid, (_, _, _, groups) in training.items():
        k = sum(len(g) for g in groups)
        ties = sum(len(g) * (len(g) - 1) // 2 for g in groups)
        pairs = expected_pairs(groups)
        assert len(pairs) == k * (k - 1) // 2 - ties
        assert by_group.get(rid, set()) == pairs
    assert len(rows) == sum(len(p) for p in by_group.values())  # no pair twice
    assert len({r["pair_id"] for r in rows}) == len(rows)


def test_held_out_labelers_only_on_request(data) -> None:
    api, expected = data
    included = lines(
        api.get("/api/v1/export/comparisons", params={"include_held_out_labelers": "true"})
    )
    assert {r["ranking_id"] for r in included} == set(expected.rankings)
    demos = lines(api.get("/api/v1/export/demonstrations"))
    assert not any(expected.demonstrations[d["completion"]][3] for d in demos)
    all_demos = lines(
        api.get("/api/v1/export/demonstrations", params={"include_held_out_labelers": "1"})
    )
    assert any(expected.demonstrations[d["completion"]][3] for d in all_demos)
    held_out_labeler = next(iter(expected.held_out_labelers))
    r = api.get("/api/v1/export/comparisons", params={"labeler_id": held_out_labeler})
    assert r.status_code == 422 and r.json()["field"] == "labeler_id"
    mine = lines(
        api.get(
            "/api/v1/export/comparisons",
            params={"labeler_id": held_out_labeler, "include_held_out_labelers": "true"},
        )
    )
    assert {r["ranking_id"] for r in mine} == expected.held_out_rankings


EXPORTS = [
    ("comparisons", {"format": "rankings"}),
    ("comparisons", {"format": "pairs"}),
    ("demonstrations", {}),
    ("prompts", {}),
]


@pytest.mark.parametrize(("path", "params"), EXPORTS)
def test_splits_partition_the_data_and_no_row_crosses(data, path, params) -> None:
    api, expected = data
    everything = lines(api.get(f"/api/v1/export/{path}", params=params))
    seen: list[dict[str, Any]] = []
    for split in SPLITS:
        rows = lines(api.get(f"/api/v1/export/{path}", params={**params, "split": split}))
        assert rows, f"no {split} rows"
        for r in rows:
            assert r["split"] == split == expected.prompt_split[r["prompt_id"]]
        seen += rows
    assert sorted(map(json.dumps, seen)) == sorted(map(json.dumps, everything))
    splits_of_prompt: dict[int, set[str]] = {}
    for r in everything:
        splits_of_prompt.setdefault(r["prompt_id"], set()).add(r["split"])
    assert all(len(s) == 1 for s in splits_of_prompt.values())


def test_only_accepted_prompts_and_no_skipped_tasks(data) -> None:
    api, expected = data
    for path, params in EXPORTS:
        response = api.get(
            f"/api/v1/export/{path}", params={**params, "include_held_out_labelers": "true"}
        )
        rows = lines(response)
        assert rows
        assert not {r["prompt_id"] for r in rows} & expected.unusable_prompts
        assert not any(text in response.text for text in expected.skipped_texts)


def test_demonstrations_and_prompts_records(data) -> None:
    api, expected = data
    demos = lines(api.get("/api/v1/export/demonstrations"))
    assert demos
    for d in demos:
        prompt_id, split, labeler_id, held_out = expected.demonstrations[d["completion"]]
        assert (d["prompt_id"], d["split"], d["labeler_id"], held_out) == (
            prompt_id,
            split,
            labeler_id,
            False,
        )
        assert isinstance(d["prompt"], str) and d["prompt"]
    prompts = lines(api.get("/api/v1/export/prompts"))
    usable = set(expected.prompt_split) - expected.unusable_prompts
    assert {p["prompt_id"] for p in prompts} == usable - expected.held_out_authored
    ppo = lines(api.get("/api/v1/export/prompts", params={"dataset": "ppo"}))
    assert {p["prompt_id"] for p in ppo} == expected.api_prompts
    assert all(p["source"] == "api" for p in ppo)
    assert ppo and len(ppo) < len(prompts)


def test_use_case_and_labeler_filters(data) -> None:
    api, expected = data
    every = lines(api.get("/api/v1/export/comparisons"))
    open_qa = lines(api.get("/api/v1/export/comparisons", params={"use_case": "Open QA"}))
    assert open_qa and all(r["use_case"] == "Open QA" for r in open_qa)
    assert len(open_qa) == sum(r["use_case"] == "Open QA" for r in every)
    labeler = every[0]["labeler_id"]
    theirs = lines(api.get("/api/v1/export/comparisons", params={"labeler_id": labeler}))
    assert theirs and {r["ranking_id"] for r in theirs} == {
        r["ranking_id"] for r in every if r["labeler_id"] == labeler
    }


@pytest.mark.parametrize("fmt", ["rankings", "pairs"])
def test_resume_after_the_last_id_gives_the_rest(data, fmt) -> None:
    api, _ = data
    full = lines(api.get("/api/v1/export/comparisons", params={"format": fmt}))
    key = "ranking_id" if fmt == "rankings" else "pair_id"
    for cut in (1, len(full) // 2, len(full) - 1):
        rest = lines(
            api.get(
                "/api/v1/export/comparisons", params={"format": fmt, "after": full[cut - 1][key]}
            )
        )
        assert full[:cut] + rest == full
    if fmt == "pairs":  # after a group_id: the next ranking's pairs
        group = full[0]["group_id"]
        rest = lines(api.get("/api/v1/export/comparisons", params={"format": fmt, "after": group}))
        assert rest == [r for r in full if r["group_id"] > group]


def test_json_array_and_parquet_hold_the_same_rows(data) -> None:
    import pyarrow.parquet as pq

    api, _ = data
    for params in ({"format": "rankings"}, {"format": "pairs"}):
        ndjson = lines(api.get("/api/v1/export/comparisons", params=params))
        as_json = api.get("/api/v1/export/comparisons", params={**params, "output": "json"})
        assert as_json.headers["content-type"].startswith("application/json")
        assert as_json.json() == ndjson
        accept = api.get(
            "/api/v1/export/comparisons", params=params, headers={"Accept": "application/json"}
        )
        assert accept.json() == ndjson
        parquet = api.get("/api/v1/export/comparisons", params={**params, "output": "parquet"})
        assert parquet.status_code == 200
        assert int(parquet.headers["x-total-count"]) == len(ndjson)
        assert pq.read_table(io.BytesIO(parquet.content)).to_pylist() == ndjson
    for path in ("demonstrations", "prompts"):
        ndjson = lines(api.get(f"/api/v1/export/{path}"))
        parquet = api.get(f"/api/v1/export/{path}", params={"output": "parquet"})
        assert pq.read_table(io.BytesIO(parquet.content)).to_pylist() == ndjson


def test_files_load_with_datasets_and_the_trainer(data, tmp_path) -> None:
    from datasets import load_dataset

    from trainer import data as trainer_data

    api, _ = data
    files = {}
    for name, path in {
        "rankings": "comparisons?format=rankings",
        "pairs": "comparisons?format=pairs",
        "demonstrations": "demonstrations",
        "prompts": "prompts?dataset=ppo",
    }.items():
        response = api.get(f"/api/v1/export/{path}")
        files[name] = tmp_path / f"{name}.jsonl"
        files[name].write_bytes(response.content)
        loaded = load_dataset(
            "json", data_files=str(files[name]), split="train", cache_dir=str(tmp_path / "hf")
        )
        assert loaded.num_rows == int(response.headers["x-total-count"]) > 0
    pairs = load_dataset(
        "json", data_files=str(files["pairs"]), split="train", cache_dir=str(tmp_path / "hf")
    )
    assert {"prompt", "chosen", "rejected"} <= set(pairs.column_names)
    # trainer/data.py reads the files unchanged
    rankings = trainer_data.rankings(files["rankings"])
    untied = [
        r
        for r in lines(api.get("/api/v1/export/comparisons"))
        if len({c["rank"] for c in r["completions"]}) > 1
    ]
    assert len(rankings) == len(untied)
    assert all(min(r["ranks"]) == 1 for r in rankings)
    demos = trainer_data.demonstrations(files["demonstrations"])
    assert demos and all(d["prompt"] and d["completion"] for d in demos)
    assert trainer_data.prompts(files["prompts"])


def test_since_and_until_select_by_submission_time(data) -> None:
    api, expected = data
    old = lines(
        api.get("/api/v1/export/comparisons", params={"until": expected.cutoff.isoformat()})
    )
    new = lines(
        api.get("/api/v1/export/comparisons", params={"since": expected.cutoff.isoformat()})
    )
    assert {r["ranking_id"] for r in old} == expected.old_rankings
    assert not {r["ranking_id"] for r in old} & {r["ranking_id"] for r in new}
    assert len(old) + len(new) == len(lines(api.get("/api/v1/export/comparisons")))
