"""Server-side SVG geometry for the win-rate chart (the paper's Figure 1 in spirit): one point
per system with its 95% interval as a whisker, on a 0-100% axis with the 50% line (as good as
the baseline) dashed. The template draws it; no JavaScript."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

WIDTH, HEIGHT = 560, 240
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 12, 56


@dataclass
class Point:
    label: str
    value: float
    x: float
    y: float
    y_low: float
    y_high: float
    low: float | None
    high: float | None
    judgments: int


@dataclass
class WinChart:
    width: int
    height: int
    left: int
    right: float
    top: int
    bottom: float
    half_y: float  # the 50% line
    ticks: list[tuple[float, str]]
    points: list[Point]
    title: str


def _y(value: float) -> float:
    return TOP + (1 - value) * (HEIGHT - TOP - BOTTOM)


def win_chart(
    rows: Sequence[dict[str, Any]],
    value_key: str = "win_rate",
    ci_key: str = "win_rate_ci95",
    title: str = "Win rate against the baseline",
) -> WinChart | None:
    """The chart of ``rows`` (systems with a value in [0, 1] and its interval); None when no
    row has a value yet."""
    shown = [r for r in rows if r.get(value_key) is not None]
    if not shown:
        return None
    span = (WIDTH - LEFT - RIGHT) / len(shown)
    points = []
    for i, row in enumerate(shown):
        value = float(row[value_key])
        low, high = row.get(ci_key) or (None, None)
        points.append(
            Point(
                label=str(row["name"]),
                value=value,
                x=LEFT + span * (i + 0.5),
                y=_y(value),
                y_low=_y(low if low is not None else value),
                y_high=_y(high if high is not None else value),
                low=low,
                high=high,
                judgments=int(row.get("judgments", 0)),
            )
        )
    ticks = [(_y(v / 100), f"{v}%") for v in (0, 25, 50, 75, 100)]
    return WinChart(
        WIDTH, HEIGHT, LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM, _y(0.5), ticks, points, title
    )
