"""Sampling K completions per prompt from a checkpoint (batched, KV cache), for new ranking
tasks and evaluation. `generate` is shared with SFT validation and PPO rollouts."""

from __future__ import annotations

from typing import Any

import torch
from accelerate.utils import set_seed

from trainer.callbacks import MetricsLog, ProgressCallback
from trainer.config import SampleConfig
from trainer.data import batches, encode_prompt, pad
from trainer.models import load_policy, make_accelerator


@torch.no_grad()
def generate(
    model: Any,
    tokenizer: Any,
    prompt_ids: list[list[int]],
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sample one response per prompt. Returns (sequences, attention_mask, response_mask):
    sequences are left-padded prompts followed by responses; response_mask marks response
    tokens up to and including the first EOS."""
    device = next(model.parameters()).device
    ids, mask = pad(prompt_ids, tokenizer.pad_token_id, side="left")
    ids, mask = ids.to(device), mask.to(device)
    # top_k=0: sample from the full distribution, the one PPO computes log-probs of.
    sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0}
    sequences = model.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=max_new_tokens,
        use_cache=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **(sampling if temperature > 0 else {"do_sample": False}),
    )
    response = sequences[:, ids.shape[1] :]
    response_mask = response_mask_until_eos(response, tokenizer.eos_token_id)
    return sequences, torch.cat([mask, response_mask], dim=1), response_mask


def response_mask_until_eos(response: torch.Tensor, eos_id: int) -> torch.Tensor:
    """1 for tokens up to and including the first EOS of each row (works when pad == EOS)."""
    is_eos = (response == eos_id).long()
    eos_before = is_eos.cumsum(1) - is_eos  # EOS tokens strictly before each position
    return (eos_before == 0).long()


def decode_responses(
    tokenizer: Any, response: torch.Tensor, response_mask: torch.Tensor
) -> list[str]:
    return [
        tokenizer.decode(row[m.bool()], skip_special_tokens=True)
        for row, m in zip(response, response_mask, strict=True)
    ]


def sample_completions(
    model: str,
    prompts: list[str],
    k: int,
    config: SampleConfig | None = None,
    progress: ProgressCallback | None = None,
) -> list[dict[str, str]]:
    """K completions per prompt as {"prompt", "completion", "model"} records, grouped by
    prompt in input order."""
    config = config or SampleConfig()
    set_seed(config.seed)
    accelerator = make_accelerator(config)
    policy, tokenizer = load_policy(model, trainable=False)
    policy.to(accelerator.device)
    log = MetricsLog(None, progress)

    max_prompt = max(1, config.max_length - config.max_new_tokens)
    flat = [p for p in prompts for _ in range(k)]
    total = -(-len(flat) // config.batch_size)
    records: list[dict[str, str]] = []
    for step, chunk in enumerate(batches(flat, config.batch_size), 1):
        prompt_ids = [encode_prompt(tokenizer, p, max_prompt) for p in chunk]
        with accelerator.autocast():
            sequences, _, response_mask = generate(
                policy,
                tokenizer,
                prompt_ids,
                config.max_new_tokens,
                config.temperature,
                config.top_p,
            )
        width = sequences.shape[1] - response_mask.shape[1]
        texts = decode_responses(tokenizer, sequences[:, width:], response_mask)
        records += [
            {"prompt": p, "completion": t, "model": str(model)}
            for p, t in zip(chunk, texts, strict=True)
        ]
        log.log(step, total, {"completions": len(records)})
    return records
