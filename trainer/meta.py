"""prefloop.json, the small file of training metadata beside each checkpoint (no torch here:
the CLI and the web app read it without loading a model)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

META_FILE = "prefloop.json"
# a PPO run's resumable state inside its output directory (removed when the run finishes)
STATE_DIR = ".state"


def read_prefloop_meta(path: str | Path) -> dict[str, Any]:
    """The checkpoint's prefloop.json ({} when absent, e.g. a plain hub model)."""
    file = Path(path) / META_FILE
    return json.loads(file.read_text()) if file.is_file() else {}


def write_prefloop_meta(path: str | Path, meta: dict[str, Any]) -> None:
    """Write prefloop.json: kind ("base"|"sft"|"rm"|"ppo"), parents, data_snapshot,
    hyperparameters, metrics, the preset it descends from and, for reward models,
    reward_bias."""
    Path(path, META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))


def model_preset(name_or_path: str | Path) -> str | None:
    """The built-in preset a model descends from ("tiny"), or None for any other model:
    "tiny" itself, or a checkpoint whose prefloop.json names it (SFT, RM and PPO checkpoints
    inherit their first parent's)."""
    if str(name_or_path) == "tiny":
        return "tiny"
    path = Path(name_or_path).expanduser()
    return read_prefloop_meta(path).get("preset") if path.is_dir() else None
