"""One ranking per task from its labelers' weak orders: the Borda count with ties (pure).

Each labeler gives an output one point per output they ranked below it and half a point per
output they tied with it (scipy.stats.rankdata's average ranks: ``n - average rank``). An
output's consensus score is the mean of its points over the labelers who ranked it, so the
score reads as "how many outputs it beats", and outputs with equal scores tie in the
consensus order. With one labeler the consensus is their ranking.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar

from scipy.stats import rankdata

K = TypeVar("K", bound=Hashable)
# scores closer than this are equal (sums of halves divided by a small count)
_TIE = 1e-9


def borda_scores(orders: Sequence[Mapping[K, float]]) -> dict[K, float]:
    """Mean Borda points of each output over the orders (ranks: lower is better) that rank it."""
    totals: dict[K, float] = {}
    counts: dict[K, int] = {}
    for order in orders:
        items = list(order)
        average_ranks = rankdata([order[item] for item in items], method="average")
        for item, rank in zip(items, average_ranks, strict=True):
            totals[item] = totals.get(item, 0.0) + (len(items) - float(rank))
            counts[item] = counts.get(item, 0) + 1
    return {item: totals[item] / counts[item] for item in totals}


def consensus_groups(scores: Mapping[K, float]) -> list[list[K]]:
    """Tie groups, best (highest score) first; equal scores tie."""
    groups: list[list[K]] = []
    last: float | None = None
    for item in sorted(scores, key=lambda i: -scores[i]):
        if last is not None and abs(scores[item] - last) <= _TIE:
            groups[-1].append(item)
        else:
            groups.append([item])
            last = scores[item]
    return groups
