"""Step 3 of the method: PPO (and PPO-ptx) against the reward model, CleanRL style.

The environment is a bandit: a random prompt x, the policy's response y, the RM's score
r_theta(x, y), end of episode. The objective maximised (spec, "Reinforcement learning"):

    objective(phi) = E_(x,y)~pi_RL [ r_theta(x, y) - beta * log(pi_RL(y|x) / pi_SFT(y|x)) ]
                   + gamma * E_x~D_pretrain [ log pi_RL(x) ]

with beta = kl_coef as a per-token KL penalty against the frozen SFT policy, and gamma =
ptx_coef (gamma = 0 is plain PPO). r_theta is the RM's raw output minus its `reward_bias`
(labeler demonstrations score 0), read at the last token of the policy's own response. The
value function is initialised from the RM and centred the same way, so that V and the
rewards agree before the first update.

Every `save_every` iterations the run's state (policy, value model, both optimizers and
schedules, the KL controller, RNG states) goes to OUTPUT/.state; `resume=True` continues from
it to the same result as an uninterrupted run. Prompts, samples and minibatches are drawn
from seeds derived from (seed, iteration), so a resumed run draws what the original would
have.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from accelerate.utils import set_seed
from transformers import get_constant_schedule, get_linear_schedule_with_warmup

from trainer import data
from trainer.callbacks import MetricsLog, ProgressCallback, Timer
from trainer.config import PPOConfig
from trainer.meta import STATE_DIR
from trainer.models import (
    checkpoint_meta,
    load_policy,
    load_reward_model,
    make_accelerator,
    resolve_model,
    save_checkpoint,
    token_scores,
)
from trainer.sample import ends_with_eos, generate, row_seed
from trainer.score import response_scores

# may differ between a run and its resumption (anything else must match)
RESUMABLE_CHANGES = ("iterations", "save_every")


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
    model: Any,
    sequences: torch.Tensor,
    attention_mask: torch.Tensor,
    prompt_width: int,
    reward_bias: float = 0.0,
) -> torch.Tensor:
    """V(x, y_<t): the value head at the position before each response token, minus the
    RM's bias (the value model starts as the RM, and rewards are centred by that bias: an
    offset c left in V would add -c * lambda^(T-1-t) to every token's advantage)."""
    position_ids = (attention_mask.cumsum(1) - 1).clamp(min=0)
    values = token_scores(model, sequences, attention_mask, position_ids)
    return values[:, prompt_width - 1 : -1] - reward_bias


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016) over response tokens:

        delta_t = r_t + gamma * V_{t+1} - V_t,   A_t = delta_t + gamma * lambda * A_{t+1}

    with V = 0 after the last token; returns (advantages, returns = A_t + V_t)."""
    advantages = torch.zeros_like(rewards)
    lastgaelam = torch.zeros(len(rewards), device=rewards.device)
    width = rewards.shape[1]
    for t in reversed(range(width)):
        nextvalues = values[:, t + 1] if t + 1 < width else 0.0
        delta = rewards[:, t] + gamma * nextvalues - values[:, t]
        lastgaelam = delta + gamma * lam * lastgaelam
        advantages[:, t] = lastgaelam * mask[:, t]
    return advantages, advantages + values


class KLController:
    """beta: fixed, or adaptive (Ziegler et al. 2019): after each batch of n samples,
    beta *= 1 + clip(KL / kl_target - 1, -0.2, 0.2) * n / kl_horizon."""

    def __init__(self, config: PPOConfig) -> None:
        self.value, self.config = config.kl_coef, config

    def update(self, mean_kl: float, n: int) -> None:
        if self.config.adaptive_kl:
            error = max(-0.2, min(0.2, mean_kl / self.config.kl_target - 1))
            self.value *= 1 + error * n / self.config.kl_horizon

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = state["value"]


@dataclasses.dataclass
class RunState:
    """What a resumed run needs besides weights, optimizers and RNG states."""

    iteration: int = 0
    pretrain_loss_start: float = float("nan")

    def state_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.iteration = int(state["iteration"])
        self.pretrain_loss_start = float(state["pretrain_loss_start"])


def prompt_indices(
    n_prompts: int, batch_size: int, iteration: int, seed: int, process: int, processes: int
) -> list[int]:
    """This process's prompts for an iteration: its slice of the global batch, drawn without
    replacement from one shuffle of the prompts per pass (the same on every process)."""
    start = ((iteration - 1) * processes + process) * batch_size
    orders: dict[int, list[int]] = {}
    out = []
    for position in range(start, start + batch_size):
        epoch, offset = divmod(position, n_prompts)
        if epoch not in orders:
            orders[epoch] = random.Random(row_seed(seed, "prompts", epoch)).sample(
                range(n_prompts), n_prompts
            )
        out.append(orders[epoch][offset])
    return out


def train_ppo(
    policy: str,
    reward_model: str,
    prompts: data.Records,
    output_dir: str | Path,
    pretrain_texts: data.Records | None = None,
    config: PPOConfig | Mapping[str, Any] | None = None,
    progress: ProgressCallback | None = None,
    meta: dict[str, Any] | None = None,
    resume: bool = False,
) -> dict[str, float]:
    """Fine-tune the SFT `policy` with PPO against `reward_model` on {"prompt"} records;
    {"text"} pre-training records with `config.ptx_coef` > 0 make it PPO-ptx. A mapping (or
    None) as `config` is applied over the defaults that fit `policy`. `resume` continues the
    run whose state is in `output_dir`."""
    if not isinstance(config, PPOConfig):
        config = PPOConfig.for_model(policy, config)
    output_dir = Path(output_dir)
    state_dir = output_dir / STATE_DIR
    if resume:
        check_resumable(state_dir, config)
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
    check_shared_tokens(tokenizer, rm_tokenizer)
    ref_model.to(device)
    rm.to(device)
    policy_optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=config.lr,
        weight_decay=config.weight_decay,
    )
    value_optimizer = torch.optim.AdamW(
        [p for p in value_model.parameters() if p.requires_grad],
        lr=config.value_lr,
        weight_decay=config.weight_decay,
    )
    model, value_model, policy_optimizer, value_optimizer = accelerator.prepare(
        model, value_model, policy_optimizer, value_optimizer
    )
    minibatches = math.ceil(config.rollout_batch_size / config.minibatch_size)
    total_steps = config.iterations * config.ppo_epochs * minibatches
    total_steps = math.ceil(total_steps / config.gradient_accumulation_steps)
    schedules = [
        get_linear_schedule_with_warmup(opt, 0, total_steps)
        if config.lr_schedule == "linear"
        else get_constant_schedule(opt)
        for opt in (policy_optimizer, value_optimizer)
    ]
    kl_ctl, run = KLController(config), RunState()
    accelerator.register_for_checkpointing(*schedules, kl_ctl, run)
    if resume:
        accelerator.load_state(str(state_dir))
    # Dropout off: the ratio pi_new / pi_old must be 1 before the first update.
    model.eval()
    value_model.eval()

    max_prompt = max(1, config.max_length - config.max_new_tokens)
    log = MetricsLog(
        output_dir, progress, accelerator.is_main_process, run.iteration if resume else None
    )
    if resume:
        log.log(run.iteration, config.iterations, {}, f"resumed after iteration {run.iteration}")
    else:
        run.pretrain_loss_start = pretrain_loss(accelerator, model, tokenizer, ptx_rows, config)
    timed = Timer(device)
    metrics: dict[str, float] = {}
    run_info = {  # what `prefloop train ppo --resume DIR` needs to start again
        "config": config.to_dict(),
        "policy": str(policy),
        "reward_model": str(reward_model),
        "prompts": str(prompts) if isinstance(prompts, str | Path) else None,
        "pretrain_texts": str(pretrain_texts) if isinstance(pretrain_texts, str | Path) else None,
    }

    for iteration in range(run.iteration + 1, config.iterations + 1):
        timed.begin()
        # ---- rollout: sample y ~ pi_RL(.|x) for this process's share of the prompts
        indices = prompt_indices(
            len(prompt_rows),
            config.rollout_batch_size,
            iteration,
            config.seed,
            accelerator.process_index,
            accelerator.num_processes,
        )
        batch_prompts = [prompt_rows[i] for i in indices]
        with torch.no_grad(), accelerator.autocast():
            with timed("generation"):
                sequences, attention_mask, response_mask = generate(
                    accelerator.unwrap_model(model),
                    tokenizer,
                    [data.encode_prompt(tokenizer, p, max_prompt) for p in batch_prompts],
                    config.max_new_tokens,
                    config.temperature,
                    seeds=[
                        row_seed(config.seed, iteration, accelerator.process_index, j)
                        for j in range(len(indices))
                    ],
                )
            width = sequences.shape[1] - response_mask.shape[1]
            mask = response_mask.float()

            # ---- scoring: policy, reference, RM and value on the rollout
            with timed("policy"):
                logprobs, _ = response_logprobs(
                    model, sequences, attention_mask, width, config.temperature
                )
            with timed("reference"):
                ref_logprobs, _ = response_logprobs(
                    ref_model, sequences, attention_mask, width, config.temperature
                )
            with timed("reward_model"):
                # normalised r_theta(x, y) = raw - bias, at the last token of the response
                scores = response_scores(rm, sequences, attention_mask, response_mask) - rm_bias
                finished = ends_with_eos(
                    sequences[:, width:], response_mask, tokenizer.eos_token_id
                )
                if config.missing_eos_penalty is not None:
                    scores = scores - config.missing_eos_penalty * (~finished).float()
            with timed("value"):
                values = response_values(value_model, sequences, attention_mask, width, rm_bias)
                values = values * mask

            # ---- rewards: per-token KL penalty, plus the RM score at the last response token
            kl_coef = kl_ctl.value  # beta for this batch
            kl = (logprobs - ref_logprobs) * mask  # log(pi_RL(y_t|.) / pi_SFT(y_t|.))
            rewards = -kl_coef * kl
            last = (mask.sum(1).long() - 1).clamp(min=0)
            rewards[torch.arange(len(last)), last] += scores

            # ---- advantages and returns: GAE (Schulman et al. 2016)
            advantages, returns = gae(rewards, values, mask, config.gae_gamma, config.gae_lambda)
            advantage_mean = masked_mean(advantages, mask)
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
                "policy_grad_norm",
                "value_grad_norm",
            )
        }
        n = len(sequences)
        shuffle = torch.Generator().manual_seed(
            row_seed(config.seed, iteration, accelerator.process_index, "minibatches")
        )
        ptx_rng = random.Random(row_seed(config.seed, iteration, accelerator.process_index, "ptx"))
        with timed("optimization"):
            for _ in range(config.ppo_epochs):
                for idx in (
                    torch.randperm(n, generator=shuffle).to(device).split(config.minibatch_size)
                ):
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
                            value_model, sequences[idx], attention_mask[idx], width, rm_bias
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
                            policy_loss
                            + config.vf_coef * value_loss
                            - config.ent_coef * entropy_mean
                        )
                        if config.ptx_coef > 0:
                            # PPO-ptx: gamma * E[log pi_RL(x)] on pre-training text, as a loss.
                            ptx_batch = ptx_lm_batch(
                                tokenizer,
                                ptx_rng.sample(ptx_rows, min(config.ptx_batch_size, len(ptx_rows))),
                                config,
                                device,
                            )
                            ptx_loss = model(**ptx_batch).loss
                            loss = loss + config.ptx_coef * ptx_loss
                            stats["ptx_loss"].append(ptx_loss.item())
                        accelerator.backward(loss)
                        if accelerator.sync_gradients:  # each model clipped on its own
                            for name, net in (("policy", model), ("value", value_model)):
                                norm = accelerator.clip_grad_norm_(
                                    net.parameters(), config.max_grad_norm
                                )
                                stats[f"{name}_grad_norm"].append(float(norm))
                        policy_optimizer.step()
                        value_optimizer.step()
                        policy_optimizer.zero_grad()
                        value_optimizer.zero_grad()
                    if accelerator.sync_gradients:
                        for schedule in schedules:
                            schedule.step()
                    with torch.no_grad():
                        stats["policy_loss"].append(policy_loss.item())
                        stats["value_loss"].append(value_loss.item())
                        stats["entropy"].append(entropy_mean.item())
                        clipped = ((ratio - 1).abs() > config.clip_coef).float()
                        stats["clip_fraction"].append(masked_mean(clipped, m).item())
                        stats["approx_kl"].append(masked_mean((ratio - 1) - logratio, m).item())

        def mean(x: torch.Tensor) -> float:
            return float(accelerator.reduce(x.mean(), "mean").item())

        mean_kl = mean(kl.sum(1))
        metrics = {
            "reward": mean(scores),
            "kl": mean_kl,
            "kl_coef": kl_coef,  # the beta these rewards were computed with
            "non_score_reward": mean((-kl_coef * kl).sum(1)),
            "response_length": mean(mask.sum(1)),
            "truncated_share": mean((~finished).float()),
            "value_mean": accelerator.reduce(masked_mean(values, mask), "mean").item(),
            "advantage_mean": accelerator.reduce(advantage_mean, "mean").item(),
            "return_mean": accelerator.reduce(masked_mean(returns, mask), "mean").item(),
            "lr": schedules[0].get_last_lr()[0],
            **{k: sum(v) / len(v) for k, v in stats.items() if v},
            **timed.metrics(),
        }
        # ---- adaptive KL controller (Ziegler et al. 2019): move beta toward a target KL
        kl_ctl.update(mean_kl, n * accelerator.num_processes)
        run.iteration = iteration
        log.log(iteration, config.iterations, metrics)
        if (
            config.save_every
            and iteration % config.save_every == 0
            and iteration < config.iterations
        ):
            save_state(accelerator, state_dir, run_info)

    final = {**metrics, "iterations": config.iterations}
    if ptx_rows:
        final.update(
            pretrain_loss_start=run.pretrain_loss_start,
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
    if accelerator.is_main_process:
        shutil.rmtree(state_dir, ignore_errors=True)  # finished: nothing left to resume
    return final


def check_shared_tokens(tokenizer: Any, rm_tokenizer: Any) -> None:
    """The RM and the value model read the policy's token ids, so every policy token must
    mean the same in the RM's vocabulary (which may add a pad token of its own)."""
    rm_vocab = rm_tokenizer.get_vocab()
    if any(rm_vocab.get(token) != i for token, i in tokenizer.get_vocab().items()):
        raise ValueError(
            "the RM reads the policy's tokens and the value model starts from the RM, so RM "
            "and policy must share a tokenizer"
        )


def save_state(accelerator: Any, state_dir: Path, run_info: dict[str, Any]) -> None:
    """Write the resumable state to `state_dir` (beside it first, then swapped in, so a run
    killed while saving keeps its previous state), with `run_info` as run.json."""
    tmp = state_dir.with_name(state_dir.name + ".new")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    if accelerator.is_main_process:
        (tmp / "run.json").write_text(json.dumps(run_info, indent=2))
        old = state_dir.with_name(state_dir.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if state_dir.exists():
            state_dir.rename(old)
        tmp.rename(state_dir)
        shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def saved_run(output_dir: str | Path) -> dict[str, Any]:
    """run.json of the state saved in a PPO output directory: config and input paths."""
    file = Path(output_dir) / STATE_DIR / "run.json"
    if not file.is_file():
        raise ValueError(
            f"nothing to resume in {output_dir}: no saved state (PPO saves one every "
            "save_every iterations; a finished run removes it)"
        )
    run: dict[str, Any] = json.loads(file.read_text())
    return run


def check_resumable(state_dir: Path, config: PPOConfig) -> None:
    """A clear error unless `state_dir` holds a state saved with the same settings."""
    saved = saved_run(state_dir.parent)["config"]
    changed = sorted(
        k
        for k, v in config.to_dict().items()
        if k not in RESUMABLE_CHANGES and saved.get(k, v) != v
    )
    if changed:
        raise ValueError(
            "cannot resume with different settings: "
            + ", ".join(f"{k} (saved {saved[k]!r}, now {getattr(config, k)!r})" for k in changed)
        )


def ptx_lm_batch(
    tokenizer: Any, texts: list[str], config: PPOConfig, device: Any
) -> dict[str, torch.Tensor]:
    """Pre-training texts (+ EOS) as a right-padded language-modelling batch."""
    seqs = [data.lm_example(tokenizer, t, config.max_length) for t in texts]
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
    return float(accelerator.reduce(torch.stack(losses).mean(), "mean").item())
