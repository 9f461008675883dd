"""Scoring (prompt, completion) records with a reward model, its normalising bias applied."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from trainer.config import SampleConfig
from trainer.data import batches, load_records, pair_batch
from trainer.models import load_reward_model, make_accelerator, sequence_scores


@torch.no_grad()
def score_pairs(
    reward_model: Any,
    tokenizer: Any,
    pairs: list[tuple[str, str]],
    bias: float = 0.0,
    batch_size: int = 16,
    max_length: int = 512,
) -> list[float]:
    """r(x, y) - bias for each (prompt, completion)."""
    device = next(reward_model.parameters()).device
    scores: list[float] = []
    for chunk in batches(pairs, batch_size):
        batch = pair_batch(tokenizer, list(chunk), max_length)
        r = sequence_scores(
            reward_model, batch["input_ids"].to(device), batch["attention_mask"].to(device)
        )
        scores += (r - bias).tolist()
    return scores


def score_records(
    reward_model: str,
    records: Iterable[dict[str, Any]] | str,
    batch_size: int = 16,
    config: SampleConfig | None = None,
) -> list[dict[str, Any]]:
    """Copies of the {"prompt", "completion", ...} records with a `score` added (bias
    applied, so labeler demonstrations average 0)."""
    config = config or SampleConfig()
    rows = load_records(records)
    accelerator = make_accelerator(config)
    model, tokenizer, bias = load_reward_model(reward_model)
    model.to(accelerator.device)
    pairs = [(r["prompt"], r["completion"]) for r in rows]
    with accelerator.autocast():
        scores = score_pairs(model, tokenizer, pairs, bias, batch_size, config.max_length)
    return [{**r, "score": s} for r, s in zip(rows, scores, strict=True)]
