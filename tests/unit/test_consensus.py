"""Borda count with ties (app/services/consensus.py) on hand-computed cases."""

from __future__ import annotations

import pytest

from app.services.agreement import ranks_from_groups
from app.services.consensus import borda_scores, consensus_groups


def test_one_labeler_is_the_consensus() -> None:
    order = ranks_from_groups([["a"], ["b", "c"], ["d"]])
    scores = borda_scores([order])
    # points: outputs ranked below + half the outputs tied with it
    assert scores == {"a": 3.0, "b": 1.5, "c": 1.5, "d": 0.0}
    assert consensus_groups(scores) == [["a"], ["b", "c"], ["d"]]


def test_two_labelers_who_swap_the_top_pair_tie_it() -> None:
    first = ranks_from_groups([["a"], ["b"], ["c"], ["d"]])
    second = ranks_from_groups([["b"], ["a"], ["c"], ["d"]])
    scores = borda_scores([first, second])
    assert scores == {"a": 2.5, "b": 2.5, "c": 1.0, "d": 0.0}
    assert consensus_groups(scores) == [["a", "b"], ["c"], ["d"]]


def test_majority_wins_and_partial_orders_average_over_who_ranked() -> None:
    orders = [
        ranks_from_groups([["a"], ["b"], ["c"]]),
        ranks_from_groups([["a"], ["b"], ["c"]]),
        ranks_from_groups([["c"], ["b"], ["a"]]),
    ]
    scores = borda_scores(orders)
    assert scores["a"] == pytest.approx(4 / 3) and scores["b"] == 1.0
    assert consensus_groups(scores) == [["a"], ["b"], ["c"]]
    # an output only one labeler saw is scored over that labeler alone
    partial = borda_scores([ranks_from_groups([["x"], ["y"]]), ranks_from_groups([["y"], ["z"]])])
    assert partial == {"x": 1.0, "y": 0.5, "z": 0.0}
