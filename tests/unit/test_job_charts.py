"""Job charts: real ranges with readable, distinct tick labels; what matters first; timings
folded; constants and one-off values left to the table."""

from __future__ import annotations

import pytest

from app.web.job_charts import chart, chart_groups, group_of, nice_ticks


@pytest.mark.parametrize(
    ("low", "high"),
    [(6.6289, 6.6291), (0.12, 3.7), (-2.5, 0.75), (1e-6, 3e-6), (0, 1e7), (5.0, 5.0), (99, 101)],
)
def test_ticks_cover_the_data_with_labels_that_differ(low: float, high: float) -> None:
    start, stop, ticks, decimals = nice_ticks(low, high)
    assert start <= low + 1e-12 and stop >= high - 1e-12 and 3 <= len(ticks) <= 7
    labels = [f"{t:.{decimals}f}" if abs(t) < 1e6 else f"{t:.3g}" for t in ticks]
    assert len(set(labels)) == len(labels), labels


def test_a_nearly_flat_loss_gets_honest_axis_labels() -> None:
    # the bug: "6.629" at the top and the bottom of a steep-looking line
    c = chart("loss", [(1, 6.62912), (2, 6.62905), (3, 6.62893)])
    labels = [t.label for t in c.y_ticks]
    assert labels[0] != labels[-1] and all(label.startswith("6.62") for label in labels)
    assert c.fmt(c.low) != c.fmt(c.high)  # the caption's range too
    ys = [float(p.split(",")[1]) for p in c.points.split()]
    top, bottom = min(t.pos for t in c.y_ticks), max(t.pos for t in c.y_ticks)
    assert all(top - 0.01 <= y <= bottom + 0.01 for y in ys)  # inside the labelled range


def test_groups_put_loss_and_policy_first_and_fold_timings() -> None:
    series = {
        "time_generation": [(1, 0.5), (2, 0.7)],
        "comparisons_per_second": [(1, 30.0), (2, 31.0)],
        "reward": [(1, -0.2), (2, 0.4)],
        "kl": [(1, 0.0), (2, 0.02)],
        "entropy": [(1, 2.0), (2, 1.9)],
        "loss": [(1, 0.7), (2, 0.6)],
        "val_accuracy_k4": [(1, 0.5), (2, 0.6)],
        "lr": [(1, 1e-5), (2, 1e-5)],  # constant: the table shows it
        "comparisons": [(2, 64.0)],  # reported once: the table shows it
    }
    groups = chart_groups(series)
    assert [(g.key, [c.name for c in g.charts], g.folded) for g in groups] == [
        ("policy", ["reward", "kl", "entropy"], False),  # a PPO job: its reward first
        ("loss", ["loss", "val_accuracy_k4"], False),
        ("timing", ["comparisons_per_second", "time_generation"], True),
    ]
    assert group_of("train_seconds") == "timing" and group_of("val_rm_score") == "loss"
