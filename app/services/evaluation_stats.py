"""The statistics of an evaluation, pure (no database): win rates against a baseline, Likert
scores, flag rates, a Bradley–Terry leaderboard, and the reward model's agreement with the
judges. docs/evaluation.md explains each figure.

- **Win rate** of system S against baseline B: over every judgment of a prompt that shows
  both, 1 when S is ranked above B, 1/2 when they are tied, 0 when below; the mean of that.
- **95% intervals** by a percentile bootstrap over prompts (``agreement.ratio_ci95``:
  scipy.stats.bootstrap, resampling prompts with all their judgments, so several judges of one
  prompt are not taken for independent evidence). Where every prompt gave the same result (a
  system that always wins) the bootstrap has nothing to resample and collapses to a point;
  the interval is then the Wilson score interval with one observation per prompt (each prompt
  counted once is the cautious choice when judgments of a prompt are correlated).
- **Bradley–Terry** strengths fitted as a logistic regression (the model of scikit-learn's
  ``LogisticRegression`` that LMSYS's Chatbot Arena uses, solved by Newton's method) on every pair of outputs ranked in the same judgment (ties: half a win each
  way), with a weak L2 prior (a standard normal on each log-strength) so a system that never
  lost keeps a finite strength. Reported on the win-probability scale: a system's strength is
  its modelled chance of beating an average system of the board, sigmoid(beta - mean beta).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import expit
from scipy.stats import norm

from app.services.agreement import Tally, pair_tally, ranks_from_scores, ratio_ci95

CI_LEVEL = 0.95
BT_RESAMPLES = 500
# the L2 penalty's inverse strength: a standard normal prior on each log-strength
BT_C = 1.0


@dataclass
class EvalJudgment:
    """One judge's judgment of one evaluation task: each system's output's rank (1 = best,
    ties share a rank), Likert score and flags, keyed by system."""

    prompt_id: int
    labeler_id: int
    held_out: bool
    use_case: str | None
    ranks: dict[str, int]
    likert: dict[str, int | None] = field(default_factory=dict)
    flags: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Estimate:
    value: float | None
    ci95: tuple[float, float] | None
    judgments: int
    prompts: int

    def as_pair(self) -> list[float] | None:
        return [round(self.ci95[0], 4), round(self.ci95[1], 4)] if self.ci95 else None


def wilson_interval(rate: float, n: int, level: float = CI_LEVEL) -> tuple[float, float]:
    """Wilson's score interval for a proportion ``rate`` observed over ``n`` trials (real
    ``rate * n`` allowed: ties count half)."""
    z = float(norm.ppf(0.5 + level / 2))
    denominator = 1 + z * z / n
    centre = (rate + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def _by_prompt(values: Iterable[tuple[int, float]]) -> tuple[list[float], list[float]]:
    """Per prompt: the sum of the values and their count (the bootstrap's clusters)."""
    sums: dict[int, float] = defaultdict(float)
    counts: dict[int, float] = defaultdict(float)
    for prompt_id, value in values:
        sums[prompt_id] += value
        counts[prompt_id] += 1
    keys = sorted(sums)
    return [sums[k] for k in keys], [counts[k] for k in keys]


def clustered_mean(
    values: Sequence[tuple[int, float]], *, proportion: bool = False, seed: int = 0
) -> Estimate:
    """The mean of ``(prompt_id, value)`` observations with a 95% bootstrap interval over
    prompts. For a proportion (values in [0, 1]) a collapsed bootstrap gives way to Wilson's
    interval over the prompts (see the module)."""
    if not values:
        return Estimate(None, None, 0, 0)
    sums, counts = _by_prompt(values)
    mean = sum(sums) / sum(counts)
    interval = ratio_ci95(sums, counts, seed=seed)
    if interval is not None and interval[1] - interval[0] < 1e-12:
        interval = None
    if interval is None:
        if proportion:
            interval = wilson_interval(mean, len(sums))
        elif len(set(sums[i] / counts[i] for i in range(len(sums)))) <= 1:
            interval = (mean, mean)  # every prompt gave this mean: no spread to resample
    return Estimate(mean, interval, len(values), len(sums))


def outcome(rank: int, baseline_rank: int) -> float:
    """1 for a win (a better, i.e. smaller, rank), 1/2 for a tie, 0 for a loss."""
    if rank < baseline_rank:
        return 1.0
    return 0.5 if rank == baseline_rank else 0.0


def win_rate(judgments: Iterable[EvalJudgment], system: str, baseline: str) -> Estimate:
    values = [
        (j.prompt_id, outcome(j.ranks[system], j.ranks[baseline]))
        for j in judgments
        if system in j.ranks and baseline in j.ranks
    ]
    return clustered_mean(values, proportion=True)


def likert_mean(judgments: Iterable[EvalJudgment], system: str) -> Estimate:
    values = [
        (j.prompt_id, float(score))
        for j in judgments
        if (score := j.likert.get(system)) is not None
    ]
    return clustered_mean(values)


def likert_distribution(judgments: Iterable[EvalJudgment], system: str) -> dict[str, int]:
    counts = dict.fromkeys((str(v) for v in range(1, 8)), 0)
    for j in judgments:
        score = j.likert.get(system)
        if score is not None:
            counts[str(score)] += 1
    return counts


def flag_rates(
    judgments: Sequence[EvalJudgment], system: str, flags: Iterable[str]
) -> dict[str, float | None]:
    """Share of the judgments of ``system``'s outputs that ticked each flag."""
    seen = [j for j in judgments if system in j.ranks]
    return {
        flag: (
            round(sum(flag in j.flags.get(system, []) for j in seen) / len(seen), 4)
            if seen
            else None
        )
        for flag in flags
    }


def system_summary(
    judgments: Sequence[EvalJudgment],
    system: str,
    baseline: str,
    flags: Iterable[str],
) -> dict[str, Any]:
    """The figures of one system, each with the number of judgments it rests on."""
    wins = win_rate(judgments, system, baseline) if system != baseline else None
    likert = likert_mean(judgments, system)
    return {
        "name": system,
        "judgments": sum(1 for j in judgments if system in j.ranks),
        "prompts": len({j.prompt_id for j in judgments if system in j.ranks}),
        "win_rate": _round(wins.value) if wins else None,
        "win_rate_ci95": wins.as_pair() if wins else None,
        "likert_mean": _round(likert.value),
        "likert_ci95": likert.as_pair(),
        "likert_judgments": likert.judgments,
        "likert_distribution": likert_distribution(judgments, system),
        "flag_rates": flag_rates(judgments, system, flags),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


# reward model -----------------------------------------------------------------------------------


def rm_agreement(
    judgments: Iterable[EvalJudgment], rm_scores: dict[tuple[int, str], float]
) -> Estimate:
    """Pairwise agreement (agreement.pair_tally: ties against an order count half) between
    each judge's order and the order of the RM's scores of the same outputs, pooled, with a
    bootstrap interval over prompts. ``rm_scores`` maps (prompt_id, system) to a score."""
    per_prompt: dict[int, Tally] = defaultdict(Tally)
    judged = 0
    for j in judgments:
        scores: dict[Hashable, float] = {
            s: rm_scores[(j.prompt_id, s)] for s in j.ranks if (j.prompt_id, s) in rm_scores
        }
        if len(scores) < 2:
            continue
        judged += 1
        judge: dict[Hashable, float] = {s: float(r) for s, r in j.ranks.items() if s in scores}
        per_prompt[j.prompt_id] += pair_tally(judge, ranks_from_scores(scores))
    total = sum(per_prompt.values(), Tally())
    keys = sorted(per_prompt)
    interval = ratio_ci95([per_prompt[k].credit for k in keys], [per_prompt[k].pairs for k in keys])
    return Estimate(total.rate, interval, judged, len(keys))


# Bradley–Terry ----------------------------------------------------------------------------------


@dataclass
class Battle:
    """The credits of one task's judgments: ``wins[(a, b)]`` = how often a beat b (ties 1/2)."""

    task: Hashable
    wins: dict[tuple[str, str], float]


def battles_of(task: Hashable, judgments: Iterable[dict[str, int]]) -> Battle:
    """Every pair of outputs ranked in the same judgment, as credits (ties half each way)."""
    wins: dict[tuple[str, str], float] = defaultdict(float)
    for ranks in judgments:
        systems = sorted(ranks)
        for i, a in enumerate(systems):
            for b in systems[i + 1 :]:
                credit = outcome(ranks[a], ranks[b])
                wins[(a, b)] += credit
                wins[(b, a)] += 1 - credit
    return Battle(task, dict(wins))


def _fit_logits(matrices: np.ndarray) -> np.ndarray:
    """Centred log-strengths from credit matrices ``W[..., i, j]`` (credit of i over j): the
    minimum of ``sum_ij W_ij log(1 + exp(-(b_i - b_j))) + |b|^2 / (2 C)``, which is
    scikit-learn's ``LogisticRegression(fit_intercept=False, C=C)`` on one row ``e_i - e_j``
    per pair (a test checks they agree). Solved by Newton's method on every matrix of a stack
    at once (a bootstrap refits it hundreds of times); the objective is strictly convex."""
    stack = matrices[None] if matrices.ndim == 2 else matrices
    r, m, _ = stack.shape
    beta = np.zeros((r, m))
    eye = np.eye(m)
    for _ in range(100):
        diff = beta[:, :, None] - beta[:, None, :]
        p = _sigmoid(diff)  # modelled chance that i beats j
        g = stack * (1 - p)  # d loss / d diff_ij = -W_ij (1 - p_ij)
        gradient = -g.sum(axis=2) + g.sum(axis=1) + beta / BT_C
        n = stack + np.swapaxes(stack, 1, 2)
        curvature = n * p * (1 - p)
        hessian = -curvature + eye * (curvature.sum(axis=2)[:, :, None] + 1 / BT_C)
        step = np.linalg.solve(hessian, gradient[:, :, None])[:, :, 0]
        beta = beta - step
        if np.abs(step).max() < 1e-10:
            break
    beta = beta - beta.mean(axis=1, keepdims=True)
    return np.asarray(beta[0] if matrices.ndim == 2 else beta)


@dataclass
class Standing:
    name: str
    strength: float
    ci95: tuple[float, float] | None
    logit: float
    judgments: int


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(expit(x))


def bradley_terry(
    battles: Sequence[Battle],
    judgments: dict[str, int],
    *,
    resamples: int = BT_RESAMPLES,
    seed: int = 0,
) -> list[Standing]:
    """The leaderboard, best first: strengths on the win-probability scale with percentile
    bootstrap intervals over tasks. ``judgments`` counts the judgments each system was in."""
    names = sorted({name for battle in battles for pair in battle.wins for name in pair})
    if len(names) < 2:
        return [Standing(n, 0.5, None, 0.0, judgments.get(n, 0)) for n in names]
    index = {name: i for i, name in enumerate(names)}
    m = len(names)
    per_task = np.zeros((len(battles), m * m))
    for t, battle in enumerate(battles):
        for (a, b), credit in battle.wins.items():
            per_task[t, index[a] * m + index[b]] += credit
    logits = _fit_logits(per_task.sum(axis=0).reshape(m, m))
    interval: list[tuple[float, float] | None] = [None] * m
    if len(battles) >= 2 and resamples > 0:
        rng = np.random.default_rng(seed)
        draws = rng.multinomial(len(battles), [1 / len(battles)] * len(battles), size=resamples)
        samples = _sigmoid(_fit_logits((draws @ per_task).reshape(resamples, m, m)))
        low = np.percentile(samples, 100 * (1 - CI_LEVEL) / 2, axis=0)
        high = np.percentile(samples, 100 * (1 + CI_LEVEL) / 2, axis=0)
        interval = [(float(lo), float(hi)) for lo, hi in zip(low, high, strict=True)]
    strengths = _sigmoid(logits)
    standings = [
        Standing(name, float(strengths[i]), interval[i], float(logits[i]), judgments.get(name, 0))
        for name, i in index.items()
    ]
    return sorted(standings, key=lambda s: s.strength, reverse=True)
