"""The sweep behind the `tiny` preset's defaults (trainer.config.PRESET_DEFAULTS["tiny"]).

Stage by stage on the loop_efficacy.py data (labels at 73% agreement), each stage starting
from the previous stage's choice:

1. SFT (the demonstrations know no rule): lr x epochs; kept: lowest validation loss.
2. RM, on each --rules preference: lr x epochs; kept: the best mean gap to the noise ceiling.
3. PPO, on each rule with its RM: lr x kl_coef x missing_eos_penalty; kept: the best worst-case
   win share over SFT among settings whose KL to SFT stays under 10 nats on every rule.

Every grid point runs over the current preset defaults, so the choice is read against what
the product does. Prints one table per stage and writes every result as JSON lines.

    nice -n 10 python benchmarks/tiny_defaults_sweep.py          # ~1 h on 2 CPU cores
    nice -n 10 python benchmarks/tiny_defaults_sweep.py --stages ppo --sft-lr 1e-3 ...
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
# a script beside loop_efficacy.py, which it imports from its own directory
from loop_efficacy import (  # type: ignore[import-not-found]  # noqa: E402
    add_arguments,
    make_data,
    quiet,
    run_ppo,
    run_rm,
    run_sft,
)


def grid(**axes: list[Any]) -> list[dict[str, Any]]:
    return [dict(zip(axes, values, strict=True)) for values in itertools.product(*axes.values())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--rules", nargs="+", default=["valence", "brevity", "on_topic"])
    parser.add_argument("--stages", nargs="+", default=["sft", "rm", "ppo"])
    parser.add_argument("--sft-lr", type=float, nargs="+", default=[3e-4, 1e-3, 3e-3])
    parser.add_argument("--sft-epochs", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--rm-lr", type=float, nargs="+", default=[1e-4, 3e-4, 1e-3])
    parser.add_argument("--rm-epochs", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--ppo-lr", type=float, nargs="+", default=[3e-5, 1e-4, 3e-4])
    parser.add_argument("--kl-coef", type=float, nargs="+", default=[0.02, 0.05, 0.1])
    parser.add_argument("--eos-penalty", type=float, nargs="+", default=[1.0])
    parser.add_argument(
        "--sft", type=json.loads, default={}, help="SFT settings (JSON) if not swept"
    )
    parser.add_argument("--rm", type=json.loads, default={}, help="RM settings (JSON) if not swept")
    parser.add_argument("--out", type=Path, default=Path("tiny_sweep.jsonl"))
    args = parser.parse_args()
    quiet(args.threads)
    data = {rule: make_data(rule, args.seed, args) for rule in args.rules}

    def record(row: dict[str, Any]) -> None:
        print(json.dumps(row, default=str), flush=True)
        with args.out.open("a") as f:
            f.write(json.dumps(row, default=str) + "\n")

    with tempfile.TemporaryDirectory(prefix="tiny-sweep-") as tmp:
        root = Path(tmp)
        sft_choice = dict(args.sft)
        if "sft" in args.stages:
            best = None
            for i, point in enumerate(grid(lr=args.sft_lr, epochs=args.sft_epochs)):
                out = root / f"sft{i}"
                result = run_sft(args.model, data[args.rules[0]], out, point, args)
                record({"stage": "sft", **point, **result})
                if best is None or result["sft_val_loss"] < best[1]["sft_val_loss"]:
                    best = (point, result, out)
            assert best is not None
            sft_choice, sft_dir = best[0], best[2]
        else:
            sft_dir = root / "sft"
            run_sft(args.model, data[args.rules[0]], sft_dir, sft_choice, args)
        record({"stage": "sft-choice", **sft_choice})

        rm_choice = dict(args.rm)
        if "rm" in args.stages:
            scores = []
            for point in grid(lr=args.rm_lr, epochs=args.rm_epochs):
                gaps = []
                for rule, d in data.items():
                    result = run_rm(sft_dir, d, root / "rm-tmp", point)
                    gap = result["rm_accuracy"] - d_ceiling(d)
                    gaps.append(gap)
                    record({"stage": "rm", "rule": rule, **point, **result, "gap": gap})
                scores.append((sum(gaps) / len(gaps), point))
            rm_choice = max(scores, key=lambda s: s[0])[1]
        record({"stage": "rm-choice", **rm_choice})
        rm_dirs = {}
        for rule, d in data.items():
            rm_dirs[rule] = root / f"rm-{rule}"
            run_rm(sft_dir, d, rm_dirs[rule], rm_choice)

        if "ppo" in args.stages:
            ranked = []
            points = grid(
                lr=args.ppo_lr, kl_coef=args.kl_coef, missing_eos_penalty=args.eos_penalty
            )
            for point in points:
                params = {**point, "value_lr": point["lr"]}
                wins, kls = [], []
                for rule, d in data.items():
                    result = run_ppo(sft_dir, rm_dirs[rule], d, root / "ppo", params, "ppo", args)
                    wins.append(result["ppo_win_share"])
                    kls.append(result["ppo_kl"])
                    record({"stage": "ppo", "rule": rule, **params, **result})
                ranked.append((max(kls) < 10, min(wins), point))
            best_ppo = max(ranked, key=lambda r: (r[0], r[1]))
            record({"stage": "ppo-choice", **best_ppo[2], "worst_win_share": best_ppo[1]})


def d_ceiling(d: Any) -> float:
    from trainer.synthetic import label_agreement

    return label_agreement(d.val_rankings, d.val_truth)["ceiling"]


if __name__ == "__main__":
    main()
