"""Reward model: our K-way trainer vs TRL's pairwise RewardTrainer, same model, data and budget.

For K in --ks, both trainers get the same rankings (synthetic, hidden preference rule) and the
same tiny model. TRL trains on every untied pair of each ranking, shuffled (its unit is a
pair); ours trains on whole rankings (one batch element = one prompt with K completions). The
batch budget is the same: each optimiser step sees the comparisons of --batch-prompts
rankings, one epoch, same learning rate, schedule and clipping, and the same dropout: off in
both by default (TRL's RewardConfig.disable_dropout, our RMConfig.disable_dropout), on in both
with --keep-dropout (the checkpoint's own rates). Printed: comparisons/s,
forward sequences (counted with a hook), and held-out pairwise accuracy measured by the same
evaluator for both. The method predicts ~K-1 times fewer forward sequences for K-way.

    python benchmarks/rm_vs_trl.py                       # a few minutes on 2 CPU cores
    python benchmarks/rm_vs_trl.py --prompts 2000 --ks 4 9 --model tiny --threads 8
"""

from __future__ import annotations

import argparse
import math
import random
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from trainer import data, synthetic
from trainer.config import RMConfig
from trainer.models import load_reward_model, make_accelerator, resolve_model
from trainer.reward import evaluate_rankings, train_reward_model


class SequenceCounter:
    """Sequences through the backbone in training mode (a hook on every module forward)."""

    def __init__(self, backbone_class: str) -> None:
        self.backbone_class, self.sequences, self.forwards = backbone_class, 0, 0

    def __call__(self, module: torch.nn.Module, args: tuple, kwargs: dict, out: object) -> None:
        if type(module).__name__ == self.backbone_class and module.training:
            ids = kwargs.get("input_ids", args[0] if args else None)
            assert ids is not None
            self.sequences += int(ids.shape[0])
            self.forwards += 1


def counted(
    backbone_class: str, fn: Callable[..., object], *args: object, **kwargs: object
) -> tuple:
    counter = SequenceCounter(backbone_class)
    handle = torch.nn.modules.module.register_module_forward_hook(counter, with_kwargs=True)
    try:
        return fn(*args, **kwargs), counter
    finally:
        handle.remove()


def trl_pairs(tokenizer: object, rows: list[dict], max_length: int, seed: int) -> list[dict]:
    """Every untied (chosen, rejected) pair, tokenised exactly as our trainer tokenises."""
    pairs = []
    for r in rows:
        for text_w, rank_w in zip(r["texts"], r["ranks"], strict=True):
            for text_l, rank_l in zip(r["texts"], r["ranks"], strict=True):
                if rank_w < rank_l:
                    pairs.append(
                        {
                            "chosen_ids": data.encode_example(
                                tokenizer, r["prompt"], text_w, max_length
                            )[0],
                            "rejected_ids": data.encode_example(
                                tokenizer, r["prompt"], text_l, max_length
                            )[0],
                        }
                    )
    random.Random(seed).shuffle(pairs)
    return pairs


def run_trl(
    model_path: str, pairs: list[dict], pairs_per_step: int, cfg: RMConfig, out: Path
) -> tuple[object, float]:
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    model, tokenizer, _ = load_reward_model(
        model_path, trainable=True, disable_dropout=cfg.disable_dropout
    )
    args = RewardConfig(
        output_dir=str(out),
        per_device_train_batch_size=pairs_per_step,
        num_train_epochs=1,
        learning_rate=cfg.lr,
        lr_scheduler_type="cosine",
        warmup_steps=int(cfg.warmup_ratio * math.ceil(len(pairs) / pairs_per_step)),
        max_grad_norm=cfg.max_grad_norm,
        weight_decay=cfg.weight_decay,
        seed=cfg.seed,
        report_to="none",
        save_strategy="no",
        logging_steps=10**9,
        use_cpu=cfg.cpu,
        dataloader_num_workers=0,
        max_length=cfg.max_length,
        disable_tqdm=True,
        disable_dropout=cfg.disable_dropout,
    )
    trainer = RewardTrainer(
        model=model, args=args, processing_class=tokenizer, train_dataset=Dataset.from_list(pairs)
    )
    result = trainer.train()
    return trainer.model, float(result.metrics["train_runtime"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--ks", type=int, nargs="+", default=[4, 9])
    parser.add_argument("--prompts", type=int, default=400, help="training rankings per K")
    parser.add_argument("--val-prompts", type=int, default=100)
    parser.add_argument("--batch-prompts", type=int, default=8, help="rankings per step")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--gpu", action="store_true", help="run both trainers on the GPU")
    parser.add_argument(
        "--keep-dropout", action="store_true", help="train both with the model's dropout"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model_path = resolve_model(args.model)
    backbone = load_reward_model(model_path)[0].base_model.__class__.__name__
    cfg = RMConfig(
        epochs=1,
        lr=args.lr,
        batch_size=args.batch_prompts,
        max_length=args.max_length,
        warmup_ratio=0.1,
        cpu=not args.gpu,
        disable_dropout=not args.keep_dropout,
    )
    rows_out = []
    for k in args.ks:
        train = synthetic.rankings(args.prompts, seed=1, ks=(k,))
        val = synthetic.rankings(args.val_prompts, seed=2, ks=(k,))
        with tempfile.TemporaryDirectory() as tmp:
            ours, ours_count = counted(
                backbone,
                train_reward_model,
                model_path,
                train,
                Path(tmp) / "ours",
                val=val,
                config=cfg,
            )
            tokenizer = load_reward_model(model_path)[1]
            pairs = trl_pairs(tokenizer, data.rankings(train), args.max_length, cfg.seed)
            # Same budget: one step sees as many comparisons as batch-prompts rankings hold.
            pairs_per_step = max(1, round(len(pairs) / math.ceil(len(train) / cfg.batch_size)))
            (trl_model, trl_seconds), trl_count = counted(
                backbone, run_trl, model_path, pairs, pairs_per_step, cfg, Path(tmp) / "trl"
            )
            trl_metrics = evaluate_rankings(
                make_accelerator(cfg), trl_model.eval(), tokenizer, data.rankings(val), cfg
            )
        rows_out.append(
            {
                "K": k,
                "comparisons": len(pairs),
                "ours_cmp_s": ours["comparisons_per_second"],
                "trl_cmp_s": len(pairs) / trl_seconds,
                "ours_acc": ours["val_accuracy"],
                "trl_acc": trl_metrics["val_accuracy"],
                "ours_seqs": ours_count.sequences,
                "trl_seqs": trl_count.sequences,
                "ours_steps": ours_count.forwards,
                "trl_steps": trl_count.forwards,
            }
        )

    print(
        f"\nRM benchmark: model={args.model} rankings/K={args.prompts} "
        f"batch={args.batch_prompts} rankings/step threads={args.threads} "
        f"device={'gpu' if args.gpu else 'cpu'} dropout={'on' if args.keep_dropout else 'off'} "
        "in both"
    )
    print(
        f"{'K':>2} {'comparisons':>11} {'ours cmp/s':>10} {'TRL cmp/s':>10} {'speed-up':>8} "
        f"{'ours acc':>8} {'TRL acc':>8} {'ours seqs':>9} {'TRL seqs':>9} {'seq ratio':>9} "
        f"{'K-1':>4} {'steps ours/TRL':>14}"
    )
    for r in rows_out:
        print(
            f"{r['K']:>2} {r['comparisons']:>11} {r['ours_cmp_s']:>10.0f} "
            f"{r['trl_cmp_s']:>10.0f} {r['ours_cmp_s'] / r['trl_cmp_s']:>7.2f}x "
            f"{r['ours_acc']:>8.3f} {r['trl_acc']:>8.3f} {r['ours_seqs']:>9} "
            f"{r['trl_seqs']:>9} {r['trl_seqs'] / r['ours_seqs']:>8.2f}x {r['K'] - 1:>4} "
            f"{r['ours_steps']:>6}/{r['trl_steps']:<6}"
        )


if __name__ == "__main__":
    main()
