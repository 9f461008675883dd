"""Agreement statistics over labelers' weak orders, Likert scores and flags (pure, no database).

A weak order is a ranking with ties: ``[[a], [b, c], [d]]`` (best group first), or the same as
``ranks`` ``{a: 1, b: 2, c: 2, d: 3}`` (lower is better; only the order of the numbers matters).

- **Pairwise agreement** of two weak orders of the same outputs: over every pair of outputs
  both ranked, 1 when both order the pair the same way, 1/2 when one ties it and the other
  orders it, 0 when they order it oppositely; pairs tied by both are skipped (they say nothing
  about preference). As the InstructGPT paper's inter-annotator agreement figure. Pooled over
  many comparisons it is the sum of credits over the sum of pairs (``Tally``).
- **Kendall's tau-b** (scipy.stats.kendalltau): the rank correlation corrected for ties.
- **Krippendorff's alpha**, ordinal, for Likert scores 1-7 (the ``krippendorff`` package).
- **Cohen's kappa** per metadata flag (scikit-learn), over pairs of judgments of one output.
- **95% intervals** by a percentile bootstrap (scipy.stats.bootstrap) over clusters (tasks or
  labelers), so the output pairs of one task are not treated as independent.

Undefined figures (no pairs, a constant rating, one label only) are ``None``, never NaN.
The evaluation statistics (RM-vs-labeler agreement) use the same functions: an RM's scores
become a weak order with ``ranks_from_scores``.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import krippendorff
import numpy as np
from scipy.stats import bootstrap, kendalltau
from sklearn.metrics import cohen_kappa_score

# an output: a completion id, or anything hashable
K = TypeVar("K", bound=Hashable)
LIKERT_VALUES = tuple(range(1, 8))
BOOTSTRAP_RESAMPLES = 2000


def ranks_from_groups(groups: Iterable[Iterable[K]]) -> dict[K, int]:
    """``[[a], [b, c]]`` → ``{a: 1, b: 2, c: 2}`` (the group's position, 1 = best)."""
    return {item: position for position, group in enumerate(groups, start=1) for item in group}


def ranks_from_scores(scores: Mapping[K, float]) -> dict[K, float]:
    """Scores (higher is better, e.g. a reward model's) as ranks: equal scores tie."""
    return {item: -score for item, score in scores.items()}


def groups_from_ranks(ranks: Mapping[K, float]) -> list[list[K]]:
    """``{a: 1, b: 2, c: 2}`` → ``[[a], [b, c]]`` (items of a group in their given order)."""
    by_rank: dict[float, list[K]] = {}
    for item, rank in ranks.items():
        by_rank.setdefault(rank, []).append(item)
    return [by_rank[rank] for rank in sorted(by_rank)]


@dataclass
class Tally:
    """Agreement credit and the number of output pairs it is over; ``+`` pools tallies."""

    credit: float = 0.0
    pairs: int = 0

    def __add__(self, other: Tally) -> Tally:
        return Tally(self.credit + other.credit, self.pairs + other.pairs)

    @property
    def rate(self) -> float | None:
        return self.credit / self.pairs if self.pairs else None


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def pair_tally(a: Mapping[K, float], b: Mapping[K, float]) -> Tally:
    """Pairwise agreement of two weak orders over the outputs both ranked (see the module)."""
    common = [item for item in a if item in b]
    tally = Tally()
    for x, y in itertools.combinations(common, 2):
        sa, sb = _sign(a[x] - a[y]), _sign(b[x] - b[y])
        if sa == 0 and sb == 0:
            continue
        tally.pairs += 1
        if sa == sb:
            tally.credit += 1.0
        elif sa == 0 or sb == 0:
            tally.credit += 0.5
    return tally


def pairwise_agreement(a: Mapping[K, float], b: Mapping[K, float]) -> float | None:
    """Share of output pairs the two weak orders order alike (ties against an order count
    half; pairs tied by both skipped); None when no pair is left."""
    return pair_tally(a, b).rate


def kendall_tau_b(a: Mapping[K, float], b: Mapping[K, float]) -> float | None:
    """Kendall's tau-b of two weak orders over their common outputs; None when undefined
    (fewer than two outputs, or one order ties everything)."""
    common = [item for item in a if item in b]
    if len(common) < 2:
        return None
    x = [a[item] for item in common]
    y = [b[item] for item in common]
    if len(set(x)) < 2 or len(set(y)) < 2:
        return None
    tau = kendalltau(x, y, variant="b").statistic
    return None if math.isnan(tau) else float(tau)


def likert_alpha(units: Iterable[Sequence[int]]) -> float | None:
    """Krippendorff's alpha (ordinal, values 1-7) over units (one output of one task), each
    the Likert scores its labelers gave. Units with fewer than two scores carry no agreement
    information; None when there are none left or every score is the same value."""
    counts = []
    for scores in units:
        if len(scores) < 2:
            continue
        row = [0] * len(LIKERT_VALUES)
        for score in scores:
            row[score - 1] += 1
        counts.append(row)
    if not counts:
        return None
    matrix = np.array(counts, dtype=float)
    if np.count_nonzero(matrix.sum(axis=0)) < 2:
        return None
    alpha = krippendorff.alpha(
        value_counts=matrix, value_domain=list(LIKERT_VALUES), level_of_measurement="ordinal"
    )
    return None if math.isnan(alpha) else float(alpha)


def cohen_kappa(first: Sequence[bool], second: Sequence[bool]) -> float | None:
    """Cohen's kappa of two raters' yes/no labels (scikit-learn); None when there are no
    labels or chance agreement is 1 (both always said the same single label)."""
    if not first:
        return None
    if len(set(first) | set(second)) < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kappa = cohen_kappa_score(list(first), list(second))
    return None if math.isnan(kappa) else float(kappa)


def ratio_ci95(
    credits: Sequence[float], pairs: Sequence[float], *, seed: int = 0
) -> tuple[float, float] | None:
    """95% percentile-bootstrap interval of ``sum(credits) / sum(pairs)``, resampling the
    clusters (one entry per task or labeler); None with fewer than two clusters."""
    kept = [(c, n) for c, n in zip(credits, pairs, strict=True) if n > 0]
    if len(kept) < 2:
        return None
    c = np.array([k[0] for k in kept], dtype=float)
    n = np.array([k[1] for k in kept], dtype=float)

    def ratio(c: np.ndarray, n: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.asarray(c.sum(axis=axis) / n.sum(axis=axis))

    result = bootstrap(
        (c, n),
        ratio,
        paired=True,
        vectorized=True,
        method="percentile",
        n_resamples=BOOTSTRAP_RESAMPLES,
        rng=np.random.default_rng(seed),
    )
    low, high = result.confidence_interval
    return float(low), float(high)


# agreement over many tasks ------------------------------------------------------------------


@dataclass
class Judgment:
    """One labeler's judgment of one task: ranks (lower is better), Likert scores and flags
    per output (outputs without a score are absent from ``likert``)."""

    ranks: Mapping[Any, float]
    likert: Mapping[Any, int] = field(default_factory=dict)
    flags: Mapping[Any, frozenset[str]] = field(default_factory=dict)


@dataclass
class AgreementReport:
    pairwise_agreement: float | None
    ci95: tuple[float, float] | None
    # labeler pairs compared (two labelers on one task count once)
    pairs: int
    # output pairs the agreement is over
    output_pairs: int
    tasks: int
    kendall_tau_b: float | None
    likert_alpha: float | None
    flag_kappa: dict[str, float | None]

    def as_dict(self) -> dict[str, object]:
        return {
            "pairwise_agreement": self.pairwise_agreement,
            "ci95": list(self.ci95) if self.ci95 else None,
            "pairs": self.pairs,
            "output_pairs": self.output_pairs,
            "tasks": self.tasks,
            "kendall_tau_b": self.kendall_tau_b,
            "likert_alpha": self.likert_alpha,
            "flag_kappa": dict(self.flag_kappa),
        }


def _labeler(item: tuple[int, Judgment]) -> int:
    return item[0]


def summarize(tasks: Mapping[Any, Mapping[int, Judgment]], flags: Iterable[str]) -> AgreementReport:
    """Agreement among the labelers of each task, pooled over tasks.

    ``tasks`` maps a task to its judgments by labeler id.
    Pairwise agreement pools every labeler pair's output pairs (sum of credits over sum of
    pairs), with its interval bootstrapped over tasks; tau-b is the mean over labeler pairs
    where defined; alpha pools every output judged by two or more labelers; kappa pools, per
    flag, every output judged by a pair of labelers (the one with the smaller id first).
    """
    flag_names = list(flags)
    task_tallies: list[Tally] = []
    taus: list[float] = []
    likert_units: list[list[int]] = []
    flag_pairs: dict[str, tuple[list[bool], list[bool]]] = {f: ([], []) for f in flag_names}
    labeler_pairs = 0
    for judgments in tasks.values():
        if len(judgments) < 2:
            continue
        task_tally = Tally()
        for (_, a), (_, b) in itertools.combinations(sorted(judgments.items(), key=_labeler), 2):
            labeler_pairs += 1
            task_tally += pair_tally(a.ranks, b.ranks)
            tau = kendall_tau_b(a.ranks, b.ranks)
            if tau is not None:
                taus.append(tau)
            for output in a.ranks:
                if output not in b.ranks:
                    continue
                for name in flag_names:
                    flag_pairs[name][0].append(name in a.flags.get(output, frozenset()))
                    flag_pairs[name][1].append(name in b.flags.get(output, frozenset()))
        task_tallies.append(task_tally)
        outputs = {output for j in judgments.values() for output in j.ranks}
        for output in outputs:
            likert_units.append(
                [j.likert[output] for j in judgments.values() if output in j.likert]
            )
    total = sum(task_tallies, Tally())
    return AgreementReport(
        pairwise_agreement=total.rate,
        ci95=ratio_ci95([t.credit for t in task_tallies], [t.pairs for t in task_tallies]),
        pairs=labeler_pairs,
        output_pairs=total.pairs,
        tasks=len(task_tallies),
        kendall_tau_b=float(np.mean(taus)) if taus else None,
        likert_alpha=likert_alpha(likert_units),
        flag_kappa={name: cohen_kappa(*flag_pairs[name]) for name in flag_names},
    )


def agreement_by_labeler(
    tasks: Mapping[Any, Mapping[int, Judgment]],
) -> dict[int, Tally]:
    """Each labeler's pooled pairwise agreement with the other labelers of the same tasks."""
    tallies: dict[int, Tally] = {}
    for judgments in tasks.values():
        for (la, a), (lb, b) in itertools.combinations(judgments.items(), 2):
            tally = pair_tally(a.ranks, b.ranks)
            tallies[la] = tallies.get(la, Tally()) + tally
            tallies[lb] = tallies.get(lb, Tally()) + tally
    return tallies
