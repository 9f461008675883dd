"""What one ranking says about its labeler, and outlier rules (app/services/labeler_metrics.py)."""

from __future__ import annotations

import pytest

from app.services.labeler_metrics import (
    contradictions,
    first_shown_best,
    is_untouched,
    outliers,
    team_medians,
)

SHOWN = [30, 10, 20, 40]


def test_first_shown_best_counts_a_share_of_a_tied_best_group() -> None:
    assert first_shown_best(SHOWN, {30: 1, 10: 2, 20: 3, 40: 4}) == 1.0
    assert first_shown_best(SHOWN, {30: 2, 10: 1, 20: 3, 40: 4}) == 0.0
    # tied best with one other output: half the credit
    assert first_shown_best(SHOWN, {30: 1, 10: 1, 20: 2, 40: 3}) == 0.5
    assert first_shown_best([], {}) == 0.0


def test_contradictions_between_rank_and_likert() -> None:
    ranks = {1: 1, 2: 2, 3: 3, 4: 3}
    # 1 > 2 > 3 = 4 ranked; scores 5, 6, 4, 7 (4 unscored below is left out)
    likert = {1: 5, 2: 6, 3: 4}
    # pairs strictly ordered with both scores: (1,2) contradicts, (1,3) fine, (2,3) fine
    assert contradictions(ranks, likert) == (1, 3)
    # equal scores are no contradiction, tied ranks no pair
    assert contradictions({1: 1, 2: 2}, {1: 4, 2: 4}) == (0, 1)
    assert contradictions({1: 1, 2: 1}, {1: 1, 2: 7}) == (0, 0)
    assert contradictions({1: 1, 2: 2}, {}) == (0, 0)


def test_untouched_means_shown_order_no_ties_no_scores() -> None:
    as_shown = {30: 1, 10: 2, 20: 3, 40: 4}
    assert is_untouched(SHOWN, as_shown, {})
    assert not is_untouched(SHOWN, as_shown, {30: 7})
    assert not is_untouched(SHOWN, {30: 1, 10: 1, 20: 2, 40: 3}, {})
    assert not is_untouched(SHOWN, {30: 2, 10: 1, 20: 3, 40: 4}, {})


def _row(**figures: float | int | None) -> dict:
    row: dict[str, float | int | None] = {
        "gold_accuracy": None,
        "gold_judgments": 0,
        "agreement_with_others": None,
        "agreement_pairs": 0,
        "position_bias": None,
        "position_bias_z": None,
        "rankings": 0,
        "contradiction_rate": None,
        "likert_pairs": 0,
        "untouched_rate": None,
        "skip_rate": None,
        "finished": 0,
        "median_seconds": None,
    }
    row.update(figures)
    return row


def test_outliers_need_evidence_and_stand_out() -> None:
    careful = _row(
        gold_accuracy=0.85, gold_judgments=10, position_bias=1.1, rankings=40, median_seconds=60
    )
    rushing = _row(
        gold_accuracy=0.4,
        gold_judgments=10,
        position_bias=3.5,
        position_bias_z=8.0,
        rankings=40,
        untouched_rate=0.6,
        median_seconds=5,
    )
    new = _row(gold_accuracy=0.0, gold_judgments=1, position_bias=4.0, rankings=2)
    rows = [careful, careful, rushing, new]
    medians = team_medians(rows)
    assert medians["median_seconds"] == 60
    assert outliers(careful, medians) == []
    assert outliers(rushing, medians) == [
        "gold_accuracy",
        "position_bias",
        "untouched_rate",
        "median_seconds",
    ]
    # two rankings are not enough to call anyone an outlier
    assert outliers(new, medians) == []


def test_position_bias_needs_to_be_beyond_chance() -> None:
    from app.services.labeler_metrics import excess_z

    # ten rankings of K=4: chance gives 2.5 first-shown-best, variance 10 * 1/4 * 3/4
    lucky = excess_z(5, 2.5, 1.875)
    always = excess_z(10, 2.5, 1.875)
    assert lucky is not None and always is not None
    assert lucky == pytest.approx(2.5 / 1.875**0.5) and lucky < 3
    assert always > 5
    medians = team_medians([])
    row = _row(position_bias=2.0, position_bias_z=lucky, rankings=10)
    assert outliers(row, medians) == []
    assert outliers(row | {"position_bias": 4.0, "position_bias_z": always}, medians) == [
        "position_bias"
    ]
    assert excess_z(1, 1, 0) is None
