"""Does the loop learn? SFT -> RM -> PPO / PPO-ptx on the tiny preset, from generated data in
which a "true" preference is seen only through noisy rankings.

The true preference is one of `trainer.synthetic.RULES` (--rule). The trainer never reads it:
it gets demonstrations written without it, and K-way rankings ordered by the true score plus
Gaussian noise scaled so that a labeled pair agrees with the truth with probability
--agreement (0.73 by default, the paper's labeler agreement). Printed:

- SFT: validation loss, and how well it imitates the demonstrations: the share of generated
  words that are words of the demonstrations, and the share of responses that end (EOS);
- RM held-out pairwise accuracy on noisy held-out labels, against the noise ceiling (the
  accuracy the true preference itself reaches on the same labels), and against the truth;
- the PPO (and PPO-ptx) policy's win share over the SFT policy under the true preference on
  held-out test prompts: per prompt, the share of (PPO sample, SFT sample) pairs the PPO
  sample wins (ties 1/2), averaged over prompts, with a 95% bootstrap CI over prompts
  (scipy.stats.bootstrap, BCa, 9999 resamples);
- KL(pi_PPO || pi_SFT) in nats per response (Monte Carlo over PPO's samples);
- the pre-training LM loss of PPO / PPO-ptx on held-out pre-training texts vs SFT's.

Hyper-parameters are the model's defaults (for `tiny`: the preset's own, as the CLI and the
jobs use them) unless overridden with --set sft.lr=1e-3 --set ppo.kl_coef=0.05 ...

    nice -n 10 python benchmarks/loop_efficacy.py                      # ~4 min on 2 CPU cores
    nice -n 10 python benchmarks/loop_efficacy.py --rule brevity --seed 1 --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
import yaml
from scipy.stats import bootstrap
from transformers import GenerationConfig

import trainer.config as trainer_config
from trainer import data, synthetic
from trainer.config import PPOConfig, RMConfig, SFTConfig
from trainer.models import load_policy, resolve_model
from trainer.ppo import ptx_lm_batch, response_logprobs, train_ppo
from trainer.reward import train_reward_model
from trainer.score import score_records
from trainer.sft import train_sft


@dataclass
class LoopData:
    """One loop's generated data; only `rule` and `val_truth` know the true preference."""

    rule: str
    demos: list[dict]
    val_demos: list[dict]
    rankings: list[dict]
    val_rankings: list[dict]
    val_truth: list[list[float]]
    prompts: list[dict]
    test_prompts: list[str]
    ptx_texts: list[dict]
    held_out_texts: list[str]


def make_data(rule: str, seed: int, args: Any) -> LoopData:
    s = seed
    val_rankings, val_truth = synthetic.noisy_rankings(
        args.val_rankings, rule, args.agreement, 4000 + s
    )
    return LoopData(
        rule=rule,
        demos=synthetic.mixed_demonstrations(args.demos, seed=1000 + s),
        val_demos=synthetic.mixed_demonstrations(32, seed=2000 + s),
        rankings=synthetic.noisy_rankings(args.rankings, rule, args.agreement, 3000 + s)[0],
        val_rankings=val_rankings,
        val_truth=val_truth,
        prompts=synthetic.prompts(args.prompts, seed=5000 + s),
        test_prompts=[p["prompt"] for p in synthetic.prompts(args.test_prompts, seed=6000 + s)],
        ptx_texts=synthetic.pretrain_texts(256, seed=7000 + s),
        held_out_texts=[t["text"] for t in synthetic.pretrain_texts(64, seed=8000 + s)],
    )


def settings(sets: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {"sft": {}, "rm": {}, "ppo": {}}
    for item in sets:
        key, _, value = item.partition("=")
        step, _, field = key.partition(".")
        out[step][field] = yaml.safe_load(value)
    return out


def as_config(step: str, params: dict[str, Any]) -> Any:
    """The step's settings over the model's defaults, as the CLI and the jobs apply them.
    (Trainer code from before model-dependent defaults took only config objects: for
    before/after figures this builds one over the method's defaults.)"""
    if hasattr(trainer_config, "defaults_for"):
        return dict(params)
    configs: dict[str, Any] = {"sft": SFTConfig, "rm": RMConfig, "ppo": PPOConfig}
    return configs[step].from_dict(params)


@dataclass
class Samples:
    sequences: torch.Tensor
    attention_mask: torch.Tensor
    response_mask: torch.Tensor
    texts: list[str]
    finished: torch.Tensor


@torch.no_grad()
def rollouts(
    model: Any, tokenizer: Any, prompts: list[str], n: int, max_new_tokens: int
) -> Samples:
    """n samples per prompt from softmax(logits) (temperature 1, no top-k / top-p), with
    Hugging Face's own sampler rather than the trainer's, so that the evaluation stays the
    same for the code before and after a change."""
    flat = [data.encode_prompt(tokenizer, p, 64) for p in prompts for _ in range(n)]
    ids, mask = data.pad(flat, tokenizer.pad_token_id, side="left")
    settings = GenerationConfig(
        do_sample=True,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        max_new_tokens=max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(11)
    saved, model.generation_config = model.generation_config, settings
    try:
        sequences = model.generate(input_ids=ids, attention_mask=mask, generation_config=settings)
    finally:
        model.generation_config = saved
    response = sequences[:, ids.shape[1] :]
    is_eos = (response == tokenizer.eos_token_id).long()
    response_mask = ((is_eos.cumsum(1) - is_eos) == 0).long()  # up to the first EOS
    return Samples(
        sequences,
        torch.cat([mask, response_mask], dim=1),
        response_mask,
        [
            tokenizer.decode(r[m.bool()], skip_special_tokens=True)
            for r, m in zip(response, response_mask, strict=True)
        ],
        is_eos.sum(1) > 0,
    )


@torch.no_grad()
def kl_to_reference(model: Any, reference: Any, s: Samples) -> float:
    """Mean over responses of sum_t log pi(y_t|.) - log pi_SFT(y_t|.), on pi's own samples."""
    width = s.sequences.shape[1] - s.response_mask.shape[1]
    logprobs, _ = response_logprobs(model, s.sequences, s.attention_mask, width, 1.0)
    ref_logprobs, _ = response_logprobs(reference, s.sequences, s.attention_mask, width, 1.0)
    return float(((logprobs - ref_logprobs) * s.response_mask).sum(1).mean())


@torch.no_grad()
def lm_loss(model: Any, tokenizer: Any, texts: list[str]) -> float:
    batch = ptx_lm_batch(tokenizer, texts, PPOConfig(max_length=64), "cpu")
    return float(model(**batch).loss)


def win_share(ours: list[float], theirs: list[float], n: int) -> np.ndarray:
    """Per prompt: the share of (ours, theirs) sample pairs ours wins under the truth."""
    a = np.array(ours).reshape(-1, n, 1)
    b = np.array(theirs).reshape(-1, 1, n)
    return ((a > b) + 0.5 * (a == b)).mean(axis=(1, 2))


def mean_ci(values: np.ndarray) -> tuple[float, float]:
    """95% BCa bootstrap CI of the mean (scipy); a single point when all values are equal."""
    if np.ptp(values) == 0:
        return float(values[0]), float(values[0])
    ci = bootstrap((values,), np.mean, confidence_level=0.95, method="BCa", random_state=0)
    return float(ci.confidence_interval.low), float(ci.confidence_interval.high)


def vocabulary_share(texts: list[str], demos: list[dict]) -> float:
    """Share of generated words that are words of the demonstrations (imitation)."""
    vocabulary = {w for d in demos for w in d["completion"].split()}
    words = [w for t in texts for w in t.split()]
    return sum(w in vocabulary for w in words) / max(1, len(words))


def rm_accuracy_vs_truth(rm_dir: Path, rows: list[dict], truth: list[list[float]]) -> float:
    """Pairwise accuracy of the RM against the true preference (truth-tied pairs skipped)."""
    records = [
        {"prompt": r["prompt"], "completion": c["text"], "row": i, "true": t}
        for i, (r, scores) in enumerate(zip(rows, truth, strict=True))
        for c, t in zip(r["completions"], scores, strict=True)
    ]
    by_row: dict[int, list[dict]] = {}
    for r in score_records(str(rm_dir), records):
        by_row.setdefault(r["row"], []).append(r)
    correct = pairs = 0
    for group in by_row.values():
        for a in group:
            for b in group:
                if a["true"] > b["true"]:
                    pairs += 1
                    correct += a["score"] > b["score"]
    return correct / max(pairs, 1)


def run_sft(model: str, d: LoopData, out: Path, params: dict[str, Any], args: Any) -> dict:
    metrics = train_sft(
        resolve_model(model), d.demos, out, val=d.val_demos, config=as_config("sft", params)
    )
    policy, tokenizer = load_policy(str(out), trainable=False)
    s = rollouts(policy, tokenizer, d.test_prompts, args.samples, args.eval_tokens)
    return {
        "sft_val_loss": metrics["val_loss"],
        "sft_vocabulary_share": vocabulary_share(s.texts, d.demos),
        "sft_finished_share": float(s.finished.float().mean()),
        "sft_example": s.texts[0],
    }


def run_rm(sft: Path, d: LoopData, out: Path, params: dict[str, Any]) -> dict:
    metrics = train_reward_model(
        str(sft),
        d.rankings,
        out,
        val=d.val_rankings,
        demonstrations=d.demos,
        config=as_config("rm", params),
    )
    return {
        "rm_accuracy": metrics["val_accuracy"],
        "rm_accuracy_vs_truth": rm_accuracy_vs_truth(out, d.val_rankings, d.val_truth),
    }


def run_ppo(
    sft: Path, rm: Path, d: LoopData, out: Path, params: dict[str, Any], name: str, args: Any
) -> dict:
    """Train PPO (PPO-ptx when params say ptx_coef > 0) and compare it with SFT."""
    ppo = train_ppo(
        str(sft),
        str(rm),
        d.prompts,
        out,
        pretrain_texts=d.ptx_texts if params.get("ptx_coef", 0) > 0 else None,
        config=as_config("ppo", params),
    )
    rule = synthetic.RULES[d.rule]
    reference, tokenizer = load_policy(str(sft), trainable=False)
    model, _ = load_policy(str(out), trainable=False)
    flat = [p for p in d.test_prompts for _ in range(args.samples)]
    ref_samples = rollouts(reference, tokenizer, d.test_prompts, args.samples, args.eval_tokens)
    samples = rollouts(model, tokenizer, d.test_prompts, args.samples, args.eval_tokens)
    sft_scores = [rule(p, t) for p, t in zip(flat, ref_samples.texts, strict=True)]
    scores = [rule(p, t) for p, t in zip(flat, samples.texts, strict=True)]
    wins = win_share(scores, sft_scores, args.samples)
    return {
        f"{name}_train_kl": ppo["kl"],
        f"{name}_win_share": float(wins.mean()),
        f"{name}_win_ci": mean_ci(wins),
        f"{name}_true_score": statistics.mean(scores),
        "sft_true_score": statistics.mean(sft_scores),
        f"{name}_kl": kl_to_reference(model, reference, samples),
        f"{name}_finished_share": float(samples.finished.float().mean()),
        f"{name}_pretrain_loss": lm_loss(model, tokenizer, d.held_out_texts),
        "sft_pretrain_loss": lm_loss(reference, tokenizer, d.held_out_texts),
        f"{name}_example": samples.texts[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--rule", default="valence", choices=sorted(synthetic.RULES))
    parser.add_argument("--ptx-coef", type=float, default=1.0, help="gamma of the PPO-ptx run")
    parser.add_argument("--set", action="append", default=[], help="STEP.FIELD=VALUE")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    quiet(args.threads)
    sets = settings(args.set)
    d = make_data(args.rule, args.seed, args)
    out: dict[str, Any] = {"rule": args.rule, "seed": args.seed, "settings": sets}
    out.update(synthetic.label_agreement(d.val_rankings, d.val_truth))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="loop-efficacy-") as tmp:
        root = Path(tmp)
        out.update(run_sft(args.model, d, root / "sft", sets["sft"], args))
        out.update(run_rm(root / "sft", d, root / "rm", sets["rm"]))
        out.update(run_ppo(root / "sft", root / "rm", d, root / "ppo", sets["ppo"], "ppo", args))
        ptx = {**sets["ppo"], "ptx_coef": args.ptx_coef}
        out.update(run_ppo(root / "sft", root / "rm", d, root / "ptx", ptx, "ptx", args))
    out["seconds"] = time.perf_counter() - start
    report(out)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Data sizes and evaluation settings, shared with tiny_defaults_sweep.py."""
    parser.add_argument("--agreement", type=float, default=0.73)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--demos", type=int, default=300)
    parser.add_argument("--rankings", type=int, default=400)
    parser.add_argument("--val-rankings", type=int, default=150)
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--test-prompts", type=int, default=100)
    parser.add_argument("--samples", type=int, default=4, help="samples per test prompt")
    parser.add_argument("--eval-tokens", type=int, default=32, help="max new tokens at test")
    parser.add_argument("--threads", type=int, default=1)


def quiet(threads: int) -> None:
    torch.set_num_threads(threads)
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def report(o: dict[str, Any]) -> None:
    print(f"\nLoop efficacy: rule={o['rule']} seed={o['seed']} settings={o['settings']}")
    print(
        f"labels: agreement with the truth {o['agreement']:.3f}, noise ceiling {o['ceiling']:.3f}"
    )
    print(
        f"SFT: val loss {o['sft_val_loss']:.3f}, words from the demonstrations "
        f"{o['sft_vocabulary_share']:.1%}, finished {o['sft_finished_share']:.1%}, true score "
        f"{o['sft_true_score']:.3f}, e.g. {o['sft_example']!r}"
    )
    print(
        f"RM held-out accuracy {o['rm_accuracy']:.3f} (ceiling {o['ceiling']:.3f}, "
        f"{100 * (o['rm_accuracy'] - o['ceiling']):+.1f} points); vs the truth "
        f"{o['rm_accuracy_vs_truth']:.3f}"
    )
    for name in ("ppo", "ptx"):
        lo, hi = o[f"{name}_win_ci"]
        print(
            f"{name.upper():>3}: win share vs SFT {o[f'{name}_win_share']:.3f} "
            f"[95% CI {lo:.3f}, {hi:.3f}], true score {o[f'{name}_true_score']:.3f}, "
            f"KL to SFT {o[f'{name}_kl']:.2f} nats, pre-training loss "
            f"{o[f'{name}_pretrain_loss']:.3f} vs SFT {o['sft_pretrain_loss']:.3f} "
            f"({o[f'{name}_pretrain_loss'] / o['sft_pretrain_loss'] - 1:+.1%}), finished "
            f"{o[f'{name}_finished_share']:.1%}, e.g. {o[f'{name}_example']!r}"
        )
    print(f"({o['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
