"""The K-way RM loss against a brute-force computation over explicit pairs, and the number of
forward sequences it costs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, cast

import torch

from trainer import data
from trainer.config import RMConfig
from trainer.models import load_reward_model, sequence_scores
from trainer.reward import rank_loss, train_reward_model

# Mixed K (4, 9, 5) in one batch, with ties (ranks shared) in the first two prompts.
ROWS: list[dict[str, Any]] = [
    {
        "prompt": "Describe the frog.",
        "completions": [
            {"text": "kind warm", "rank": 2},
            {"text": "sad bad", "rank": 3},
            {"text": "happy bright good", "rank": 1},
            {"text": "dull kind", "rank": 2},
        ],
    },
    {
        "prompt": "Describe the moon.",
        "completions": [
            {"text": w, "rank": r}
            for w, r in zip(
                [
                    "best",
                    "good kind",
                    "sad",
                    "cold wrong",
                    "warm",
                    "bright happy",
                    "rude",
                    "clear",
                    "useless dull angry",
                ],
                [1, 1, 3, 4, 2, 1, 3, 2, 5],
                strict=True,
            )
        ],
    },
    {
        "prompt": "Describe the river.",
        "completions": [
            {"text": t, "rank": r}
            for t, r in zip(["a", "b c", "d e f", "g", "h i"], [5, 4, 3, 2, 1], strict=True)
        ],
    },
]


class BackboneCounter:
    """Counts sequences through every GPT-2 backbone forward (training mode only)."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, module: torch.nn.Module, args: tuple, kwargs: dict, out: object) -> None:
        if type(module).__name__ == "GPT2Model" and module.training:
            ids = kwargs.get("input_ids", args[0] if args else None)
            assert ids is not None
            self.calls.append(int(ids.shape[0]))


def brute_force_loss(model: torch.nn.Module, tokenizer: object, rows: list[dict]) -> float:
    """Score every completion alone, enumerate the explicit (winner, loser) pairs, and apply
    loss = -1/C(K,2) * sum log sigmoid(r_w - r_l) per prompt, averaged over prompts."""
    per_prompt = []
    for row in rows:
        rewards = []
        for c in row["completions"]:
            ids, _ = data.encode_example(tokenizer, row["prompt"], c["text"], 64)
            x = torch.tensor([ids])
            rewards.append(float(sequence_scores(model, x, torch.ones_like(x))[0]))
        k = len(rewards)
        total = 0.0
        for i in range(k):
            for j in range(k):
                if row["completions"][i]["rank"] < row["completions"][j]["rank"]:
                    total += -math.log(1 / (1 + math.exp(-(rewards[i] - rewards[j]))))
        per_prompt.append(total / math.comb(k, 2))
    return sum(per_prompt) / len(per_prompt)


def test_rank_loss_equals_brute_force_with_ties_and_mixed_k(tiny: Path) -> None:
    torch.manual_seed(0)
    model, tokenizer, _ = load_reward_model(str(tiny))
    torch.nn.init.normal_(
        cast(torch.nn.Linear, model.score).weight, std=1.0
    )  # spread the rewards out
    model.train()  # count this forward; dropout off so both computations see the same net
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0

    batch = data.ranking_batch(tokenizer, data.rankings(ROWS), 64)
    counter = BackboneCounter()
    handle = torch.nn.modules.module.register_module_forward_hook(counter, with_kwargs=True)
    try:
        rewards = sequence_scores(model, batch["input_ids"], batch["attention_mask"])
        loss, stats = rank_loss(rewards, batch["ranks"], batch["group"])
    finally:
        handle.remove()

    assert counter.calls == [4 + 9 + 5]  # one forward, exactly K sequences per prompt
    expected_pairs = sum(
        sum(a["rank"] < b["rank"] for a in r["completions"] for b in r["completions"]) for r in ROWS
    )
    assert int(stats["pairs"]) == expected_pairs < math.comb(4, 2) + math.comb(9, 2) + 10
    with torch.no_grad():
        model.eval()
        expected = brute_force_loss(model, tokenizer, ROWS)
    assert loss.item() > 0.1  # not a degenerate case
    assert abs(loss.item() - expected) < 1e-5 * max(1.0, expected)


def test_training_forwards_exactly_k_sequences_per_prompt(tiny: Path, tmp_path: Path) -> None:
    rows = ROWS * 2  # 6 prompts, batch_size 4: one batch of 4 prompts, one of 2
    counter = BackboneCounter()
    handle = torch.nn.modules.module.register_module_forward_hook(counter, with_kwargs=True)
    try:
        train_reward_model(
            str(tiny),
            rows,
            tmp_path / "rm",
            config=RMConfig(epochs=1, batch_size=4, max_length=64, lr=1e-4),
        )
    finally:
        handle.remove()
    assert len(counter.calls) == 2  # one forward per batch of prompts
    assert sum(counter.calls) == 2 * (4 + 9 + 5)  # = sum of K, not 2 per comparison
