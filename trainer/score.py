"""Scoring with a reward model, its normalising bias applied: (prompt, completion) records
(tokenised as in training), or a policy's generated token ids as they are (PPO, SFT
selection), read at each response's last token."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from trainer.config import SampleConfig
from trainer.data import Records, batches, encode_example, load_records, pad, pair_batch
from trainer.models import (
    load_policy,
    load_reward_model,
    make_accelerator,
    sequence_scores,
    token_scores,
)


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


@torch.no_grad()
def response_scores(
    reward_model: Any,
    sequences: torch.Tensor,
    attention_mask: torch.Tensor,
    response_mask: torch.Tensor,
) -> torch.Tensor:
    """Raw r(x, y) of generated sequences (left-padded prompt, response, padding), read at
    each response's last token: EOS when it finished, else the last token generated. The RM
    sees the policy's own token ids: decoding and re-encoding would hand it other tokens
    (non-canonical BPE splits, broken UTF-8, dropped special tokens) and an EOS that a cut
    response never produced."""
    position_ids = (attention_mask.cumsum(1) - 1).clamp(min=0)
    scores = token_scores(reward_model, sequences, attention_mask, position_ids)
    prompt_width = sequences.shape[1] - response_mask.shape[1]
    last = prompt_width + (response_mask.sum(1) - 1).clamp(min=0)
    return scores.gather(1, last[:, None]).squeeze(1)


def score_records(
    reward_model: str,
    records: Records,
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


@torch.no_grad()
def sequence_logprobs(
    model: Any, tokenizer: Any, pairs: list[tuple[str, str]], batch_size: int, max_length: int
) -> list[float]:
    """log pi(y | x) of each (prompt, completion): the sum over the completion's tokens (and
    its EOS) of log pi(y_t | x, y_<t)."""
    device = next(model.parameters()).device
    out: list[float] = []
    for chunk in batches(pairs, batch_size):
        encoded = [encode_example(tokenizer, p, c, max_length) for p, c in chunk]
        ids, mask = pad([e[0] for e in encoded], tokenizer.pad_token_id)
        ids, mask = ids.to(device), mask.to(device)
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        logprobs = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
        # positions predicting a completion token: from the prompt's last token on
        response = mask[:, 1:].clone()
        for i, (_, n_prompt) in enumerate(encoded):
            response[i, : max(n_prompt - 1, 0)] = 0
        out += (logprobs * response).sum(1).tolist()
    return out


def kl_to_reference(
    policy: str,
    reference: str,
    records: Iterable[dict[str, Any]] | str,
    config: SampleConfig | None = None,
) -> list[float]:
    """log pi(y|x) - log pi_ref(y|x) of each {"prompt", "completion"} record: for outputs
    sampled from the policy, a one-sample estimate of KL(pi || pi_ref) at that prompt (the
    penalty PPO pays against its SFT model, summed over the response)."""
    config = config or SampleConfig()
    rows = load_records(records)
    pairs = [(r["prompt"], r["completion"]) for r in rows]
    accelerator = make_accelerator(config)
    totals: list[list[float]] = []
    for path in (policy, reference):
        model, tokenizer = load_policy(path, trainable=False)
        model.to(accelerator.device)
        with accelerator.autocast():
            totals.append(
                sequence_logprobs(model, tokenizer, pairs, config.batch_size, config.max_length)
            )
        del model
    return [a - b for a, b in zip(totals[0], totals[1], strict=True)]
