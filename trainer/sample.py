"""Sampling K completions per prompt from a checkpoint (batched, KV cache), for new ranking
tasks and evaluation. `generate` is shared with SFT validation and PPO rollouts.

Sampling is exactly softmax(logits / temperature) (top-p optional, sampling only), whatever
the checkpoint's `generation_config.json` says: `repetition_penalty`, `no_repeat_ngram_size`,
`min_new_tokens`, `suppress_tokens` ... would otherwise change the distribution PPO computes
log-probabilities of. Each row draws its noise from its own seeded generator (the Gumbel-max
trick: argmax(logits / T + Gumbel noise) is a sample of softmax(logits / T)), so a prompt's
samples do not depend on the batch it was generated in.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList, TopPLogitsWarper

from trainer.callbacks import MetricsLog, ProgressCallback
from trainer.config import SampleConfig
from trainer.data import batches, encode_prompt, pad
from trainer.models import load_policy, make_accelerator


def row_seed(*parts: object) -> int:
    """A stable 63-bit seed from any parts (run seed, iteration, prompt index ...)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class SeededSampler(LogitsProcessor):
    """Gumbel-max sampling with one generator per row: with greedy decoding on top, each row
    gets a sample of softmax(logits / temperature) (restricted to the top-p nucleus when
    top_p < 1) that depends only on its own seed."""

    def __init__(self, seeds: list[int], temperature: float, top_p: float, device: Any) -> None:
        self.generators = [torch.Generator(device=device).manual_seed(s) for s in seeds]
        self.temperature = temperature
        self.top_p = TopPLogitsWarper(top_p) if top_p < 1.0 else None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        logits = scores.float() / self.temperature
        if self.top_p is not None:
            logits = self.top_p(input_ids, logits)
        uniform = torch.stack(
            [
                torch.rand(logits.shape[1], generator=g, device=logits.device)
                for g in self.generators
            ]
        )
        noisy = logits - torch.log(-torch.log(uniform))  # + Gumbel(0, 1) noise
        return noisy  # type: ignore[return-value]  # a float tensor, as HF's processors return


@torch.no_grad()
def generate(
    model: Any,
    tokenizer: Any,
    prompt_ids: list[list[int]],
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seeds: list[int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sample one response per prompt (greedy when temperature is 0). Returns (sequences,
    attention_mask, response_mask): sequences are left-padded prompts followed by responses;
    response_mask marks response tokens up to and including the first EOS. `seeds` (one per
    prompt) make each row's sample reproducible; without them they are drawn from torch's
    global generator."""
    device = next(model.parameters()).device
    ids, mask = pad(prompt_ids, tokenizer.pad_token_id, side="left")
    ids, mask = ids.to(device), mask.to(device)
    processors = LogitsProcessorList()
    if temperature > 0:
        if seeds is None:
            seeds = torch.randint(0, 2**62, (len(prompt_ids),)).tolist()
        processors.append(SeededSampler(seeds, temperature, top_p, device))
    # Only these settings: nothing from the checkpoint's generation_config.json applies.
    clean = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,  # argmax over the sampler's noisy logits
        num_beams=1,
        use_cache=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    saved, model.generation_config = model.generation_config, clean
    try:
        sequences = model.generate(
            input_ids=ids,
            attention_mask=mask,
            generation_config=clean,
            logits_processor=processors,
        )
    finally:
        model.generation_config = saved
    response = sequences[:, ids.shape[1] :]
    if response.shape[1] == 0:  # nothing generated (cannot happen with max_new_tokens >= 1)
        response = torch.full((len(prompt_ids), 1), tokenizer.eos_token_id, device=device)
        sequences = torch.cat([ids, response], dim=1)
    response_mask = response_mask_until_eos(response, tokenizer.eos_token_id)
    return sequences, torch.cat([mask, response_mask], dim=1), response_mask


def response_mask_until_eos(response: torch.Tensor, eos_id: int) -> torch.Tensor:
    """1 for tokens up to and including the first EOS of each row (works when pad == EOS)."""
    is_eos = (response == eos_id).long()
    eos_before = is_eos.cumsum(1) - is_eos  # EOS tokens strictly before each position
    return (eos_before == 0).long()


def ends_with_eos(response: torch.Tensor, response_mask: torch.Tensor, eos_id: int) -> torch.Tensor:
    """True for responses that finished with EOS, False for those cut at max_new_tokens."""
    last = (response_mask.sum(1) - 1).clamp(min=0)
    return response.gather(1, last[:, None]).squeeze(1) == eos_id


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
    config: SampleConfig | dict[str, Any] | None = None,
    progress: ProgressCallback | None = None,
) -> list[dict[str, str]]:
    """K completions per prompt as {"prompt", "completion", "model"} records, grouped by
    prompt in input order. Completion j of prompt i depends only on (seed, i, j), not on
    the batch size."""
    if not isinstance(config, SampleConfig):
        config = SampleConfig.for_model(model, config)
    accelerator = make_accelerator(config)
    policy, tokenizer = load_policy(model, trainable=False)
    policy.to(accelerator.device)
    log = MetricsLog(None, progress)

    max_prompt = max(1, config.max_length - config.max_new_tokens)
    flat = [(i, j, p) for i, p in enumerate(prompts) for j in range(k)]
    total = -(-len(flat) // config.batch_size)
    records: list[dict[str, str]] = []
    for step, chunk in enumerate(batches(flat, config.batch_size), 1):
        prompt_ids = [encode_prompt(tokenizer, p, max_prompt) for _, _, p in chunk]
        with accelerator.autocast():
            sequences, _, response_mask = generate(
                policy,
                tokenizer,
                prompt_ids,
                config.max_new_tokens,
                config.temperature,
                config.top_p,
                seeds=[row_seed(config.seed, i, j) for i, j, _ in chunk],
            )
        width = sequences.shape[1] - response_mask.shape[1]
        texts = decode_responses(tokenizer, sequences[:, width:], response_mask)
        records += [
            {"prompt": p, "completion": t, "model": str(model)}
            for (_, _, p), t in zip(chunk, texts, strict=True)
        ]
        log.log(step, total, {"completions": len(records)})
    return records
