"""On synthetic data with a hidden preference rule: SFT learns, the RM learns the rule, the
RM bias centres demonstrations, PPO raises the RM score, PPO-ptx keeps pre-training loss down."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch

from tests.trainer.conftest import Run
from trainer import synthetic
from trainer.callbacks import read_metrics
from trainer.config import PPOConfig, SampleConfig
from trainer.models import load_policy, load_reward_model, read_prefloop_meta
from trainer.ppo import ptx_lm_batch, train_ppo
from trainer.sample import sample_completions
from trainer.score import score_pairs, score_records

HELD_OUT_PROMPTS = [p["prompt"] for p in synthetic.prompts(24, seed=99)]


def test_sft_loss_falls_far_below_its_start(sft_run: Run) -> None:
    log = read_metrics(sft_run.path)
    first = log[0]["loss"]
    assert first > 5.0  # an untrained model on a 768-token vocabulary
    last_epoch = [r for r in log if "val_loss" in r][-1]
    assert last_epoch["train_loss"] < 0.55 * first
    assert last_epoch["val_loss"] < 0.55 * first
    assert sft_run.metrics["first_loss"] == pytest.approx(first)


def test_rm_learns_the_hidden_rule_on_held_out_rankings(rm_run: Run) -> None:
    assert rm_run.metrics["val_accuracy"] > 0.85
    assert any(k.startswith("val_accuracy_k") for k in rm_run.metrics)  # reported by K
    # Independently of the trainer's metric: score a fresh held-out set and count pairs.
    rankings = synthetic.rankings(40, seed=123)
    records = [
        {"prompt": r["prompt"], "completion": c["text"], "rank": c["rank"], "id": i}
        for i, r in enumerate(rankings)
        for c in r["completions"]
    ]
    scored = score_records(str(rm_run.path), records)
    correct = total = 0
    for _, group in itertools.groupby(scored, key=lambda r: r["id"]):
        for a, b in itertools.permutations(list(group), 2):
            if a["rank"] < b["rank"]:
                total += 1
                correct += a["score"] > b["score"]
    assert total > 200
    assert correct / total > 0.85


def test_demonstrations_average_zero_after_normalisation(rm_run: Run, demos: dict) -> None:
    bias = read_prefloop_meta(rm_run.path)["reward_bias"]
    assert bias == pytest.approx(rm_run.metrics["reward_bias"])
    scored = score_records(str(rm_run.path), demos["val"])
    assert abs(sum(r["score"] for r in scored) / len(scored)) < 1e-4
    # The raw scores (no bias) average to the stored bias: normalisation did the centring.
    model, tokenizer, _ = load_reward_model(str(rm_run.path))
    raw = score_pairs(model, tokenizer, [(d["prompt"], d["completion"]) for d in demos["val"]])
    assert sum(raw) / len(raw) == pytest.approx(bias, abs=1e-4)


def mean_rm_score(model: Path, rm: Path) -> float:
    records = sample_completions(
        str(model),
        HELD_OUT_PROMPTS,
        4,
        SampleConfig(max_new_tokens=16, max_length=64, batch_size=48),
    )
    scored = score_records(str(rm), records)
    return sum(r["score"] for r in scored) / len(scored)


PPO_CONFIG = PPOConfig(
    iterations=12,
    rollout_batch_size=32,
    minibatch_size=16,
    ppo_epochs=2,
    lr=1e-3,
    value_lr=1e-3,
    max_new_tokens=16,
    max_length=64,
    ptx_batch_size=8,
    # a response cut at max_new_tokens is scored where it stops, off the RM's training data
    missing_eos_penalty=2.0,
)


@pytest.fixture(scope="module")
def ppo_runs(sft_run: Run, rm_run: Run, tmp_path_factory: pytest.TempPathFactory) -> dict:
    runs = {}
    for gamma in (0.0, 1.0):
        out = tmp_path_factory.mktemp(f"ppo-gamma{gamma}")
        metrics = train_ppo(
            str(sft_run.path),
            str(rm_run.path),
            synthetic.prompts(128, seed=8),
            out,
            pretrain_texts=synthetic.pretrain_texts(128, seed=7),
            config=PPO_CONFIG.replace(ptx_coef=gamma),
        )
        runs[gamma] = Run(out, metrics)
    return runs


def test_ppo_raises_rm_score_over_sft_with_positive_finite_kl(
    ppo_runs: dict, sft_run: Run, rm_run: Run
) -> None:
    before = mean_rm_score(sft_run.path, rm_run.path)
    after = mean_rm_score(ppo_runs[0.0].path, rm_run.path)
    assert after > before + 0.5, (before, after)
    log = read_metrics(ppo_runs[0.0].path)
    kls = [r["kl"] for r in log if "kl" in r]
    assert len(kls) >= PPO_CONFIG.iterations
    assert all(math.isfinite(k) for k in kls)
    assert kls[0] == pytest.approx(0.0, abs=1e-4)  # first rollout: policy == SFT reference
    assert all(k > 0 for k in kls[len(kls) // 2 :])  # then it moves away, by a finite amount
    for key in (
        "reward",
        "entropy",
        "policy_loss",
        "value_loss",
        "clip_fraction",
        "response_length",
        "time_generation",
        "time_optimization",
    ):
        assert key in log[-2]


def lm_loss(model_dir: Path, texts: list[dict]) -> float:
    model, tokenizer = load_policy(str(model_dir), trainable=False)
    batch = ptx_lm_batch(tokenizer, [t["text"] for t in texts], PPO_CONFIG, "cpu")
    with torch.no_grad():
        return model(**batch).loss.item()


def test_ptx_keeps_pretraining_loss_lower_than_plain_ppo(ppo_runs: dict) -> None:
    plain, ptx = ppo_runs[0.0], ppo_runs[1.0]
    assert ptx.metrics["pretrain_loss"] < plain.metrics["pretrain_loss"]
    held_out = synthetic.pretrain_texts(64, seed=77)
    assert lm_loss(ptx.path, held_out) < lm_loss(plain.path, held_out)
    assert "ptx_loss" in read_metrics(ptx.path)[0]
