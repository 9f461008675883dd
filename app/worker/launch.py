"""Multi-GPU jobs: the worker runs the trainer under ``accelerate launch`` as a subprocess
and streams its progress back by tailing the trainer's ``metrics.jsonl``.

Parent side: ``run_under_accelerate``. Child side (every launched process):
``python -m app.worker.launch <spec.json>`` calls the trainer function; the main process
writes the final metrics to ``result.json``.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

from app.worker.reporting import JobFailed
from trainer.callbacks import Progress

POLL_S = 0.5


def check_process_count(num_gpus: int) -> str | None:
    """Why this worker cannot run ``num_gpus`` processes, or None. Without an Accelerate config
    the processes are this machine's GPUs; a config (multi-node, CPU) sets its own topology."""
    from app.config import get_settings

    if get_settings().accelerate_config:
        return None
    import torch

    available = torch.cuda.device_count()
    if num_gpus > available:
        return (
            f"num_gpus={num_gpus} but this worker has {available} GPU(s); lower num_gpus, or "
            "set PREFLOOP_ACCELERATE_CONFIG for a multi-node topology"
        )
    return None


def launch_command(spec_path: Path, num_processes: int) -> list[str]:
    from app.config import get_settings

    config_file = get_settings().accelerate_config
    topology = ["--config_file", config_file] if config_file else ["--multi_gpu"]
    return [
        sys.executable, "-m", "accelerate.commands.launch", *topology,
        "--num_processes", str(num_processes),
        "-m", "app.worker.launch", str(spec_path),
    ]  # fmt: skip


def _new_rows(path: Path, offset: int) -> tuple[list[dict[str, Any]], int]:
    """Complete JSON lines appended to ``path`` since ``offset`` (a half-written line waits)."""
    if not path.exists():
        return [], offset
    with path.open("rb") as fh:
        fh.seek(offset)
        data = fh.read()
    end = data.rfind(b"\n") + 1
    rows = [json.loads(line) for line in data[:end].splitlines() if line.strip()]
    return rows, offset + end


def _progress_of(row: dict[str, Any]) -> Progress:
    metrics = {
        k: float(v)
        for k, v in row.items()
        if k not in {"step", "total", "time", "message"} and isinstance(v, int | float)
    }
    return Progress(int(row["step"]), int(row["total"]), metrics, str(row.get("message", "")))


def run_under_accelerate(ctx: Any, kwargs: dict[str, Any], num_processes: int) -> dict[str, float]:
    """Run the job kind's trainer function on ``num_processes`` processes; the child reads
    the function, its config and its arguments from ``launch.json`` in the output dir."""
    spec = ctx.spec
    config = spec.trainer_config
    launch = {
        "function": spec.trainer_function,
        "config_class": f"{config.__module__}:{config.__qualname__}",
        "config": spec.hyperparameters(ctx.params),
        "kwargs": kwargs,
    }
    out = Path(kwargs["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("metrics.jsonl", "result.json"):
        (out / stale).unlink(missing_ok=True)
    spec_path = out / "launch.json"
    spec_path.write_text(json.dumps(launch))
    log_path = out / "launch.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            launch_command(spec_path, num_processes), stdout=log_file, stderr=subprocess.STDOUT
        )
        offset = 0
        try:
            while True:
                finished = proc.poll() is not None
                rows, offset = _new_rows(out / "metrics.jsonl", offset)
                for row in rows:
                    ctx.reporter(_progress_of(row))  # raises JobCancelled when asked to stop
                if finished:
                    break
                time.sleep(POLL_S)
        except BaseException:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
    if proc.returncode != 0:
        tail = deque(log_path.read_text(errors="replace").splitlines(), maxlen=8)
        for line in tail:
            ctx.reporter.log(line)
        raise JobFailed(
            f"accelerate launch exited with {proc.returncode}: {tail[-1] if tail else ''}"
        )
    result: dict[str, float] = json.loads((out / "result.json").read_text())
    return result


def _resolve(reference: str) -> Any:
    """The object that ``"module:name"`` names."""
    module_name, _, name = reference.partition(":")
    return getattr(importlib.import_module(module_name), name)


def main(spec_file: str) -> None:
    spec = json.loads(Path(spec_file).read_text())
    fn = _resolve(spec["function"])
    config = _resolve(spec["config_class"]).from_dict(spec["config"])
    metrics = fn(**spec["kwargs"], config=config)
    from accelerate import PartialState

    if PartialState().is_main_process:
        result = Path(spec["kwargs"]["output_dir"]) / "result.json"
        result.write_text(json.dumps(metrics))


if __name__ == "__main__":
    main(sys.argv[1])
