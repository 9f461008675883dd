"""Agreement statistics against hand-computed cases (app/services/agreement.py)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from app.services.agreement import (
    Judgment,
    Tally,
    agreement_by_labeler,
    cohen_kappa,
    groups_from_ranks,
    kendall_tau_b,
    likert_alpha,
    pair_tally,
    pairwise_agreement,
    ranks_from_groups,
    ranks_from_scores,
    ratio_ci95,
    summarize,
)


def r(*groups: list[Any]) -> dict:
    return ranks_from_groups(groups)


STRICT = r([1], [2], [3], [4])


def test_identical_orders_agree_fully():
    assert pair_tally(STRICT, STRICT) == Tally(6.0, 6)
    assert pairwise_agreement(STRICT, STRICT) == 1.0
    assert kendall_tau_b(STRICT, STRICT) == pytest.approx(1.0)


def test_reversed_orders_agree_never():
    reversed_ = r([4], [3], [2], [1])
    assert pairwise_agreement(STRICT, reversed_) == 0.0
    assert kendall_tau_b(STRICT, reversed_) == pytest.approx(-1.0)


def test_a_tie_against_an_order_counts_half():
    tied = r([1], [2, 3], [4])
    # (2,3) tied by one, ordered by the other: 1/2; the five other pairs agree
    assert pair_tally(tied, STRICT) == Tally(5.5, 6)
    assert pairwise_agreement(tied, STRICT) == pytest.approx(5.5 / 6)
    # tau-b = (C - D) / sqrt((n0 - n1)(n0 - n2)) = 5 / sqrt(5 * 6)
    assert kendall_tau_b(tied, STRICT) == pytest.approx(5 / math.sqrt(30))


def test_pairs_tied_by_both_are_skipped():
    a = r([1, 2], [3])
    assert pair_tally(a, r([1, 2], [3])) == Tally(2.0, 2)
    # all tied by both: nothing to compare
    assert pairwise_agreement(r([1, 2, 3]), r([1, 2, 3])) is None


def test_mixed_ties_and_disagreements():
    a = r([1], [2], [3])
    b = r([3], [1, 2])
    # (1,2): tie vs order 1/2; (1,3) and (2,3): opposite 0
    assert pairwise_agreement(a, b) == pytest.approx(0.5 / 3)
    assert pairwise_agreement(b, a) == pytest.approx(0.5 / 3)


def test_everything_tied_against_an_order():
    assert pairwise_agreement(r([1, 2, 3]), r([1], [2], [3])) == 0.5
    # tau-b is undefined when one side has no order at all
    assert kendall_tau_b(r([1, 2, 3]), r([1], [2], [3])) is None


def test_only_common_outputs_are_compared():
    assert pair_tally(r([1], [2], [9]), r([2], [1], [8])) == Tally(0.0, 1)
    assert kendall_tau_b(r([1]), r([1])) is None


def test_scores_become_a_weak_order_higher_is_better():
    ranks = ranks_from_scores({"a": 0.9, "b": 0.1, "c": 0.9})
    assert groups_from_ranks(ranks) == [["a", "c"], ["b"]]
    assert pairwise_agreement(ranks, r(["a"], ["c"], ["b"])) == pytest.approx(2.5 / 3)


def test_likert_alpha_ordinal_hand_computed():
    # perfect agreement on varied values
    assert likert_alpha([[7, 7], [1, 1], [4, 4]]) == pytest.approx(1.0)
    # units (1,2),(2,1): n1 = n2 = 2, delta_12 = (2 + 2 - 2)^2 = 4,
    # alpha = 1 - (n - 1) * sum(o*delta) / sum(n_c n_k delta) = 1 - 3 * 16 / 32
    assert likert_alpha([[1, 2], [2, 1]]) == pytest.approx(-0.5)
    # units (1,1),(2,2),(1,2): n1 = n2 = 3, delta_12 = 9: alpha = 1 - 5 * 18 / 162 = 4/9
    assert likert_alpha([[1, 1], [2, 2], [1, 2]]) == pytest.approx(4 / 9)
    # units judged once carry no information; a constant score leaves alpha undefined
    assert likert_alpha([[1, 1], [2, 2], [1, 2], [5]]) == pytest.approx(4 / 9)
    assert likert_alpha([[3, 3], [3, 3]]) is None
    assert likert_alpha([[4]]) is None


def test_cohen_kappa_hand_computed():
    # p_o = 3/4, p_e = 1/2 * 1/4 + 1/2 * 3/4 = 1/2: kappa = (3/4 - 1/2) / (1/2)
    assert cohen_kappa([True, True, False, False], [True, False, False, False]) == 0.5
    assert cohen_kappa([True, False], [True, False]) == 1.0
    assert cohen_kappa([True, False], [False, True]) == -1.0
    assert cohen_kappa([False, False], [False, False]) is None
    assert cohen_kappa([], []) is None


def test_bootstrap_interval_surrounds_the_pooled_rate():
    credits, pairs = [5.0, 6.0, 3.0, 4.5, 6.0], [6, 6, 6, 6, 6]
    interval = ratio_ci95(credits, pairs)
    assert interval is not None
    low, high = interval
    assert low <= sum(credits) / sum(pairs) <= high
    assert 0.0 <= low < high <= 1.0
    # reproducible
    assert ratio_ci95(credits, pairs) == (low, high)
    assert ratio_ci95([3.0], [6]) is None
    assert ratio_ci95([6.0, 6.0], [6, 6]) == (1.0, 1.0)


def test_summarize_pools_tasks():
    reversed_ = r([8], [7], [6], [5])
    tasks = {
        "t1": {
            1: Judgment(
                STRICT, likert={1: 7, 2: 5, 3: 3, 4: 1}, flags={1: frozenset({"hallucination"})}
            ),
            2: Judgment(
                STRICT, likert={1: 7, 2: 5, 3: 3, 4: 1}, flags={1: frozenset({"hallucination"})}
            ),
        },
        "t2": {1: Judgment(r([5], [6], [7], [8])), 2: Judgment(reversed_)},
        # one labeler only: no agreement information
        "t3": {1: Judgment(STRICT)},
    }
    report = summarize(tasks, ["hallucination", "harmful_advice"])
    assert report.pairwise_agreement == pytest.approx(6 / 12)
    assert (report.pairs, report.output_pairs, report.tasks) == (2, 12, 2)
    assert report.ci95 == (0.0, 1.0)
    assert report.kendall_tau_b == pytest.approx(0.0)
    assert report.likert_alpha == pytest.approx(1.0)
    assert report.flag_kappa == {"hallucination": 1.0, "harmful_advice": None}
    assert report.as_dict()["ci95"] == [0.0, 1.0]


def test_summarize_counts_every_labeler_pair_and_nothing_when_empty():
    tasks = {"t": {1: Judgment(STRICT), 2: Judgment(STRICT), 3: Judgment(r([4], [3], [2], [1]))}}
    report = summarize(tasks, [])
    # pairs (1,2) agree 6/6, (1,3) and (2,3) 0/6
    assert report.pairwise_agreement == pytest.approx(6 / 18)
    assert report.pairs == 3
    assert report.ci95 is None  # one task: no interval
    empty = summarize({}, ["hallucination"])
    assert empty.pairwise_agreement is None and empty.pairs == 0
    assert empty.flag_kappa == {"hallucination": None}


def test_agreement_by_labeler():
    tasks = {"t": {1: Judgment(STRICT), 2: Judgment(STRICT), 3: Judgment(r([4], [3], [2], [1]))}}
    by_labeler = agreement_by_labeler(tasks)
    assert by_labeler[1] == Tally(6.0, 12) and by_labeler[1].rate == 0.5
    assert by_labeler[3] == Tally(0.0, 12)
