"""Session fixtures for the trainer tests: the tiny preset, and SFT / RM checkpoints trained
once on synthetic data with a hidden preference rule (trainer.synthetic)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from trainer import synthetic
from trainer.config import RMConfig, SFTConfig

torch.set_num_threads(1)  # the CI box is small and shared


@pytest.fixture(scope="session", autouse=True)
def trainer_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point the "tiny" preset cache at a temporary directory for the whole session."""
    cache = tmp_path_factory.mktemp("trainer-cache")
    old = os.environ.get("PREFLOOP_TRAINER_CACHE")
    os.environ["PREFLOOP_TRAINER_CACHE"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("PREFLOOP_TRAINER_CACHE", None)
    else:
        os.environ["PREFLOOP_TRAINER_CACHE"] = old


@pytest.fixture(scope="session")
def tiny(trainer_cache: Path) -> Path:
    from trainer.models import resolve_model

    return Path(resolve_model("tiny"))


SFT_CONFIG = SFTConfig(
    epochs=4,
    lr=3e-3,
    batch_size=16,
    residual_dropout=0.0,
    max_length=64,
    warmup_ratio=0.1,
    val_samples=16,
    val_max_new_tokens=12,
)
RM_CONFIG = RMConfig(epochs=2, lr=1e-3, batch_size=8, max_length=64, warmup_ratio=0.1)


@dataclass
class Run:
    path: Path
    metrics: dict[str, float]


@pytest.fixture(scope="session")
def demos() -> dict[str, list[dict]]:
    return {
        "train": synthetic.demonstrations(384, seed=1),
        "val": synthetic.demonstrations(32, seed=2),
    }


@pytest.fixture(scope="session")
def sft_run(tiny: Path, demos: dict, tmp_path_factory: pytest.TempPathFactory) -> Run:
    from trainer.sft import train_sft

    out = tmp_path_factory.mktemp("sft")
    metrics = train_sft(
        str(tiny),
        demos["train"],
        out,
        val=demos["val"],
        config=SFT_CONFIG,
        meta={"data_snapshot": "synthetic-demos"},
    )
    return Run(out, metrics)


@pytest.fixture(scope="session")
def rm_run(sft_run: Run, demos: dict, tmp_path_factory: pytest.TempPathFactory) -> Run:
    from trainer.reward import train_reward_model

    out = tmp_path_factory.mktemp("rm")
    metrics = train_reward_model(
        str(sft_run.path),
        synthetic.rankings(300, seed=3),
        out,
        val=synthetic.rankings(60, seed=4),
        demonstrations=demos["val"],
        config=RM_CONFIG,
    )
    return Run(out, metrics)
