"""Step 2 of the method: a reward model from rankings of K completions.

One batch element is one prompt with all its K completions (K may differ between prompts in a
batch): the K sequences go through one forward, then every pair with rank_i better than
rank_j contributes -log sigmoid(r_i - r_j). This needs K forward sequences per prompt instead
of 2 per comparison, and keeps a prompt's correlated comparisons together (no overfitting
after one pass). After training, the bias that makes labeler demonstrations score 0 on
average is stored in prefloop.json; scoring applies it.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from accelerate.utils import set_seed
from torch.utils.data import DataLoader, Dataset
from transformers import get_cosine_with_min_lr_schedule_with_warmup

from trainer import data
from trainer.callbacks import MetricsLog, ProgressCallback
from trainer.config import RMConfig
from trainer.models import (
    checkpoint_meta,
    load_reward_model,
    make_accelerator,
    resolve_model,
    save_checkpoint,
    sequence_scores,
)
from trainer.score import score_pairs


def rank_loss(
    rewards: torch.Tensor, ranks: torch.Tensor, group: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The method's RM loss for a K-way batch (rows = completions, `group` = their prompt):

        loss = - 1/C(K,2) * sum_{(y_w, y_l)} log sigmoid(r(x, y_w) - r(x, y_l)),  per prompt

    summed over the prompt's pairs with rank_w < rank_l (tied pairs contribute nothing),
    divided by C(K,2), then averaged over prompts. Also returns per-pair statistics."""
    same_prompt = group[:, None] == group[None, :]
    better = same_prompt & (ranks[:, None] < ranks[None, :])  # better[w, l]: y_w preferred
    diff = rewards[:, None] - rewards[None, :]  # r(x, y_w) - r(x, y_l)
    pair_loss = -F.logsigmoid(diff) * better
    n_prompts = int(group.max()) + 1
    per_prompt = torch.zeros(n_prompts, device=rewards.device).index_add(0, group, pair_loss.sum(1))
    k = torch.bincount(group, minlength=n_prompts).float()
    loss = (per_prompt / (k * (k - 1) / 2)).mean()
    stats = {
        "pairs": better.sum(),
        "correct": (better & (diff > 0)).sum(),
        "log_loss_sum": pair_loss.sum().detach(),
    }
    return loss, stats


def train_reward_model(
    model: str,
    train: data.Records,
    output_dir: str | Path,
    val: data.Records | None = None,
    demonstrations: data.Records | None = None,
    config: RMConfig | Mapping[str, Any] | None = None,
    progress: ProgressCallback | None = None,
    meta: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Train a reward model from an SFT (or any causal LM) checkpoint on ranking records;
    returns the final metrics (validation pairwise accuracy / log loss overall and by K). A
    mapping (or None) as `config` is applied over the defaults that fit `model`."""
    if not isinstance(config, RMConfig):
        config = RMConfig.for_model(model, config)
    output_dir = Path(output_dir)
    set_seed(config.seed)
    accelerator = make_accelerator(config)
    train_rows, val_rows = data.rankings(train), data.rankings(val)
    demo_rows = data.demonstrations(demonstrations)
    if not train_rows:
        raise ValueError("no rankings with at least two distinct ranks to train on")

    rm, tokenizer, _ = load_reward_model(
        model, config, trainable=True, disable_dropout=config.disable_dropout, distinct_pad=True
    )
    collate = partial(data.ranking_batch, tokenizer, max_length=config.max_length)
    loader: DataLoader[dict[str, Any]] = DataLoader(
        cast("Dataset[dict[str, Any]]", train_rows),  # a list is a map-style dataset
        batch_size=config.batch_size,
        shuffle=True,
        collate_fn=collate,
        generator=torch.Generator().manual_seed(config.seed),
    )
    params = [p for p in rm.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    rm, optimizer, loader = accelerator.prepare(rm, optimizer, loader)
    total = config.epochs * math.ceil(len(loader) / config.gradient_accumulation_steps)
    scheduler = get_cosine_with_min_lr_schedule_with_warmup(
        optimizer, int(config.warmup_ratio * total), total, min_lr_rate=config.min_lr_ratio
    )

    log = MetricsLog(output_dir, progress, accelerator.is_main_process)
    step, comparisons, first_loss = 0, 0, None
    start = time.perf_counter()  # training wall time: data loading, steps and logging
    for epoch in range(1, config.epochs + 1):
        rm.train()
        for batch in loader:
            with accelerator.accumulate(rm):
                # K forward sequences per prompt: all completions of the batch in one forward.
                rewards = sequence_scores(rm, batch["input_ids"], batch["attention_mask"])
                loss, stats = rank_loss(rewards, batch["ranks"], batch["group"])
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(params, config.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad()
            comparisons += int(stats["pairs"])
            first_loss = loss.item() if first_loss is None else first_loss
            if accelerator.sync_gradients:
                scheduler.step()
                step += 1
                log.log(
                    step,
                    total,
                    {
                        "loss": loss.item(),
                        "lr": scheduler.get_last_lr()[0],
                        "epoch": epoch,
                        "accuracy": (stats["correct"] / stats["pairs"].clamp(min=1)).item(),
                        "comparisons_per_second": comparisons / (time.perf_counter() - start),
                    },
                )

    train_time = time.perf_counter() - start
    comparisons = int(
        accelerator.reduce(torch.tensor(comparisons, device=accelerator.device), "sum")
    )  # over all processes
    metrics: dict[str, float] = {
        "first_loss": first_loss or 0.0,
        "final_loss": loss.item(),
        "steps": step,
        "comparisons": comparisons,
        "comparisons_per_second": comparisons / train_time,
        "train_seconds": train_time,
    }
    metrics.update(evaluate_rankings(accelerator, rm, tokenizer, val_rows, config))

    # Normalise: the loss ignores a shift of r, so choose the bias that makes labeler
    # demonstrations score 0 on average (without demonstrations: the ranked completions).
    if demo_rows:
        pairs, source = [(d["prompt"], d["completion"]) for d in demo_rows], "demonstrations"
    else:
        pairs = [(r["prompt"], t) for r in train_rows for t in r["texts"]]
        source = "ranked_completions"
    bias = mean_score(accelerator, rm, tokenizer, pairs, config)
    metrics.update(reward_bias=bias)
    # also in config.json, for tools that read the checkpoint without prefloop.json
    unwrapped = accelerator.unwrap_model(rm)
    inner = unwrapped.get_base_model() if hasattr(unwrapped, "get_base_model") else unwrapped
    inner.config.reward_bias = bias
    log.log(step, total, metrics, message="reward model trained")
    save_checkpoint(
        accelerator,
        rm,
        tokenizer,
        output_dir,
        checkpoint_meta(
            "rm",
            [resolve_model(model)],
            config,
            metrics,
            {**(meta or {}), "reward_bias": bias, "reward_bias_source": source},
        ),
    )
    return metrics


@torch.no_grad()
def mean_score(
    accelerator: Any, rm: Any, tokenizer: Any, pairs: list[tuple[str, str]], config: RMConfig
) -> float:
    """Mean raw r(x, y) over (prompt, completion) pairs, split across processes."""
    model = accelerator.unwrap_model(rm)
    model.eval()
    total = torch.zeros(2, device=accelerator.device, dtype=torch.float64)
    with accelerator.split_between_processes(pairs) as shard, accelerator.autocast():
        scores = score_pairs(
            model, tokenizer, list(shard), 0.0, config.eval_batch_size, config.max_length
        )
        total += torch.tensor(
            [sum(scores), len(scores)], device=accelerator.device, dtype=torch.float64
        )
    total = accelerator.reduce(total, "sum")
    return float((total[0] / total[1].clamp(min=1)).item())


@torch.no_grad()
def evaluate_rankings(
    accelerator: Any, rm: Any, tokenizer: Any, rows: list[dict[str, Any]], config: RMConfig
) -> dict[str, float]:
    """Pairwise accuracy (r_w > r_l) and log loss (-log sigmoid(r_w - r_l)) over all
    untied pairs of the validation rankings, overall and by K."""
    if not rows:
        return {}
    model = accelerator.unwrap_model(rm)
    model.eval()
    by_k: dict[int, torch.Tensor] = defaultdict(lambda: torch.zeros(3, dtype=torch.float64))
    with accelerator.split_between_processes(rows) as shard:
        for chunk in data.batches(shard, config.eval_batch_size):
            for row in chunk:  # per prompt, to attribute pairs to its K
                batch = data.ranking_batch(tokenizer, [row], config.max_length)
                with accelerator.autocast():
                    rewards = sequence_scores(
                        model,
                        batch["input_ids"].to(accelerator.device),
                        batch["attention_mask"].to(accelerator.device),
                    )
                _, s = rank_loss(
                    rewards, batch["ranks"].to(rewards.device), batch["group"].to(rewards.device)
                )
                by_k[len(row["texts"])] += torch.tensor(
                    [s["pairs"].item(), s["correct"].item(), s["log_loss_sum"].item()],
                    dtype=torch.float64,
                )
    ks = sorted(set(accelerator.gather_for_metrics(sorted(by_k), use_gather_object=True)))
    totals = torch.stack([by_k[k] for k in ks]).to(accelerator.device)
    totals = accelerator.reduce(totals, "sum").cpu()
    metrics = {}
    for k, (pairs, correct, log_loss) in zip(ks, totals.tolist(), strict=True):
        metrics[f"val_accuracy_k{k}"] = correct / max(pairs, 1)
        metrics[f"val_log_loss_k{k}"] = log_loss / max(pairs, 1)
    pairs, correct, log_loss = totals.sum(0).tolist()
    metrics.update(
        val_accuracy=correct / max(pairs, 1), val_log_loss=log_loss / max(pairs, 1), val_pairs=pairs
    )
    model.train()
    return metrics
