"""PPO: time per iteration split into generation, scoring (policy, reference, RM, value) and
optimisation, against the sum of the same parts measured alone.

Trains a quick SFT policy and RM on synthetic data (or takes --policy / --reward-model), runs
train_ppo (which logs each part's time per iteration), then times each part in isolation on
a rollout of the same size. A ratio near 1 means the loop adds no hidden overhead.

    python benchmarks/ppo_breakdown.py                    # about a minute on 2 CPU cores
    python benchmarks/ppo_breakdown.py --policy SFT_DIR --reward-model RM_DIR --rollout 64 \
        --max-new-tokens 128 --iterations 10
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from trainer import data, synthetic
from trainer.callbacks import read_metrics
from trainer.config import PPOConfig, RMConfig, SFTConfig
from trainer.models import load_policy, load_reward_model, make_accelerator, resolve_model
from trainer.ppo import masked_mean, response_logprobs, response_values, train_ppo
from trainer.reward import train_reward_model
from trainer.sample import decode_responses, generate
from trainer.score import score_pairs
from trainer.sft import train_sft

PARTS = ["generation", "policy", "reference", "reward_model", "value", "optimization"]


def timed(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def parts_alone(policy_path: str, rm_path: str, cfg: PPOConfig, repeats: int) -> dict:
    """Each part of a PPO iteration on its own, on one rollout of cfg.rollout_batch_size."""
    accelerator = make_accelerator(cfg)
    device = accelerator.device
    policy, tokenizer = load_policy(policy_path)
    ref, _ = load_policy(policy_path, trainable=False)
    rm, rm_tokenizer, bias = load_reward_model(rm_path)
    value, _, _ = load_reward_model(rm_path, trainable=True)
    for m in (policy, ref, rm, value):
        m.to(device).eval()
    prompts = data.prompts(synthetic.prompts(cfg.rollout_batch_size, seed=5))
    ids = [data.encode_prompt(tokenizer, p, cfg.max_length - cfg.max_new_tokens) for p in prompts]
    ctx = accelerator.autocast

    def gen() -> tuple:
        with ctx():
            return generate(policy, tokenizer, ids, cfg.max_new_tokens, cfg.temperature)

    seqs, attn, resp = gen()
    width = seqs.shape[1] - resp.shape[1]
    mask = resp.float()
    texts = decode_responses(tokenizer, seqs[:, width:], resp)
    optimizer = torch.optim.AdamW(list(policy.parameters()) + list(value.parameters()), lr=1e-6)

    def no_grad(fn: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            with torch.no_grad(), ctx():
                fn()

        return run

    def optimise() -> None:
        with ctx():
            for _ in range(cfg.ppo_epochs):
                for idx in torch.randperm(len(seqs)).split(cfg.minibatch_size):
                    logprobs, entropy = response_logprobs(
                        policy, seqs[idx], attn[idx], width, cfg.temperature
                    )
                    values = response_values(value, seqs[idx], attn[idx], width)
                    loss = masked_mean(-logprobs.exp() + 0.5 * values**2, mask[idx])
                    loss.backward()
                    optimizer.step()
                    optimizer.zero_grad()

    return {
        "response_length": float(resp.sum(1).float().mean()),
        "generation": timed(gen, repeats, device),
        "policy": timed(
            no_grad(lambda: response_logprobs(policy, seqs, attn, width, 1.0)), repeats, device
        ),
        "reference": timed(
            no_grad(lambda: response_logprobs(ref, seqs, attn, width, 1.0)), repeats, device
        ),
        "reward_model": timed(
            no_grad(
                lambda: score_pairs(
                    rm,
                    rm_tokenizer,
                    list(zip(prompts, texts, strict=True)),
                    bias,
                    cfg.minibatch_size,
                    cfg.max_length,
                )
            ),
            repeats,
            device,
        ),
        "value": timed(no_grad(lambda: response_values(value, seqs, attn, width)), repeats, device),
        "optimization": timed(optimise, repeats, device),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", help="SFT checkpoint (default: train one on synthetic data)")
    parser.add_argument("--reward-model", help="RM checkpoint (default: train one)")
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--rollout", type=int, default=32)
    parser.add_argument("--minibatch", type=int, default=16)
    parser.add_argument("--ppo-epochs", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cpu", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # the checkpoints trained here and the PPO run's, removed when done
    tmp = Path(tempfile.mkdtemp(prefix="ppo-bench-"))
    try:
        run(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(args: argparse.Namespace, tmp: Path) -> None:
    policy, rm = args.policy, args.reward_model
    if policy is None:
        policy = str(tmp / "sft")
        train_sft(
            resolve_model("tiny"),
            synthetic.demonstrations(256),
            policy,
            config=SFTConfig(
                epochs=2, lr=3e-3, batch_size=16, max_length=64, residual_dropout=0.0, cpu=args.cpu
            ),
        )
    if rm is None:
        rm = str(tmp / "rm")
        train_reward_model(
            policy,
            synthetic.rankings(200),
            rm,
            config=RMConfig(lr=1e-3, max_length=64, cpu=args.cpu),
        )
    cfg = PPOConfig(
        iterations=args.iterations,
        rollout_batch_size=args.rollout,
        minibatch_size=args.minibatch,
        ppo_epochs=args.ppo_epochs,
        max_new_tokens=args.max_new_tokens,
        max_length=args.max_new_tokens + 48,
        lr=1e-5,
        cpu=args.cpu,
    )
    train_ppo(policy, rm, synthetic.prompts(256), tmp / "ppo", config=cfg)
    log = [r for r in read_metrics(tmp / "ppo") if "time_iteration" in r and "iterations" not in r][
        1:
    ]  # skip warm-up and summary
    in_loop = {p: statistics.median(r[f"time_{p}"] for r in log) for p in PARTS}
    iteration = statistics.median(r["time_iteration"] for r in log)
    alone = parts_alone(policy, rm, cfg, args.repeats)
    alone_length = alone.pop("response_length")

    print(
        f"\nPPO iteration breakdown: rollout={args.rollout} minibatch={args.minibatch} "
        f"ppo_epochs={args.ppo_epochs} max_new_tokens={args.max_new_tokens} "
        f"threads={args.threads} device={make_accelerator(cfg).device} "
        f"(medians over {len(log)} iterations / {args.repeats} repeats)"
    )
    print(f"{'part':>14} {'in loop (s)':>11} {'share':>6} {'alone (s)':>10} {'loop/alone':>10}")
    for p in PARTS:
        print(
            f"{p:>14} {in_loop[p]:>11.4f} {in_loop[p] / iteration:>6.1%} {alone[p]:>10.4f} "
            f"{in_loop[p] / alone[p]:>9.2f}x"
        )
    print(
        f"{'iteration':>14} {iteration:>11.4f} {'':>6} {sum(alone.values()):>10.4f} "
        f"{iteration / sum(alone.values()):>9.2f}x   (alone column: sum of the parts)"
    )
    print(f"sum of in-loop parts / iteration: {sum(in_loop.values()) / iteration:.3f}")
    loop_length = statistics.mean(r["response_length"] for r in log)
    print(f"mean response length: in loop {loop_length:.1f} tokens, alone {alone_length:.1f}")


if __name__ == "__main__":
    main()
