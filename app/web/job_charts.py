"""Server-side line charts of job metrics as SVG geometry (no JavaScript charting library):
the template draws a <polyline> from the points computed here."""

from __future__ import annotations

from dataclasses import dataclass

WIDTH, HEIGHT, PAD = 320, 120, 6
MAX_POINTS = 300
# the method's headline numbers first; anything else the trainer reports follows
PREFERRED = (
    "loss", "val_loss", "train_loss", "accuracy", "val_accuracy", "reward", "val_rm_score",
    "kl", "policy_loss", "value_loss", "ptx_loss", "lr",
)  # fmt: skip


@dataclass
class Chart:
    name: str
    points: str  # "x,y x,y ..." in a WIDTH x HEIGHT box
    first: float
    last: float
    low: float
    high: float
    steps: tuple[int, int]
    count: int


def _thin(series: list[tuple[int, float]]) -> list[tuple[int, float]]:
    if len(series) <= MAX_POINTS:
        return series
    stride = len(series) / MAX_POINTS
    return [series[int(i * stride)] for i in range(MAX_POINTS)] + [series[-1]]


def chart(name: str, series: list[tuple[int, float]]) -> Chart:
    points = _thin(series)
    steps = [s for s, _ in points]
    values = [v for _, v in points]
    low, high = min(values), max(values)
    x0, x1 = min(steps), max(steps)
    span_x, span_y = (x1 - x0) or 1, (high - low) or 1

    def xy(step: int, value: float, i: int) -> str:
        # points of one step (several reports at a step) spread by index instead of stacking
        x = (step - x0) / span_x if x1 > x0 else i / max(len(points) - 1, 1)
        y = (value - low) / span_y if high > low else 0.5
        return f"{PAD + x * (WIDTH - 2 * PAD):.1f},{HEIGHT - PAD - y * (HEIGHT - 2 * PAD):.1f}"

    return Chart(
        name=name,
        points=" ".join(xy(s, v, i) for i, (s, v) in enumerate(points)),
        first=values[0], last=values[-1], low=low, high=high,
        steps=(x0, x1), count=len(series),
    )  # fmt: skip


def charts(series: dict[str, list[tuple[int, float]]]) -> list[Chart]:
    """One chart per metric with at least two points, the method's metrics first."""
    order = [n for n in PREFERRED if n in series] + sorted(n for n in series if n not in PREFERRED)
    return [chart(name, series[name]) for name in order if len(series[name]) >= 2]
