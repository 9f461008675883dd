"""A PPO run killed mid-way resumes from its saved state (`prefloop train ppo --resume DIR`)
to the same result as an uninterrupted run; its partial directory is never a checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from tests.trainer.conftest import Run
from trainer import synthetic
from trainer.callbacks import Progress, read_metrics
from trainer.cli import app
from trainer.config import PPOConfig
from trainer.data import write_jsonl
from trainer.meta import STATE_DIR
from trainer.ppo import train_ppo

CONFIG = PPOConfig(
    iterations=4,
    save_every=2,
    rollout_batch_size=8,
    minibatch_size=4,
    ppo_epochs=1,
    lr=1e-3,
    value_lr=1e-3,
    max_new_tokens=8,
    max_length=64,
    adaptive_kl=True,  # the controller's beta must come back too
    kl_target=0.5,
    kl_horizon=50,
    ptx_coef=0.5,
    ptx_batch_size=4,
    missing_eos_penalty=1.0,
)


class Killed(Exception):
    pass


def iteration_rows(out: Path) -> list[dict]:
    return [r for r in read_metrics(out) if "reward" in r and "message" not in r]


def test_a_killed_ppo_run_resumes_to_the_same_result(
    sft_run: Run, rm_run: Run, tmp_path: Path
) -> None:
    write_jsonl(tmp_path / "prompts.jsonl", synthetic.prompts(24, seed=8))
    write_jsonl(tmp_path / "text.jsonl", synthetic.pretrain_texts(16, seed=7))
    paths: dict[str, Any] = {
        "policy": str(sft_run.path),
        "reward_model": str(rm_run.path),
        "prompts": tmp_path / "prompts.jsonl",
        "pretrain_texts": tmp_path / "text.jsonl",
    }
    full = train_ppo(**paths, output_dir=tmp_path / "full", config=CONFIG)

    def kill_in_iteration_3(p: Progress) -> None:
        if p.step == 3:
            raise Killed

    killed = tmp_path / "killed"
    with pytest.raises(Killed):
        train_ppo(**paths, output_dir=killed, config=CONFIG, progress=kill_in_iteration_3)
    # A partial directory: the state of iteration 2, no model, no prefloop.json.
    assert (killed / STATE_DIR / "run.json").is_file()
    assert not (killed / "prefloop.json").exists()
    assert not (killed / "model.safetensors").exists()

    result = CliRunner().invoke(app, ["train", "ppo", "--resume", str(killed)])
    assert result.exit_code == 0, result.output + repr(result.exception)

    ours, theirs = (
        load_file(killed / "model.safetensors"),
        load_file(tmp_path / "full" / "model.safetensors"),
    )
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert torch.allclose(ours[name], theirs[name], atol=1e-6), name
    assert [
        r["message"] for r in read_metrics(killed) if r.get("message", "").startswith("res")
    ] == ["resumed after iteration 2"]
    resumed, uninterrupted = iteration_rows(killed), iteration_rows(tmp_path / "full")
    assert [r["step"] for r in resumed] == [1, 2, 3, 4]  # iteration 3 once, not twice
    for a, b in zip(resumed, uninterrupted, strict=True):
        for key in ("reward", "kl", "kl_coef", "value_loss", "lr"):
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-7), (a["step"], key)
    assert (killed / "prefloop.json").exists() and not (killed / STATE_DIR).exists()
    assert full["pretrain_loss_start"] == pytest.approx(
        read_metrics(killed)[-1]["pretrain_loss_start"]
    )

    # The controller moved beta, and each iteration logs the beta its rewards used.
    assert len({r["kl_coef"] for r in uninterrupted}) > 1
    for r in uninterrupted:
        assert r["non_score_reward"] == pytest.approx(-r["kl_coef"] * r["kl"], rel=1e-4, abs=1e-6)
    assert uninterrupted[-1]["lr"] < uninterrupted[0]["lr"]  # linear decay


def test_resume_refuses_another_setting_or_nothing_to_resume(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", "ppo", "--resume", str(tmp_path)])
    assert result.exit_code == 2 and "nothing to resume" in result.output
    (tmp_path / STATE_DIR).mkdir()
    run = {"config": CONFIG.to_dict(), "policy": "p", "reward_model": "r", "prompts": "x.jsonl"}
    (tmp_path / STATE_DIR / "run.json").write_text(json.dumps(run))
    result = CliRunner().invoke(
        app, ["train", "ppo", "--resume", str(tmp_path), "--set", "kl_coef=0.5"]
    )
    assert result.exit_code == 2
    assert "cannot resume with different settings: kl_coef (saved 0.02, now 0.5)" in result.output
