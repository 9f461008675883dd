"""Step 1 of the method: supervised fine-tuning on labeler demonstrations.

Loss on response tokens only; cosine learning-rate decay with warm-up; residual dropout;
gradient clipping. Each epoch evaluates validation loss and, given a reward model, the mean
RM score of sampled validation responses; the checkpoint with the best validation RM score is
kept (the method: validation loss overfits after ~1 epoch while RM score keeps improving).
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any, cast

import torch
from accelerate.utils import set_seed
from torch.utils.data import DataLoader, Dataset
from transformers import get_cosine_with_min_lr_schedule_with_warmup

from trainer import data
from trainer.callbacks import MetricsLog, ProgressCallback
from trainer.config import SFTConfig
from trainer.models import (
    checkpoint_meta,
    finalize_checkpoint,
    load_policy,
    load_reward_model,
    make_accelerator,
    resolve_model,
    save_checkpoint,
)
from trainer.sample import decode_responses, generate, row_seed
from trainer.score import response_scores, score_pairs


def train_sft(
    model: str,
    train: data.Records,
    output_dir: str | Path,
    val: data.Records | None = None,
    reward_model: str | None = None,
    config: SFTConfig | Mapping[str, Any] | None = None,
    progress: ProgressCallback | None = None,
    meta: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Fine-tune `model` on {"prompt", "completion"} records; returns the final metrics. A
    mapping (or None) as `config` is applied over the defaults that fit `model`."""
    if not isinstance(config, SFTConfig):
        config = SFTConfig.for_model(model, config)
    output_dir = Path(output_dir)
    set_seed(config.seed)
    accelerator = make_accelerator(config)
    train_rows, val_rows = data.demonstrations(train), data.demonstrations(val)
    if not train_rows:
        raise ValueError("no demonstrations to train on")

    policy, tokenizer = load_policy(model, config, residual_dropout=config.residual_dropout)
    collate = partial(data.sft_batch, tokenizer, max_length=config.max_length)
    loader: DataLoader[dict[str, str]] = DataLoader(
        cast("Dataset[dict[str, str]]", train_rows),  # a list is a map-style dataset
        batch_size=config.batch_size,
        shuffle=True,
        collate_fn=collate,
        generator=torch.Generator().manual_seed(config.seed),
    )
    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    policy, optimizer, loader = accelerator.prepare(policy, optimizer, loader)
    steps_per_epoch = math.ceil(len(loader) / config.gradient_accumulation_steps)
    total = config.epochs * steps_per_epoch
    scheduler = get_cosine_with_min_lr_schedule_with_warmup(
        optimizer, int(config.warmup_ratio * total), total, min_lr_rate=config.min_lr_ratio
    )

    rm = None
    if reward_model is not None and val_rows:
        rm_model, rm_tokenizer, rm_bias = load_reward_model(reward_model)
        rm = (rm_model.to(accelerator.device), rm_tokenizer, rm_bias)

    log = MetricsLog(output_dir, progress, accelerator.is_main_process)
    candidate = output_dir / ".candidate"  # best epoch so far; final only when training ends
    best: dict[str, float] | None = None
    step, tokens, first_loss, train_time = 0, 0, None, 0.0
    try:
        for epoch in range(1, config.epochs + 1):
            policy.train()
            start, epoch_losses = time.perf_counter(), []
            for batch in loader:
                with accelerator.accumulate(policy):
                    # Next-token cross-entropy on response tokens (labels are -100 elsewhere).
                    loss = policy(
                        input_ids=batch["input_ids"],
                        attention_mask=batch["attention_mask"],
                        labels=batch["labels"],
                    ).loss
                    accelerator.backward(loss)
                    if accelerator.sync_gradients:
                        accelerator.clip_grad_norm_(params, config.max_grad_norm)
                    optimizer.step()
                    optimizer.zero_grad()
                tokens += int(batch["attention_mask"].sum())
                epoch_losses.append(loss.item())
                if accelerator.sync_gradients:
                    scheduler.step()
                    step += 1
                    first_loss = epoch_losses[0] if first_loss is None else first_loss
                    log.log(
                        step,
                        total,
                        {"loss": loss.item(), "lr": scheduler.get_last_lr()[0], "epoch": epoch},
                    )
            train_time += time.perf_counter() - start

            metrics = {"epoch": epoch, "train_loss": sum(epoch_losses) / len(epoch_losses)}
            metrics.update(evaluate(accelerator, policy, tokenizer, val_rows, rm, config))
            log.log(step, total, metrics, message=f"epoch {epoch} done")
            if best is None or _better(metrics, best):
                best = metrics
                save_checkpoint(accelerator, policy, tokenizer, candidate)

        assert best is not None
        final = {
            **best,
            "best_epoch": best["epoch"],
            "first_loss": first_loss or 0.0,
            "final_train_loss": metrics["train_loss"],
            "steps": step,
            "tokens_per_second": accelerator.reduce(
                torch.tensor(float(tokens), device=accelerator.device)
            ).item()
            / max(train_time, 1e-9),
        }
        finalize_checkpoint(
            accelerator,
            candidate,
            output_dir,
            checkpoint_meta("sft", [resolve_model(model)], config, final, meta),
        )
        return final
    except BaseException:
        if accelerator.is_main_process:
            shutil.rmtree(candidate, ignore_errors=True)
        raise


def _better(metrics: dict[str, float], best: dict[str, float]) -> bool:
    """Best validation RM score, else lowest validation loss, else the latest epoch."""
    if "val_rm_score" in metrics:
        return metrics["val_rm_score"] > best["val_rm_score"]
    if "val_loss" in metrics:
        return metrics["val_loss"] < best["val_loss"]
    return True


@torch.no_grad()
def evaluate(
    accelerator: Any,
    policy: Any,
    tokenizer: Any,
    val_rows: list[dict[str, str]],
    rm: tuple[Any, Any, float] | None,
    config: SFTConfig,
) -> dict[str, float]:
    """Validation loss (response tokens) and, with a reward model, the mean normalised RM
    score of responses sampled for the first `val_samples` validation prompts."""
    if not val_rows:
        return {}
    model = accelerator.unwrap_model(policy)
    model.eval()
    loss_sum = torch.zeros(2, device=accelerator.device)  # summed token loss, token count
    with accelerator.split_between_processes(val_rows) as shard:
        for chunk in data.batches(shard, config.eval_batch_size):
            batch = {
                k: v.to(accelerator.device)
                for k, v in data.sft_batch(tokenizer, list(chunk), config.max_length).items()
            }
            n = int((batch["labels"][:, 1:] != -100).sum())
            with accelerator.autocast():
                loss = model(**batch).loss
            loss_sum += torch.tensor([loss.item() * n, n], device=accelerator.device)
    loss_sum = accelerator.reduce(loss_sum, "sum")
    metrics = {"val_loss": (loss_sum[0] / loss_sum[1].clamp(min=1)).item()}

    if rm is not None and config.val_samples > 0:
        rm_model, rm_tokenizer, rm_bias = rm
        # the RM reads the sampled token ids as they are when it shares the tokenizer
        same_tokens = all(
            rm_tokenizer.get_vocab().get(t) == i for t, i in tokenizer.get_vocab().items()
        )
        prompts = list(enumerate(r["prompt"] for r in val_rows[: config.val_samples]))
        max_prompt = max(1, config.max_length - config.val_max_new_tokens)
        score_sum = torch.zeros(2, device=accelerator.device)
        # Seeded per prompt, so epochs are compared on the same sampling noise.
        with accelerator.split_between_processes(prompts) as shard:
            for chunk in data.batches(shard, config.eval_batch_size):
                ids = [data.encode_prompt(tokenizer, p, max_prompt) for _, p in chunk]
                with accelerator.autocast():
                    seqs, attn, resp_mask = generate(
                        model,
                        tokenizer,
                        ids,
                        config.val_max_new_tokens,
                        config.val_temperature,
                        seeds=[row_seed(config.seed, "val", i) for i, _ in chunk],
                    )
                    if same_tokens:
                        scores = (
                            response_scores(rm_model, seqs, attn, resp_mask) - rm_bias
                        ).tolist()
                    else:
                        texts = decode_responses(
                            tokenizer, seqs[:, -resp_mask.shape[1] :], resp_mask
                        )
                        scores = score_pairs(
                            rm_model,
                            rm_tokenizer,
                            [(p, t) for (_, p), t in zip(chunk, texts, strict=True)],
                            rm_bias,
                            config.eval_batch_size,
                            config.max_length,
                        )
                score_sum += torch.tensor([sum(scores), len(scores)], device=accelerator.device)
        score_sum = accelerator.reduce(score_sum, "sum")
        metrics["val_rm_score"] = (score_sum[0] / score_sum[1].clamp(min=1)).item()
    model.train()
    return metrics
