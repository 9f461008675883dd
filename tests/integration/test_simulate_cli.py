"""`prefloop simulate` against a live server, as a hidden run would use it: a token file, a
preference function in a module of the working directory, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from app.cli import cli
from tests.labeling_support import make_prompt, make_ranking_task
from tests.live_server import free_port, serving

PREFERENCE = '''
def prefer(prompt, text):
    """Outputs that mention a colour are better; among them, shorter is better."""
    colours = ("red", "green", "blue")
    return (10 if any(c in text for c in colours) else 0) - len(text) / 100
'''


@pytest.fixture
def live_server(app_env: str) -> Iterator[str]:
    """The app on the test database, served by uvicorn in a thread of this process."""
    from app.main import create_app

    with serving(create_app()) as port:
        yield f"http://127.0.0.1:{port}"


def test_simulate_command_ranks_by_a_hidden_preference(
    live_server: str, make_user, make_token, tmp_path: Path
) -> None:
    from sqlalchemy import select

    from app.db import get_sessionmaker
    from app.models import Ranking

    labelers = [make_user("labeler") for _ in range(2)]
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("# two careful labelers\n" + "".join(f"{make_token(u)}\n" for u in labelers))
    (tmp_path / "taste.py").write_text(PREFERENCE)
    tasks = [
        make_ranking_task(
            make_prompt(), ["a plain answer", "a red answer", "a very long blue answer!", "no"]
        )
        for _ in range(3)
    ]
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "simulate", "--base-url", live_server,
         "--tokens", str(tokens), "--preference", "taste:prefer", "--agreement", "1",
         "--kinds", "ranking", "--json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["submitted"] == 3 and summary["stopped"] == "drained"
    assert sorted(row["name"] for row in summary["labelers"]) == sorted(
        u.username for u in labelers
    )
    with get_sessionmaker()() as s:
        for task_id, ids in tasks:
            ranking = s.scalars(select(Ranking).where(Ranking.task_id == task_id)).one()
            assert [e.completion_id for e in ranking.entries] == [ids[1], ids[2], ids[3], ids[0]]


def test_simulate_exit_codes(live_server: str, make_user, make_token, tmp_path: Path) -> None:
    runner = CliRunner()
    good = tmp_path / "good.txt"
    good.write_text(make_token(make_user("labeler")) + "\n")
    bad = tmp_path / "bad.txt"
    bad.write_text("not-a-real-token\n")
    make_ranking_task(make_prompt(), ["a", "bb", "ccc", "dddd"])

    def run(*args: str) -> tuple[int, str]:
        out = runner.invoke(cli, ["simulate", "--kinds", "ranking", *args])
        assert "Traceback" not in out.output
        return out.exit_code, out.output

    code, output = run("--base-url", live_server, "--tokens", str(bad))
    assert code == 2 and "refused (401" in output
    code, output = run("--base-url", live_server, "--tokens", str(good), "--agreement", "0.2")
    assert code == 2 and "--agreement" in output
    code, output = run("--base-url", live_server, "--tokens", str(tmp_path / "missing.txt"))
    assert code == 2 and "cannot read the token file" in output
    code, output = run(
        "--base-url", live_server, "--tokens", str(good), "--preference", "nowhere:f"
    )
    assert code == 2 and "cannot import nowhere" in output
    code, output = run("--base-url", f"http://127.0.0.1:{free_port()}", "--tokens", str(good))
    assert code == 1 and "failed: ConnectError" in output
    # a preference that fails inside: bad input, and nothing half-submitted
    (tmp_path / "broken.py").write_text("def prefer(prompt, text):\n    return 'best'\n")
    code, output = run(
        "--base-url", live_server, "--tokens", str(good),
        "--preference", f"{tmp_path / 'broken.py'}:prefer",
    )  # fmt: skip
    assert code == 2 and "must return a number" in output
    code, output = run("--base-url", live_server, "--tokens", str(good), "--preference", "length")
    assert code == 0 and "1 submissions by 1 labelers" in output
    assert httpx.get(f"{live_server}/healthz").status_code == 200
