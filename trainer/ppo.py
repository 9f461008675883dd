"""Step 3 of the method: PPO (and PPO-ptx) against the reward model, CleanRL style.

The environment is a bandit: a random prompt x, the policy's response y, the RM's score
r_theta(x, y), end of episode. The objective maximised (spec, "Reinforcement learning"):

    objective(phi) = E_(x,y)~pi_RL [ r_theta(x, y) - beta * log(pi_RL(y|x) / pi_SFT(y|x)) ]
                   + gamma * E_x~D_pretrain [ log pi_RL(x) ]

with beta = kl_coef as a per-token KL penalty against the frozen SFT policy, and gamma =
ptx_coef (gamma = 0 is plain PPO). The value function is initialised from the RM.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from accelerate.utils import set_seed

from trainer import data
from trainer.callbacks import MetricsLog, ProgressCallback
from trainer.config import PPOConfig
from trainer.models import (
    checkpoint_meta,
    load_policy,
    load_reward_model,
    make_accelerator,
    resolve_model,
    save_checkpoint,
    token_scores,
)
from trainer.sample import decode_responses, generate
from trainer.score import score_pairs


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + 1e-8) * mask


def response_logprobs(
    model: Any,
    sequences: torch.Tensor,
    attention_mask: torch.Tensor,
    prompt_width: int,
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """log pi(y_t | x, y_<t) of each response token and the policy's entropy there."""
    position_ids = (attention_mask.cumsum(1) - 1).clamp(min=0)  # left-padded prompts
    logits = model(
        input_ids=sequences,
        attention_mask=attention_mask,
        position_ids=position_ids,
        use_cache=False,
    ).logits
    logits = logits[:, prompt_width - 1 : -1].float() / temperature  # positions predicting y_t
    all_logprobs = F.log_softmax(logits, dim=-1)
    logprobs = all_logprobs.gather(-1, sequences[:, prompt_width:, None]).squeeze(-1)
    entropy = -(all_logprobs.exp() * all_logprobs).sum(-1)
    return logprobs, entropy


def response_values(
    model: Any, sequences: torch.Tensor, attention_mask: torch.Tensor, prompt_width: int
) -> torch.Tensor:
    """V(x, y_<t): the value head at the position before each response token."""
    position_ids = (attention_mask.cumsum(1) - 1).clamp(min=0)
    values = token_scores(model, sequences, attention_mask, position_ids)
    return values[:, prompt_width - 1 : -1]


def _timer(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def train_ppo(
    policy: str,
    reward_model: str,
    prompts: data.Records,
    output_dir: str | Path,
    pretrain_texts: data.Records | None = None,
    config: PPOConfig | None = None,
    progress: ProgressCallback | None = None,
    meta: dict | None = None,
) -> dict[str, float]:
    """Fine-tune the SFT `policy` with PPO against `reward_model` on {"prompt"} records;
    {"text"} pre-training records with `config.ptx_coef` > 0 make it PPO-ptx."""
    config = config or PPOConfig()
    output_dir = Path(output_dir)
    set_seed(config.seed)
    accelerator = make_accelerator(config)
    device = accelerator.device
    prompt_rows, ptx_rows = data.prompts(prompts), data.texts(pretrain_texts)
    if not prompt_rows:
        raise ValueError("no prompts for PPO")
    if config.ptx_coef > 0 and not ptx_rows:
        raise ValueError("ptx_coef > 0 (PPO-ptx) needs pre-training texts")

    model, tokenizer = load_policy(policy, config)  # pi_RL, initialised from pi_SFT
    ref_model, _ = load_policy(policy, trainable=False)  # pi_SFT, frozen
    rm, rm_tokenizer, rm_bias = load_reward_model(reward_model)  # r_theta, frozen
    value_model, _, _ = load_reward_model(reward_model, config, trainable=True)  # V from the RM
    if rm_tokenizer.get_vocab() != tokenizer.get_vocab():
        raise ValueError(
            "the value model starts from the RM, so RM and policy must share a tokenizer"
        )
    ref_model.to(device)
    rm.to(device)
    optimizer = torch.optim.AdamW(
        [
            {"params": [p for p in model.parameters() if p.requires_grad], "lr": config.lr},
            {
                "params": [p for p in value_model.parameters() if p.requires_grad],
                "lr": config.value_lr,
            },
        ]
    )
    model, value_model, optimizer = accelerator.prepare(model, value_model, optimizer)
    # Dropout off: the ratio pi_new / pi_old must be 1 before the first update.
    model.eval()
    value_model.eval()

    rng = random.Random(config.seed + accelerator.process_index)
    order: list[int] = []
    max_prompt = max(1, config.max_length - config.max_new_tokens)
    kl_coef = config.kl_coef
    log = MetricsLog(output_dir, progress, accelerator.is_main_process)
    pretrain_start = pretrain_loss(accelerator, model, tokenizer, ptx_rows, config)
    metrics: dict[str, float] = {}

    for iteration in range(1, config.iterations + 1):
        # ---- rollout: sample y ~ pi_RL(.|x) for a batch of prompts
        while len(order) < config.rollout_batch_size:
            order += rng.sample(range(len(prompt_rows)), len(prompt_rows))
        batch_prompts = [prompt_rows[i] for i in order[: config.rollout_batch_size]]
        del order[: config.rollout_batch_size]
        t0 = _timer(device)
        with torch.no_grad(), accelerator.autocast():
            sequences, attention_mask, response_mask = generate(
                accelerator.unwrap_model(model),
                tokenizer,
                [data.encode_prompt(tokenizer, p, max_prompt) for p in batch_prompts],
                config.max_new_tokens,
                config.temperature,
                config.top_p,
            )
            t1 = _timer(device)
            width = sequences.shape[1] - response_mask.shape[1]
            mask = response_mask.float()

            # ---- scoring: policy, reference, RM and value on the rollout
            logprobs, _ = response_logprobs(
                model, sequences, attention_mask, width, config.temperature
            )
            t2 = _timer(device)
            ref_logprobs, _ = response_logprobs(
                ref_model, sequences, attention_mask, width, config.temperature
            )
            t3 = _timer(device)
            texts = decode_responses(tokenizer, sequences[:, width:], response_mask)
            scores = torch.tensor(
                score_pairs(  # normalised r_theta(x, y) = raw - bias
                    rm,
                    rm_tokenizer,
                    list(zip(batch_prompts, texts, strict=True)),
                    rm_bias,
                    config.minibatch_size,
                    config.max_length,
                ),
                device=device,
            )
            t4 = _timer(device)
            values = response_values(value_model, sequences, attention_mask, width) * mask
            t5 = _timer(device)

            # ---- rewards: per-token KL penalty, plus the RM score at the last response token
            kl = (logprobs - ref_logprobs) * mask  # log(pi_RL(y_t|.) / pi_SFT(y_t|.))
            rewards = -kl_coef * kl
            last = (mask.sum(1).long() - 1).clamp(min=0)
            rewards[torch.arange(len(last)), last] += scores

            # ---- GAE (Schulman et al. 2016): delta_t = r_t + g V_{t+1} - V_t,
            #      A_t = delta_t + g * lambda * A_{t+1}; returns = A_t + V_t
            advantages = torch.zeros_like(rewards)
            lastgaelam = torch.zeros(len(rewards), device=device)
            for t in reversed(range(rewards.shape[1])):
                nextvalues = values[:, t + 1] if t + 1 < rewards.shape[1] else 0.0
                delta = rewards[:, t] + config.gae_gamma * nextvalues - values[:, t]
                lastgaelam = delta + config.gae_gamma * config.gae_lambda * lastgaelam
                advantages[:, t] = lastgaelam * mask[:, t]
            returns = advantages + values
            if config.whiten_advantages:
                advantages = masked_whiten(advantages, mask)

        # ---- optimisation: clipped policy and value losses, + gamma * pre-training loss
        stats: dict[str, list[float]] = {
            k: []
            for k in (
                "policy_loss",
                "value_loss",
                "entropy",
                "clip_fraction",
                "approx_kl",
                "ptx_loss",
            )
        }
        n = len(sequences)
        for _ in range(config.ppo_epochs):
            for idx in torch.randperm(n, device=device).split(config.minibatch_size):
                with accelerator.accumulate(model, value_model):
                    m = mask[idx]
                    new_logprobs, entropy = response_logprobs(
                        model, sequences[idx], attention_mask[idx], width, config.temperature
                    )
                    logratio = new_logprobs - logprobs[idx]
                    ratio = logratio.exp()
                    # Clipped surrogate (Schulman et al. 2017, eq. 7), as a loss to minimise.
                    pg_loss1 = -advantages[idx] * ratio
                    pg_loss2 = -advantages[idx] * ratio.clamp(
                        1 - config.clip_coef, 1 + config.clip_coef
                    )
                    policy_loss = masked_mean(torch.max(pg_loss1, pg_loss2), m)
                    # Clipped value loss around the rollout's values.
                    new_values = response_values(
                        value_model, sequences[idx], attention_mask[idx], width
                    )
                    v_clipped = values[idx] + (new_values - values[idx]).clamp(
                        -config.vf_clip_coef, config.vf_clip_coef
                    )
                    value_loss = 0.5 * masked_mean(
                        torch.max(
                            (new_values - returns[idx]) ** 2, (v_clipped - returns[idx]) ** 2
                        ),
                        m,
                    )
                    entropy_mean = masked_mean(entropy, m)
                    loss = (
                        policy_loss + config.vf_coef * value_loss - config.ent_coef * entropy_mean
                    )
                    if config.ptx_coef > 0:
                        # PPO-ptx: gamma * E[log pi_RL(x)] on pre-training text, as a loss.
                        ptx_batch = ptx_lm_batch(
                            tokenizer,
                            rng.sample(ptx_rows, min(config.ptx_batch_size, len(ptx_rows))),
                            config,
                            device,
                        )
                        ptx_loss = model(**ptx_batch).loss
                        loss = loss + config.ptx_coef * ptx_loss
                        stats["ptx_loss"].append(ptx_loss.item())
                    accelerator.backward(loss)
                    if accelerator.sync_gradients:
                        accelerator.clip_grad_norm_(
                            [p for g in optimizer.param_groups for p in g["params"]],
                            config.max_grad_norm,
                        )
                    optimizer.step()
                    optimizer.zero_grad()
                with torch.no_grad():
                    stats["policy_loss"].append(policy_loss.item())
                    stats["value_loss"].append(value_loss.item())
                    stats["entropy"].append(entropy_mean.item())
                    clipped = ((ratio - 1).abs() > config.clip_coef).float()
                    stats["clip_fraction"].append(masked_mean(clipped, m).item())
                    stats["approx_kl"].append(masked_mean((ratio - 1) - logratio, m).item())
        t6 = _timer(device)

        # ---- adaptive KL controller (Ziegler et al. 2019): move beta toward a target KL
        mean_kl = accelerator.reduce(kl.sum(1).mean(), "mean").item()
        if config.adaptive_kl:
            error = max(-0.2, min(0.2, mean_kl / config.kl_target - 1))
            kl_coef *= 1 + error * n * accelerator.num_processes / config.kl_horizon

        metrics = {
            "reward": accelerator.reduce(scores.mean(), "mean").item(),
            "kl": mean_kl,
            "kl_coef": kl_coef,
            "non_score_reward": accelerator.reduce((-kl_coef * kl).sum(1).mean(), "mean").item(),
            "response_length": accelerator.reduce(mask.sum(1).mean(), "mean").item(),
            **{k: sum(v) / len(v) for k, v in stats.items() if v},
            "time_generation": t1 - t0,
            "time_policy": t2 - t1,
            "time_reference": t3 - t2,
            "time_reward_model": t4 - t3,
            "time_value": t5 - t4,
            "time_optimization": t6 - t5,
            "time_iteration": t6 - t0,
        }
        log.log(iteration, config.iterations, metrics)

    final = {**metrics, "iterations": config.iterations}
    if ptx_rows:
        final.update(
            pretrain_loss_start=pretrain_start,
            pretrain_loss=pretrain_loss(accelerator, model, tokenizer, ptx_rows, config),
        )
    log.log(config.iterations, config.iterations, final, message="ppo done")
    save_checkpoint(
        accelerator,
        model,
        tokenizer,
        output_dir,
        checkpoint_meta(
            "ppo", [resolve_model(policy), resolve_model(reward_model)], config, final, meta
        ),
    )
    return final


def ptx_lm_batch(tokenizer: Any, texts: list[str], config: PPOConfig, device: Any) -> dict:
    """Pre-training texts (+ EOS) as a right-padded language-modelling batch."""
    seqs = [
        tokenizer(t, add_special_tokens=False)["input_ids"][: config.max_length - 1]
        + [tokenizer.eos_token_id]
        for t in texts
    ]
    ids, attn = data.pad(seqs, tokenizer.pad_token_id)
    labels = ids.masked_fill(attn == 0, -100)
    return {
        "input_ids": ids.to(device),
        "attention_mask": attn.to(device),
        "labels": labels.to(device),
    }


@torch.no_grad()
def pretrain_loss(
    accelerator: Any,
    model: Any,
    tokenizer: Any,
    texts: list[str],
    config: PPOConfig,
    limit: int = 256,
) -> float:
    """Mean language-modelling loss on (up to `limit`) pre-training texts."""
    if not texts:
        return float("nan")
    losses = [
        model(**ptx_lm_batch(tokenizer, list(chunk), config, accelerator.device)).loss
        for chunk in data.batches(texts[:limit], config.minibatch_size)
    ]
    return accelerator.reduce(torch.stack(losses).mean(), "mean").item()
