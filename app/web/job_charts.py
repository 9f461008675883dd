"""Server-side line charts of job metrics as SVG geometry (no JavaScript charting library):
the template draws axes, grid lines and a <polyline> from what is computed here.

What matters first: metrics are grouped (the loss and validation figures of SFT and RM; reward,
KL and entropy of PPO; other training figures), and timings and throughput go into a folded
group. Axes have "nice" ticks (1, 2, 2.5 or 5 x 10^k) over the data's real range, labelled
with as many decimals as the step needs, so the top and bottom labels always differ. A metric
reported once, or constant, is a value in the results table, not a chart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# drawing box (the SVG viewBox); shown at >= WIDTH px (the chart grid's column), so the
# FONT-unit axis text is at least FONT px on screen
WIDTH, HEIGHT = 360, 180
LEFT, RIGHT, TOP, BOTTOM = 56, 10, 10, 26
FONT = 12
MAX_POINTS = 300

GROUPS = (
    ("loss", "Loss and validation"),
    ("policy", "Reward, KL and entropy"),
    ("other", "Other training figures"),
    ("timing", "Timings and throughput"),
)
# the method's headline numbers first within their group
PREFERRED = (
    "loss", "train_loss", "val_loss", "accuracy", "val_accuracy", "val_rm_score",
    "reward", "kl", "entropy", "non_score_reward", "policy_loss", "value_loss", "ptx_loss",
    "approx_kl", "clip_fraction",
)  # fmt: skip


def group_of(name: str) -> str:
    """Which group a metric belongs to, by its name."""
    if name.startswith("time_") or name.endswith(("_seconds", "per_second", "_time")):
        return "timing"
    if name in ("reward", "kl", "entropy", "non_score_reward", "approx_kl", "clip_fraction"):
        return "policy"
    if "loss" in name or "accuracy" in name or name.startswith("val_") or "score" in name:
        return "loss"
    return "other"


@dataclass
class Tick:
    pos: float  # in viewBox units along its axis
    label: str


@dataclass
class Chart:
    name: str
    points: str  # "x,y x,y ..." in the WIDTH x HEIGHT box
    first: float
    last: float
    low: float
    high: float
    steps: tuple[int, int]
    count: int
    y_ticks: list[Tick] = field(default_factory=list)
    x_ticks: list[Tick] = field(default_factory=list)

    @property
    def digits(self) -> int:
        """Significant digits that tell the low, high and last values apart (at least 4)."""
        values = {self.low, self.high, self.last}
        for digits in range(4, 12):
            if len({f"{v:.{digits}g}" for v in values}) == len(values):
                return digits
        return 12

    def fmt(self, value: float) -> str:
        return f"{value:.{self.digits}g}"


@dataclass
class ChartGroup:
    key: str
    title: str
    charts: list[Chart]
    folded: bool


def _thin(series: list[tuple[int, float]]) -> list[tuple[int, float]]:
    if len(series) <= MAX_POINTS:
        return series
    stride = len(series) / MAX_POINTS
    return [series[int(i * stride)] for i in range(MAX_POINTS)] + [series[-1]]


def nice_ticks(low: float, high: float, count: int = 4) -> tuple[float, float, list[float], int]:
    """(axis low, axis high, ticks, decimals): ``count``-ish ticks at 1/2/2.5/5 x 10^k steps
    covering [low, high], and the decimals that tell adjacent ticks apart."""
    if high <= low:  # a single value: a small window around it
        pad = abs(low) * 0.05 or 1.0
        low, high = low - pad, high + pad
    raw = (high - low) / max(count - 1, 1)
    exponent = math.floor(math.log10(raw))
    mantissa = next(m for m in (1, 2, 2.5, 5, 10) if m * 10**exponent >= raw * (1 - 1e-9))
    if mantissa == 10:
        mantissa, exponent = 1, exponent + 1
    step = mantissa * 10.0**exponent
    start = math.floor(low / step + 1e-9) * step
    stop = math.ceil(high / step - 1e-9) * step
    ticks = [start + i * step for i in range(round((stop - start) / step) + 1)]
    decimals = max(0, -exponent) + (1 if mantissa == 2.5 else 0)
    return start, stop, ticks, decimals


def _label(value: float, decimals: int) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e6 or (abs(value) < 1e-4 and decimals > 6):
        return f"{value:.3g}"
    return f"{value:.{decimals}f}"


def chart(name: str, series: list[tuple[int, float]]) -> Chart:
    points = _thin(series)
    steps = [s for s, _ in points]
    values = [v for _, v in points]
    low, high = min(values), max(values)
    x0, x1 = min(steps), max(steps)
    y_lo, y_hi, y_ticks, y_dec = nice_ticks(low, high)
    span_x = (x1 - x0) or 1
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x_of(step: float) -> float:
        return LEFT + (step - x0) / span_x * plot_w

    def y_of(value: float) -> float:
        return TOP + plot_h - (value - y_lo) / (y_hi - y_lo) * plot_h

    def xy(step: int, value: float, i: int) -> str:
        # points of one step (several reports at a step) spread by index instead of stacking
        x = x_of(step) if x1 > x0 else LEFT + i / max(len(points) - 1, 1) * plot_w
        return f"{x:.1f},{y_of(value):.1f}"

    if x1 > x0:
        _, _, x_values, _ = nice_ticks(x0, x1, 4)
        x_ticks = [Tick(x_of(s), f"{s:g}") for s in x_values if x0 <= s <= x1]
    else:
        x_ticks = [Tick(LEFT, f"{x0}")]
    return Chart(
        name=name,
        points=" ".join(xy(s, v, i) for i, (s, v) in enumerate(points)),
        first=values[0], last=values[-1], low=low, high=high,
        steps=(x0, x1), count=len(series),
        y_ticks=[Tick(y_of(t), _label(t, y_dec)) for t in y_ticks],
        x_ticks=x_ticks,
    )  # fmt: skip


def charts(series: dict[str, list[tuple[int, float]]]) -> list[Chart]:
    """One chart per metric that changes over at least two points, the method's first."""
    order = [n for n in PREFERRED if n in series] + sorted(n for n in series if n not in PREFERRED)
    return [
        chart(name, series[name])
        for name in order
        if len(series[name]) >= 2
        and min(v for _, v in series[name]) < max(v for _, v in series[name])
    ]


def chart_groups(series: dict[str, list[tuple[int, float]]]) -> list[ChartGroup]:
    """The charts in GROUPS order (reward, KL and entropy first for a job that reports a
    reward: PPO), empty groups left out; timings folded."""
    by_group: dict[str, list[Chart]] = {}
    for c in charts(series):
        by_group.setdefault(group_of(c.name), []).append(c)
    order = list(GROUPS)
    if "policy" in by_group:
        order.sort(key=lambda g: g[0] != "policy")
    return [
        ChartGroup(key, title, by_group[key], folded=key == "timing")
        for key, title in order
        if by_group.get(key)
    ]
