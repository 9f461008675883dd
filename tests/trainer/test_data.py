"""Records and the shared prompt template."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer import data, synthetic
from trainer.config import SampleConfig
from trainer.models import load_tokenizer
from trainer.ppo import prompt_indices
from trainer.sample import sample_completions


def test_one_template_for_every_step(tiny: Path) -> None:
    tokenizer = load_tokenizer(str(tiny))
    prompt_ids = data.encode_prompt(tokenizer, "Describe the frog.", 64)
    ids, n_prompt = data.encode_example(tokenizer, "Describe the frog.", "kind warm", 64)
    assert ids[:n_prompt] == prompt_ids  # SFT/RM inputs start exactly as sampling prompts do
    assert ids[-1] == tokenizer.eos_token_id
    assert "### Response:" in tokenizer.decode(prompt_ids)
    batch = data.sft_batch(
        tokenizer, [{"prompt": "Describe the frog.", "completion": "kind warm"}], 64
    )
    labelled = batch["labels"][0][batch["labels"][0] != -100].tolist()
    assert labelled == ids[n_prompt:]  # loss on response tokens only


def test_long_examples_are_truncated_to_max_length(tiny: Path) -> None:
    tokenizer = load_tokenizer(str(tiny))
    ids, n_prompt = data.encode_example(tokenizer, "word " * 100, "kind " * 100, 32)
    assert len(ids) == 32 and 0 < n_prompt <= 16


def test_rankings_are_validated_and_all_tied_ones_dropped() -> None:
    rows = data.rankings(
        [
            {"prompt": "p", "completions": [{"text": "a", "rank": 1}, {"text": "b", "rank": 1}]},
            {"prompt": "q", "completions": [{"text": "a", "rank": 2}, {"text": "b", "rank": 1}]},
        ]
    )
    assert rows == [{"prompt": "q", "texts": ["a", "b"], "ranks": [2, 1]}]
    with pytest.raises(ValueError, match="record 0: 'completions'"):
        data.rankings([{"prompt": "p"}])
    with pytest.raises(ValueError, match="at least 2"):
        data.rankings([{"prompt": "p", "completions": [{"text": "a", "rank": 1}]}])
    with pytest.raises(ValueError, match="'completion' must be a str"):
        data.demonstrations([{"prompt": "p"}])


def test_jsonl_round_trip_and_errors(tmp_path: Path) -> None:
    data.write_jsonl(tmp_path / "a.jsonl", [{"prompt": "é"}, {"prompt": "b"}])
    assert data.prompts(tmp_path / "a.jsonl") == ["é", "b"]
    (tmp_path / "bad.jsonl").write_text('{"prompt": "a"}\nnot json\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        data.read_jsonl(tmp_path / "bad.jsonl")


def test_parquet_snapshots_read_like_jsonl(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"prompt": "p", "completions": [{"text": "a", "rank": 2}, {"text": "b", "rank": 1}]}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "r.parquet")
    assert data.rankings(tmp_path / "r.parquet") == [
        {"prompt": "p", "texts": ["a", "b"], "ranks": [2, 1]}
    ]


def test_non_integer_ranks_are_rejected_not_rounded_into_ties() -> None:
    def ranking(r: object) -> list[dict]:
        return [
            {"prompt": "p", "completions": [{"text": "a", "rank": r}, {"text": "b", "rank": 2}]}
        ]

    with pytest.raises(ValueError, match="whole number, got 1.5"):
        data.rankings(ranking(1.5))  # was read as 1: a silent tie-breaking change
    with pytest.raises(ValueError, match="whole number"):
        data.rankings(ranking(True))
    assert data.rankings(ranking(1.0))[0]["ranks"] == [1, 2]
    # a rank that is not a number is named in a ValueError (was an AttributeError)
    with pytest.raises(ValueError, match=r"'rank' must be a int \| float, got 'first'"):
        data.rankings(ranking("first"))


def test_ppo_processes_draw_disjoint_prompts_and_cover_them_all() -> None:
    n, batch, processes = 10, 3, 2
    seen = []
    for iteration in (1, 2, 3):  # 18 draws of 10 prompts: one pass, then a second shuffle
        shards = [prompt_indices(n, batch, iteration, 0, p, processes) for p in range(processes)]
        seen += [i for s in shards for i in s]
    # each prompt once per pass over all processes (they drew the same prompts before)
    assert sorted(seen[:10]) == list(range(10))
    assert len(set(seen[10:])) == 8
    # the same on every call: a resumed run draws what the original would have
    assert prompt_indices(n, batch, 2, 0, 1, processes) == prompt_indices(n, batch, 2, 0, 1, 2)


def test_samples_do_not_depend_on_the_batch_size(tiny: Path) -> None:
    prompts = [p["prompt"] for p in synthetic.prompts(5, seed=4)]
    runs = [
        sample_completions(
            str(tiny), prompts, 3, SampleConfig(batch_size=b, max_new_tokens=6, max_length=64)
        )
        for b in (1, 7)
    ]
    assert runs[0] == runs[1]  # differed: one global generator shared by the batch
    other_seed = sample_completions(
        str(tiny), prompts, 3, SampleConfig(seed=1, max_new_tokens=6, max_length=64)
    )
    assert other_seed != runs[0]
