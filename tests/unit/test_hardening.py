"""Smaller hardening: base models only from the model roots (hub only when allowed), num_gpus
bounded by the worker, demo labelers only on a new data dir served on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture
def api(api_as):
    return api_as("researcher")


def launch_sft(api, base_model: str):
    return api.post("/api/v1/jobs", json={"kind": "sft", "params": {"base_model": base_model}})


@pytest.mark.parametrize("path", ["/etc/shadow", "/etc", "../../../../etc", "~/.ssh"])
def test_a_base_model_outside_the_model_roots_is_refused(api, path) -> None:
    # before: "/etc/shadow" answered 201 and a worker tried to load it
    r = launch_sft(api, path)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "params.base_model"
    assert "model roots" in r.json()["detail"]


def test_a_base_model_under_a_model_root_is_accepted(api, monkeypatch, tmp_path) -> None:
    from app.config import get_settings

    model_dir = tmp_path / "models" / "my-base"
    model_dir.mkdir(parents=True)
    monkeypatch.setenv("PREFLOOP_MODEL_ROOTS", str(tmp_path / "models"))
    get_settings.cache_clear()
    assert launch_sft(api, str(model_dir)).status_code == 201
    # a symlink inside the root that points outside it is outside
    (tmp_path / "models" / "escape").symlink_to("/etc")
    assert launch_sft(api, str(tmp_path / "models" / "escape")).status_code == 422
    r = launch_sft(api, str(tmp_path / "models" / "missing"))
    assert r.status_code == 422 and "no model directory" in r.json()["detail"]


def test_hub_ids_only_when_allowed(api, monkeypatch) -> None:
    from app.config import get_settings

    r = launch_sft(api, "openai-community/gpt2")
    assert r.status_code == 422 and "PREFLOOP_ALLOW_HUB_MODELS" in r.json()["detail"]
    monkeypatch.setenv("PREFLOOP_ALLOW_HUB_MODELS", "true")
    get_settings.cache_clear()
    assert launch_sft(api, "openai-community/gpt2").status_code == 201


def test_num_gpus_is_bounded_by_what_the_worker_has(monkeypatch) -> None:
    import torch

    from app.config import get_settings
    from app.worker.launch import check_process_count

    monkeypatch.delenv("PREFLOOP_ACCELERATE_CONFIG", raising=False)
    get_settings.cache_clear()
    have = torch.cuda.device_count()
    problem = check_process_count(have + 1)
    assert problem is not None and f"this worker has {have} GPU(s)" in problem
    # an Accelerate config names its own topology (several nodes, or CPU processes)
    monkeypatch.setenv("PREFLOOP_ACCELERATE_CONFIG", "/etc/prefloop/accelerate.yaml")
    get_settings.cache_clear()
    assert check_process_count(have + 1) is None
    get_settings.cache_clear()


def _bootstrap_fresh(data_dir: Path, host: str) -> tuple[str, list[str]]:
    """Run `bootstrap` the way `serve --host HOST` does on the embedded default, in a child
    process (fresh settings and engine); returns its output and the usernames."""
    code = (
        "import sys\n"
        "from app.cli_support import open_session\n"
        "from app.migrate import upgrade_to_head\n"
        "from app.services.bootstrap import bootstrap\n"
        "from app.models import User\n"
        "upgrade_to_head()\n"
        "with open_session() as s:\n"
        f"    print('\\n'.join(bootstrap(s, bind_host={host!r})))\n"
        "    print('USERS', ' '.join(u.username for u in s.query(User).order_by(User.id)))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFLOOP_")}
    env["PREFLOOP_DATA_DIR"] = str(data_dir)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    users = out.stdout.rsplit("USERS", 1)[1].split()
    return out.stdout, users


def test_demo_labelers_only_on_loopback_with_generated_passwords(tmp_path) -> None:
    # before: demo-labeler-1 / label-demo-1 (published in the README) on every embedded
    # deployment, including the Docker image bound to 0.0.0.0
    text, users = _bootstrap_fresh(tmp_path / "public", "0.0.0.0")
    assert "demo-labeler-1" not in users and "Loaded the demo data set" in text
    assert "No demo labelers" in text
    # the demo's demonstrations are there all the same (before: 0 without demo labelers, so
    # the admin home said "Collect demonstrations"), written by an account nobody can use
    assert " 0 demonstrations" not in text and " demonstrations," in text
    assert "demo-author" in users and "demo-author /" not in text
    text, users = _bootstrap_fresh(tmp_path / "local", "127.0.0.1")
    assert {"demo-labeler-1", "demo-labeler-2"} <= set(users)
    assert "label-demo-1" not in text
    shown = dict(
        line.strip().split(" / ")
        for line in text.splitlines()
        if line.strip().startswith("demo-labeler-")
    )
    assert len(shown["demo-labeler-1"]) >= 12 and shown["demo-labeler-1"] != shown["demo-labeler-2"]


def test_loopback_addresses() -> None:
    from app.services.bootstrap import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
