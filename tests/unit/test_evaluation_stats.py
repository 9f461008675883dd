"""Evaluation statistics against hand-computed cases and simulations of known truth."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest

from app.services.evaluation_stats import (
    EvalJudgment,
    battles_of,
    bradley_terry,
    clustered_mean,
    flag_rates,
    likert_distribution,
    likert_mean,
    outcome,
    rm_agreement,
    system_summary,
    wilson_interval,
    win_rate,
)


def judgment(prompt: int, ranks: dict[str, int], labeler: int = 1, **kw) -> EvalJudgment:
    return EvalJudgment(prompt, labeler, False, None, ranks, **kw)


def test_outcomes_count_ties_half() -> None:
    assert (outcome(1, 2), outcome(2, 2), outcome(3, 2)) == (1.0, 0.5, 0.0)
    js = [
        judgment(1, {"new": 1, "base": 2}),  # win
        judgment(2, {"new": 1, "base": 1}),  # tie
        judgment(3, {"new": 2, "base": 1}),  # loss
        judgment(4, {"new": 1, "base": 3, "other": 2}),  # win (other does not matter)
    ]
    estimate = win_rate(js, "new", "base")
    assert estimate.value == pytest.approx((1 + 0.5 + 0 + 1) / 4)
    assert (estimate.judgments, estimate.prompts) == (4, 4)
    assert estimate.value is not None and estimate.ci95 is not None
    lo, hi = estimate.ci95
    assert 0 <= lo < estimate.value < hi <= 1


def test_repeated_judgments_of_a_prompt_are_one_cluster() -> None:
    # 2 prompts x 3 judges: the pooled rate counts every judgment ...
    js = [judgment(1, {"a": 1, "b": 2}, labeler=i) for i in range(3)]
    js += [judgment(2, {"a": 2, "b": 1}, labeler=i) for i in range(3)]
    estimate = win_rate(js, "a", "b")
    assert estimate.value == 0.5 and estimate.judgments == 6 and estimate.prompts == 2
    # ... but the bootstrap resamples prompts: with two prompts it can only say 0, 1/2 or 1
    assert estimate.ci95 == (0.0, 1.0)


def test_a_system_that_always_wins_gets_a_wilson_interval_over_prompts() -> None:
    js = [judgment(p, {"a": 1, "b": 2}, labeler=n) for p in range(20) for n in range(2)]
    estimate = win_rate(js, "a", "b")
    assert estimate.value == 1.0
    ci95 = estimate.ci95
    assert ci95 is not None
    lo, hi = ci95
    assert hi == 1.0
    # one observation per prompt: 20 of 20, Wilson's lower bound is 0.839 (by hand:
    # (1 + z^2/40 - z/(1+z^2/20) * sqrt(z^2/1600)) / (1 + z^2/20), z = 1.96)
    assert lo == pytest.approx(0.8389, abs=1e-3)
    ci = binomtest(20, 20).proportion_ci(method="wilson")
    assert (lo, hi) == pytest.approx((ci.low, ci.high))
    never = win_rate([judgment(p, {"a": 2, "b": 1}) for p in range(20)], "a", "b")
    assert never.value == 0.0 and never.ci95 == pytest.approx((0.0, 1 - 0.8389), abs=1e-3)


def test_wilson_matches_scipy_for_whole_counts() -> None:
    for k, n in ((0, 5), (3, 10), (7, 7), (50, 120)):
        ci = binomtest(k, n).proportion_ci(method="wilson")
        assert wilson_interval(k / n, n) == pytest.approx((ci.low, ci.high))


def test_bootstrap_intervals_cover_the_true_rate_at_about_95_percent() -> None:
    """Prompts differ in how often the system wins (a Beta spread around the true rate), each
    judged by two labelers: intervals that treated the judgments as independent would be too
    narrow. Over 300 simulated evaluations of 40 prompts the intervals over prompts cover the
    true rate about 95% of the time."""
    rng = np.random.default_rng(7)
    true_rate, covered, runs = 0.65, 0, 300
    for _ in range(runs):
        per_prompt = rng.beta(true_rate * 4, (1 - true_rate) * 4, size=40)
        js = [
            judgment(p, {"a": 1, "b": 2} if rng.random() < q else {"a": 2, "b": 1}, labeler=n)
            for p, q in enumerate(per_prompt)
            for n in range(2)
        ]
        ci95 = win_rate(js, "a", "b").ci95
        assert ci95 is not None
        lo, hi = ci95
        covered += lo <= true_rate <= hi
    assert 0.90 <= covered / runs <= 0.985, covered / runs


def test_likert_mean_distribution_and_flags() -> None:
    js = [
        judgment(1, {"a": 1, "b": 2}, likert={"a": 7, "b": 3}, flags={"b": ["hallucination"]}),
        judgment(2, {"a": 1, "b": 2}, likert={"a": 5, "b": 3}, flags={"a": ["hallucination"]}),
        judgment(3, {"a": 2, "b": 1}, likert={"a": 6, "b": 3}),
    ]
    mean = likert_mean(js, "a")
    assert mean.value == pytest.approx(6.0) and mean.judgments == 3
    assert mean.ci95 is not None and mean.ci95[0] <= 6.0 <= mean.ci95[1]
    constant = likert_mean(js, "b")
    assert constant.value == 3.0 and constant.ci95 == (3.0, 3.0)
    assert likert_distribution(js, "a") == {"1": 0, "2": 0, "3": 0, "4": 0, "5": 1, "6": 1, "7": 1}
    rates = flag_rates(js, "b", ["hallucination", "harmful_advice"])
    assert rates == {"hallucination": pytest.approx(1 / 3, abs=1e-4), "harmful_advice": 0.0}
    summary = system_summary(js, "b", "b", ["hallucination"])
    assert summary["win_rate"] is None and summary["judgments"] == 3  # the baseline itself
    assert clustered_mean([]).value is None


def test_bradley_terry_recovers_a_known_ordering() -> None:
    truth = {"d": 1.5, "c": 0.5, "b": -0.5, "a": -1.5}  # log-strengths
    rng = np.random.default_rng(3)
    battles = []
    names = sorted(truth)
    for task in range(300):
        # one judgment per task of all four systems, ranked by Gumbel-perturbed strengths
        # (Plackett-Luce, whose pairwise marginals are Bradley-Terry)
        noisy = {n: truth[n] + rng.gumbel() for n in names}
        order = sorted(names, key=lambda n: -noisy[n])
        battles.append(battles_of(task, [{n: order.index(n) + 1 for n in names}]))
    board = bradley_terry(battles, dict.fromkeys(names, 300), resamples=100)
    assert [s.name for s in board] == ["d", "c", "b", "a"]
    for standing in board:
        ci95 = standing.ci95
        assert ci95 is not None
        lo, hi = ci95
        assert lo < standing.strength < hi
        assert standing.logit == pytest.approx(truth[standing.name], abs=0.35)
    # on the win-probability scale: the best beats an average system most of the time
    assert board[0].strength > 0.75 and board[-1].strength < 0.25
    # a difference of logits reads as the chance one beats the other
    d, a = board[0], board[-1]
    assert 1 / (1 + np.exp(-(d.logit - a.logit))) == pytest.approx(0.95, abs=0.03)


def test_the_fit_is_scikit_learns_logistic_regression() -> None:
    from sklearn.linear_model import LogisticRegression

    from app.services.evaluation_stats import BT_C, _fit_logits

    matrix = np.array([[0, 7, 3.5], [2, 0, 4], [0.5, 1, 0]])
    rows, targets, weights = [], [], []
    for i in range(3):
        for j in range(3):
            if i != j and matrix[i, j] > 0:
                x = np.zeros(3)
                x[i], x[j] = 1.0, -1.0
                rows.append(x)
                targets.append(1)
                weights.append(matrix[i, j])
                rows.append(-x)  # the same pair seen from j: a loss for j
                targets.append(0)
                weights.append(0.0)
    sk = LogisticRegression(fit_intercept=False, C=BT_C, tol=1e-10, max_iter=10000)
    sk.fit(np.array(rows), np.array(targets), sample_weight=np.array(weights))
    expected = sk.coef_[0] - sk.coef_[0].mean()
    assert _fit_logits(matrix) == pytest.approx(expected, abs=1e-4)


def test_bradley_terry_with_a_system_that_never_loses_and_ties() -> None:
    battles = [battles_of(t, [{"x": 1, "y": 2}]) for t in range(10)]
    battles += [battles_of(10 + t, [{"x": 1, "y": 1}]) for t in range(2)]
    board = bradley_terry(battles, {"x": 12, "y": 12}, resamples=50)
    assert [s.name for s in board] == ["x", "y"]
    assert np.isfinite(board[0].logit) and board[0].strength < 1.0
    assert board[0].strength + board[1].strength == pytest.approx(1.0)
    assert board[0].judgments == 12


def test_rm_agreement_with_the_judges() -> None:
    js = [
        judgment(1, {"a": 1, "b": 2, "c": 3}),
        judgment(2, {"a": 1, "b": 1, "c": 2}),
    ]
    scores = {
        (1, "a"): 2.0, (1, "b"): 1.0, (1, "c"): 3.0,  # agrees on a>b only: 1 of 3 pairs
        (2, "a"): 1.0, (2, "b"): 0.0, (2, "c"): -1.0,  # a-b tied by the judge: half; 2 agree
    }  # fmt: skip
    estimate = rm_agreement(js, scores)
    assert estimate.value == pytest.approx((1 + 2.5) / 6)
    assert estimate.judgments == 2 and estimate.prompts == 2
