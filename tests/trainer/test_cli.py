"""Smoke tests of the shell entry points through typer's CliRunner: the whole loop from JSONL
files, configured by YAML plus flags."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from trainer import synthetic
from trainer.cli import app
from trainer.data import read_jsonl, write_jsonl
from trainer.models import read_prefloop_meta

runner = CliRunner()


def invoke(*args: object) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def test_cli_runs_the_loop_from_files(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "demos.jsonl", synthetic.demonstrations(48))
    write_jsonl(tmp_path / "rankings.jsonl", synthetic.rankings(16))
    write_jsonl(tmp_path / "prompts.jsonl", synthetic.prompts(8))
    write_jsonl(tmp_path / "pretrain.jsonl", synthetic.pretrain_texts(16))
    sft_yaml = tmp_path / "sft.yaml"  # paths and config fields in one file
    sft_yaml.write_text(
        yaml.safe_dump(
            {
                "model": "tiny",
                "data": str(tmp_path / "demos.jsonl"),
                "output": str(tmp_path / "sft"),
                "epochs": 1,
                "batch_size": 16,
                "max_length": 64,
            }
        )
        + "lr: 1e-3\n"  # YAML 1.1 reads this as the string "1e-3"
    )

    invoke("train", "sft", "--config", sft_yaml, "--epochs", 2)  # the flag beats the YAML
    hyper = read_prefloop_meta(tmp_path / "sft")["hyperparameters"]
    assert hyper["epochs"] == 2 and hyper["lr"] == 1e-3
    assert len(read_jsonl(tmp_path / "sft" / "metrics.jsonl")) >= 6

    out = invoke(
        "train",
        "rm",
        "--model",
        tmp_path / "sft",
        "--data",
        tmp_path / "rankings.jsonl",
        "--demos",
        tmp_path / "demos.jsonl",
        "--output",
        tmp_path / "rm",
        "--set",
        "max_length=64",
        "--batch-size",
        8,
    )
    assert "reward_bias" in json.loads(out[out.index("{") :])
    assert read_prefloop_meta(tmp_path / "rm")["kind"] == "rm"

    invoke(
        "train",
        "ppo",
        "--policy",
        tmp_path / "sft",
        "--reward-model",
        tmp_path / "rm",
        "--prompts",
        tmp_path / "prompts.jsonl",
        "--pretrain-data",
        tmp_path / "pretrain.jsonl",
        "--ptx-coef",
        0.5,
        "--kl-coef",
        0.05,
        "--iterations",
        2,
        "--output",
        tmp_path / "ppo",
        "--set",
        "rollout_batch_size=4",
        "--set",
        "minibatch_size=4",
        "--set",
        "max_new_tokens=8",
        "--set",
        "max_length=64",
        "--set",
        "value_lr=1e-4",  # crashed deep in torch: a str times a float
    )
    hyper = read_prefloop_meta(tmp_path / "ppo")["hyperparameters"]
    assert (hyper["ptx_coef"], hyper["kl_coef"], hyper["iterations"]) == (0.5, 0.05, 2)
    assert hyper["value_lr"] == 1e-4

    invoke(
        "sample",
        "--model",
        tmp_path / "ppo",
        "--prompts",
        tmp_path / "prompts.jsonl",
        "--k",
        3,
        "--output",
        tmp_path / "samples.jsonl",
        "--max-new-tokens",
        8,
    )
    samples = read_jsonl(tmp_path / "samples.jsonl")
    assert len(samples) == 8 * 3
    assert set(samples[0]) == {"prompt", "completion", "model"}

    invoke(
        "score",
        "--reward-model",
        tmp_path / "rm",
        "--input",
        tmp_path / "samples.jsonl",
        "--output",
        tmp_path / "scored.jsonl",
    )
    scored = read_jsonl(tmp_path / "scored.jsonl")
    assert len(scored) == 24 and all(isinstance(r["score"], float) for r in scored)


def test_cli_reports_bad_config_and_missing_paths(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "train",
            "sft",
            "--model",
            "tiny",
            "--data",
            "x.jsonl",
            "--output",
            str(tmp_path),
            "--set",
            "epochz=3",
        ],
    )
    assert result.exit_code == 2 and "epochz" in result.output
    result = runner.invoke(app, ["train", "rm", "--data", "x.jsonl", "--output", str(tmp_path)])
    assert result.exit_code == 2 and "--model" in result.output
    result = runner.invoke(
        app,
        ["train", "ppo", "--policy", "tiny", "--reward-model", "tiny", "--prompts", "x.jsonl",
         "--output", str(tmp_path), "--set", "value_lr=fast"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: value_lr: Input should be a valid number, unable to parse string as a number "
        "(got 'fast')"
    ]


def test_help_says_which_defaults_apply_to_which_models() -> None:
    for kind, preset_setting in (("sft", "lr 0.003 (method: 1e-05)"), ("ppo", "kl_coef 0.05")):
        result = runner.invoke(app, ["train", kind, "--help"])
        assert result.exit_code == 0
        text = " ".join(result.output.split())  # rich wraps the help text
        assert "Defaults are the method's (for pretrained models of 1.3B+ parameters)" in text
        assert "the 'tiny' preset and models trained from it use" in text
        assert preset_setting in text
