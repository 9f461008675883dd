"""Deployment files agree with the code: compose is valid and uses real, documented settings."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from app.config import Settings
from tests.conftest import service_unavailable

ROOT = Path(__file__).resolve().parents[2]


def compose_env_names() -> set[str]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    names: set[str] = set()
    for service in compose["services"].values():
        names |= {k for k in (service.get("environment") or {}) if k.startswith("PREFLOOP_")}
    return names


def test_compose_uses_only_existing_settings() -> None:
    fields = {f"PREFLOOP_{name.upper()}" for name in Settings.model_fields}
    assert compose_env_names() <= fields
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert {"postgres", "redis", "web", "worker", "gpu-worker"} <= set(services)
    assert "gpu" in services["gpu-worker"]["command"]
    devices = services["gpu-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia"


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"`(PREFLOOP_[A-Z0-9_]+)`", readme))
    missing = {f"PREFLOOP_{n.upper()}" for n in Settings.model_fields} - documented
    assert not missing, f"settings missing from the README: {sorted(missing)}"


def test_compose_file_is_valid() -> None:
    if shutil.which("docker-compose"):
        cmd = ["docker-compose", "config", "-q"]
    elif (
        shutil.which("docker")
        and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
    ):
        cmd = ["docker", "compose", "config", "-q"]
    else:
        service_unavailable(
            "docker compose", RuntimeError("neither docker-compose nor the compose plugin")
        )
    result = subprocess.run(
        cmd,
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PREFLOOP_SECRET_KEY": "x", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
