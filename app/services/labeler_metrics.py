"""What one ranking says about its labeler, and when a labeler's figures stand out (pure).

Per ranking (display order = the order the outputs were shown to this labeler):
- **first shown ranked best**: 1 when the first-shown output is alone in the best group,
  1/g when it shares the best group with g outputs, 0 otherwise. Position bias is the sum of
  these over the sum of 1/K (what a labeler indifferent to position gets on average): 1 = no
  bias, K = always puts the first-shown output best. It is flagged only when it is also
  ``Z_MIN`` standard deviations above chance (variance: the sum of 1/K (1 - 1/K)), so a
  careful labeler is not flagged for a lucky streak.
- **contradictions**: output pairs ranked A above B (strictly) with both Likert scores given,
  where A's score is lower than B's.
- **untouched**: submitted exactly in the order shown (no ties) with no Likert score at all.

Outlier rules are in ``OUTLIER_RULES``; each needs a minimum amount of evidence so a new
labeler is not flagged on two rankings (docs/quality.md "Outliers").
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


def first_shown_best(display_order: Sequence[int], ranks: Mapping[int, int]) -> float:
    """1/g when the first output shown is in the best group (of g outputs), else 0."""
    if not display_order or not ranks:
        return 0.0
    best = min(ranks.values())
    if ranks.get(display_order[0]) != best:
        return 0.0
    return 1.0 / sum(1 for rank in ranks.values() if rank == best)


def contradictions(ranks: Mapping[int, int], likert: Mapping[int, int]) -> tuple[int, int]:
    """(pairs ranked one way and scored the other way, pairs ranked strictly with both scores)."""
    scored = [cid for cid in ranks if cid in likert]
    contradicting = pairs = 0
    for i, a in enumerate(scored):
        for b in scored[i + 1 :]:
            if ranks[a] == ranks[b]:
                continue
            better, worse = (a, b) if ranks[a] < ranks[b] else (b, a)
            pairs += 1
            if likert[better] < likert[worse]:
                contradicting += 1
    return contradicting, pairs


def is_untouched(
    display_order: Sequence[int], ranks: Mapping[int, int], likert: Mapping[int, int]
) -> bool:
    """Submitted in the order shown, one output per place, and no Likert score given."""
    if likert:
        return False
    return [ranks.get(cid) for cid in display_order] == list(range(1, len(display_order) + 1))


def excess_z(observed: float, expected: float, variance: float) -> float | None:
    """How many standard deviations ``observed`` lies above what chance gives (a sum of
    independent yes/no outcomes with that expectation and variance); None without variance."""
    if variance <= 0:
        return None
    return (observed - expected) / math.sqrt(variance)


# a figure must also be this many standard deviations beyond chance where a rule asks (about
# one labeler in a thousand flagged by luck)
Z_MIN = 3.0


@dataclass
class Rule:
    figure: str
    # the figure stands out when this is true of (value, team median)
    stands_out: Callable[[float, float | None], bool]
    # the evidence needed: (evidence field, minimum)
    evidence: tuple[str, int]
    explanation: str
    # a row field with the figure's distance from chance in standard deviations (>= Z_MIN)
    z_field: str | None = None


OUTLIER_RULES: tuple[Rule, ...] = (
    Rule(
        "gold_accuracy",
        lambda v, _: v < 0.6,
        ("gold_judgments", 5),
        "agrees with the reference orders on less than 60% of output pairs",
    ),
    Rule(
        "agreement_with_others",
        lambda v, _: v < 0.55,
        ("agreement_pairs", 30),
        "agrees with other labelers on less than 55% of output pairs (random: 50%)",
    ),
    Rule(
        "position_bias",
        lambda v, _: v >= 2.0,
        ("rankings", 10),
        "puts the first-shown output best at least twice as often as chance",
        z_field="position_bias_z",
    ),
    Rule(
        "contradiction_rate",
        lambda v, _: v > 0.2,
        ("likert_pairs", 20),
        "more than 20% of their rankings' pairs are scored the other way round",
    ),
    Rule(
        "untouched_rate",
        lambda v, _: v > 0.25,
        ("rankings", 10),
        "more than a quarter of their rankings were submitted as shown, with no scores",
    ),
    Rule(
        "skip_rate",
        lambda v, _: v > 0.5,
        ("finished", 10),
        "skips more than half of the tasks they take",
    ),
    Rule(
        "median_seconds",
        # (times of a few seconds for everyone are not people reading: nothing to compare)
        lambda v, team: team is not None and team >= 5 and v < team / 4,
        ("rankings", 10),
        "ranks four times faster than the team's median labeler",
    ),
)
EXPLANATIONS = {rule.figure: rule.explanation for rule in OUTLIER_RULES}


def team_medians(rows: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    """Each figure's median over the labelers who have enough evidence for it."""
    medians: dict[str, float | None] = {}
    for rule in OUTLIER_RULES:
        field, minimum = rule.evidence
        values = [
            row[rule.figure]
            for row in rows
            if row[rule.figure] is not None and row.get(field, 0) >= minimum
        ]
        medians[rule.figure] = statistics.median(values) if values else None
    return medians


def outliers(row: Mapping[str, Any], medians: Mapping[str, float | None]) -> list[str]:
    """The figures of one labeler that stand out, with enough evidence behind them."""
    flagged = []
    for rule in OUTLIER_RULES:
        value = row.get(rule.figure)
        field, minimum = rule.evidence
        if value is None or row.get(field, 0) < minimum:
            continue
        if rule.z_field is not None and (row.get(rule.z_field) or 0.0) < Z_MIN:
            continue
        if rule.stands_out(value, medians.get(rule.figure)):
            flagged.append(rule.figure)
    return flagged
