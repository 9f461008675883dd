"""SFT throughput: our trainer vs TRL's SFTTrainer, same model, data, batch size and epochs.

Both get the same demonstrations, tokenised identically (TRL receives our input_ids and labels,
-100 on prompt tokens, so both compute the loss on response tokens only). Printed: training
tokens/s (non-padding tokens processed / training wall time) and mean training loss.

    python benchmarks/sft_vs_trl.py                       # about a minute on 2 CPU cores
    python benchmarks/sft_vs_trl.py --demos 5000 --epochs 2 --batch-size 32 --threads 8
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from trainer import data, synthetic
from trainer.callbacks import read_metrics
from trainer.config import SFTConfig
from trainer.models import load_policy, resolve_model
from trainer.sft import train_sft


def run_trl(model_path: str, demos: list[dict], cfg: SFTConfig, out: Path) -> tuple[float, float]:
    from datasets import Dataset
    from trl import SFTConfig as TRLSFTConfig
    from trl import SFTTrainer

    model, tokenizer = load_policy(model_path, residual_dropout=cfg.residual_dropout)
    rows = []
    for d in demos:
        ids, n_prompt = data.encode_example(tokenizer, d["prompt"], d["completion"], cfg.max_length)
        rows.append({"input_ids": ids, "labels": [-100] * n_prompt + ids[n_prompt:]})
    steps = cfg.epochs * -(-len(rows) // cfg.batch_size)
    args = TRLSFTConfig(
        output_dir=str(out),
        per_device_train_batch_size=cfg.batch_size,
        num_train_epochs=cfg.epochs,
        learning_rate=cfg.lr,
        lr_scheduler_type="cosine",
        warmup_steps=int(cfg.warmup_ratio * steps),
        max_grad_norm=cfg.max_grad_norm,
        seed=cfg.seed,
        report_to="none",
        save_strategy="no",
        logging_steps=10**9,
        use_cpu=cfg.cpu,
        dataloader_num_workers=0,
        max_length=cfg.max_length,
        disable_tqdm=True,
        packing=False,
    )
    trainer = SFTTrainer(
        model=model, args=args, processing_class=tokenizer, train_dataset=Dataset.from_list(rows)
    )
    result = trainer.train()
    tokens = cfg.epochs * sum(len(r["input_ids"]) for r in rows)
    return tokens / float(result.metrics["train_runtime"]), float(result.metrics["train_loss"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--demos", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--gpu", action="store_true", help="run both trainers on the GPU")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model_path = resolve_model(args.model)
    demos = synthetic.demonstrations(args.demos, seed=1)
    cfg = SFTConfig(
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        max_length=args.max_length,
        residual_dropout=0.0,
        warmup_ratio=0.1,
        cpu=not args.gpu,
    )
    with tempfile.TemporaryDirectory() as tmp:
        ours = train_sft(model_path, demos, Path(tmp) / "ours", config=cfg)
        losses = [r["loss"] for r in read_metrics(Path(tmp) / "ours") if "loss" in r]
        trl_tokens_s, trl_loss = run_trl(model_path, demos, cfg, Path(tmp) / "trl")
    print(
        f"\nSFT benchmark: model={args.model} demos={args.demos} epochs={args.epochs} "
        f"batch={args.batch_size} threads={args.threads} device={'gpu' if args.gpu else 'cpu'}"
    )
    print(f"{'':>6} {'tokens/s':>10} {'mean train loss':>15}")
    print(f"{'ours':>6} {ours['tokens_per_second']:>10.0f} {sum(losses) / len(losses):>15.3f}")
    print(f"{'TRL':>6} {trl_tokens_s:>10.0f} {trl_loss:>15.3f}")
    print(f"ratio ours/TRL tokens/s: {ours['tokens_per_second'] / trl_tokens_s:.2f}x")


if __name__ == "__main__":
    main()
