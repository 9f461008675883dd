"""The same code under two processes (torchrun, gloo on CPU): data sharded, metrics and the RM
bias reduced over all processes, one checkpoint written."""

from __future__ import annotations

import itertools
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trainer import synthetic
from trainer.data import rankings, write_jsonl
from trainer.models import read_prefloop_meta
from trainer.score import score_records


def test_reward_model_under_two_processes(tiny: Path, tmp_path: Path) -> None:
    train, val = synthetic.rankings(16, seed=1), synthetic.rankings(7, seed=2)
    demos = synthetic.demonstrations(9, seed=3)  # odd sizes: uneven shards
    for name, rows in (("train", train), ("val", val), ("demos", demos)):
        write_jsonl(tmp_path / f"{name}.jsonl", rows)
    out = tmp_path / "rm"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path.cwd())}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "trainer",
            "train",
            "rm",
            "--model",
            str(tiny),
            "--data",
            str(tmp_path / "train.jsonl"),
            "--val-data",
            str(tmp_path / "val.jsonl"),
            "--demos",
            str(tmp_path / "demos.jsonl"),
            "--output",
            str(out),
            "--batch-size",
            "4",
            "--set",
            "max_length=64",
            "--lr",
            "1e-3",
            "--epochs",
            "1",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]

    metrics = read_prefloop_meta(out)["metrics"]
    assert metrics["steps"] == math.ceil(len(train) / 2 / 4)  # each process saw half
    expected_pairs = sum(
        a < b for r in rankings(val) for a, b in itertools.permutations(r["ranks"], 2)
    )
    assert metrics["val_pairs"] == expected_pairs  # every val pair counted exactly once
    assert metrics["comparisons"] == sum(
        a < b for r in rankings(train) for a, b in itertools.permutations(r["ranks"], 2)
    )
    scored = score_records(str(out), demos)  # one process, bias applied
    assert abs(sum(r["score"] for r in scored) / len(scored)) < 1e-4


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
