"""Progress reporting: the callback type the worker and the CLI plug into, and metrics.jsonl."""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tqdm import tqdm


@dataclass
class Progress:
    """One report from a trainer: `step` of `total` (optimisation steps, PPO iterations or
    sampling batches), the latest metrics, and an optional human-readable message."""

    step: int
    total: int
    metrics: dict[str, float] = field(default_factory=dict)
    message: str = ""


ProgressCallback = Callable[[Progress], None]
"""Called at least once per optimisation step / iteration. Any exception it raises (for
example a worker's `JobCancelled`) propagates out of the trainer, which then writes no final
checkpoint."""


class MetricsLog:
    """Appends one JSON object per line to `<output_dir>/metrics.jsonl` and forwards each
    report to the progress callback. Only the main process writes (`enabled`). A resumed run
    (`resume_after` = the step it resumes after) keeps the rows up to that step."""

    def __init__(
        self,
        output_dir: str | Path | None,
        progress: ProgressCallback | None = None,
        enabled: bool = True,
        resume_after: int | None = None,
    ) -> None:
        self.path = Path(output_dir) / "metrics.jsonl" if output_dir is not None else None
        self.progress = progress
        self.enabled = enabled
        self.start = time.time()
        if self.path is not None and enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            kept = ""
            if resume_after is not None and self.path.is_file():
                rows = [r for r in read_metrics(self.path) if r["step"] <= resume_after]
                kept = "".join(json.dumps(r) + "\n" for r in rows)
                self.start -= rows[-1]["time"] if rows else 0.0
            self.path.write_text(kept)  # a new run starts a new log
            # ... and the directory is no finished checkpoint until prefloop.json is rewritten.
            (self.path.parent / "prefloop.json").unlink(missing_ok=True)

    def log(self, step: int, total: int, metrics: dict[str, float], message: str = "") -> None:
        clean = {k: _to_float(v) for k, v in metrics.items()}
        if self.path is not None and self.enabled:
            row: dict[str, float | str] = {
                "step": step,
                "total": total,
                "time": round(time.time() - self.start, 3),
            }
            row.update({k: (v if math.isfinite(v) else str(v)) for k, v in clean.items()})
            if message:
                row["message"] = message
            with self.path.open("a") as f:
                f.write(json.dumps(row) + "\n")
        # The callback runs on every process, so a cancellation stops all of them.
        if self.progress is not None:
            self.progress(Progress(step=step, total=total, metrics=clean, message=message))


def _to_float(value: object) -> float:
    if hasattr(value, "item"):
        value = value.item()
    return float(value)  # type: ignore[arg-type]


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Read a metrics.jsonl file (a file, or the checkpoint directory holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class Timer:
    """Wall time of the named parts of a loop iteration, `with timed("generation"): ...`,
    and of the whole iteration since `timed.begin()`. On a GPU it waits for the device
    before reading the clock, so each part is charged for its own kernels."""

    def __init__(self, device: object = None) -> None:
        self.cuda = getattr(device, "type", None) == "cuda"
        self.seconds: dict[str, float] = defaultdict(float)
        self.started = 0.0

    def begin(self) -> None:
        self.seconds.clear()
        self.started = self._now()

    def _now(self) -> float:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
        return time.perf_counter()

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = self._now()
        try:
            yield
        finally:
            self.seconds[name] += self._now() - start

    def metrics(self) -> dict[str, float]:
        """{"time_<part>": seconds, ..., "time_iteration": seconds since begin()}."""
        out = {f"time_{k}": v for k, v in self.seconds.items()}
        out["time_iteration"] = self._now() - self.started
        return out


class TqdmProgress:
    """A ProgressCallback that drives a tqdm bar (used by the CLI)."""

    def __init__(self, desc: str, keys: tuple[str, ...] = ()) -> None:
        self.desc = desc
        self.keys = keys
        self.bar: tqdm[Any] | None = None

    def __call__(self, p: Progress) -> None:
        from tqdm.auto import tqdm

        if self.bar is None:  # one bar per job: only the first process of a launch draws it
            self.bar = tqdm(
                total=p.total,
                desc=self.desc,
                dynamic_ncols=True,
                disable=os.environ.get("RANK", "0") != "0",
            )
        self.bar.total = p.total
        self.bar.n = p.step
        shown = {k: f"{v:.4g}" for k, v in p.metrics.items() if not self.keys or k in self.keys}
        self.bar.set_postfix(shown, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
