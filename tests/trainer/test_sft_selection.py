"""SFT keeps the epoch with the best validation RM score (fallback: validation loss)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.trainer.conftest import SFT_CONFIG, Run
from trainer import data, synthetic
from trainer.callbacks import read_metrics
from trainer.models import load_policy
from trainer.sft import train_sft


def val_loss(model_dir: Path, rows: list[dict]) -> float:
    """Validation loss of a saved checkpoint, computed the way the trainer computes it."""
    model, tokenizer = load_policy(str(model_dir), trainable=False)
    total = count = 0.0
    for chunk in data.batches(rows, SFT_CONFIG.eval_batch_size):
        batch = data.sft_batch(tokenizer, list(chunk), SFT_CONFIG.max_length)
        n = int((batch["labels"][:, 1:] != -100).sum())
        with torch.no_grad():
            total += model(**batch).loss.item() * n
        count += n
    return total / count


def test_best_val_rm_score_epoch_is_the_checkpoint(tiny: Path, rm_run: Run, tmp_path: Path) -> None:
    val = synthetic.demonstrations(16, seed=11)
    out = tmp_path / "sft"
    metrics = train_sft(
        str(tiny),
        synthetic.demonstrations(96, seed=12),
        out,
        val=val,
        reward_model=str(rm_run.path),
        config=SFT_CONFIG.replace(epochs=3),
    )
    epochs = [r for r in read_metrics(out) if "val_rm_score" in r]
    assert len(epochs) == 3
    best = max(epochs, key=lambda r: r["val_rm_score"])
    assert metrics["best_epoch"] == best["epoch"]
    assert metrics["val_rm_score"] == pytest.approx(best["val_rm_score"])
    # The saved weights are that epoch's: they reproduce its logged validation loss.
    assert val_loss(out, val) == pytest.approx(best["val_loss"], abs=1e-4)


def test_without_reward_model_the_lowest_val_loss_epoch_is_kept(sft_run: Run, demos: dict) -> None:
    epochs = [r for r in read_metrics(sft_run.path) if "val_loss" in r]
    best = min(epochs, key=lambda r: r["val_loss"])
    assert sft_run.metrics["best_epoch"] == best["epoch"]
    assert val_loss(sft_run.path, demos["val"]) == pytest.approx(best["val_loss"], abs=1e-4)
