"""``prefloop prompts import FILE.jsonl`` and ``prefloop prompts pin``."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import func, select
from typer.testing import CliRunner

from app.cli import cli
from app.models import Prompt

runner = CliRunner()


def test_import_jsonl_with_summary(app_env, tmp_path: Path, session) -> None:
    long = "Describe the water cycle for a school newsletter in three short paragraphs"
    lines = [
        json.dumps({"text": long, "user_id": "u1", "external_id": "a"}),
        json.dumps({"text": long + " with drawings", "user_id": "u2", "external_id": "b"}),
        "{not json",
        "",
        json.dumps({"text": "", "user_id": "u3"}),
        json.dumps(["not", "an", "object"]),
        json.dumps({"text": "Name three rivers in Africa", "user_id": "u4", "kind": "few_shot"}),
        json.dumps({"text": "A prompt from a very long user ID", "user_id": "u" * 300}),
    ]
    file = tmp_path / "prompts.jsonl"
    file.write_text("\n".join(lines) + "\n")
    report = tmp_path / "report.jsonl"
    result = runner.invoke(cli, ["prompts", "import", str(file), "--report", str(report)])
    assert result.exit_code == 0, result.output
    assert "7 prompts read" in result.output
    assert "accepted   2" in result.output and "duplicate  1" in result.output
    assert "rejected   4" in result.output and "not valid JSON" in result.output
    rows = [json.loads(line) for line in report.read_text().splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 3, 5, 6, 7, 8]
    assert [r["status"] for r in rows] == [
        "accepted", "duplicate", "rejected", "rejected", "rejected", "accepted", "rejected",
    ]  # fmt: skip
    # a file cannot set labeler-only fields
    kinds = session.scalars(select(Prompt.kind)).all()
    assert set(kinds) == {"api"}
    session.commit()

    again = runner.invoke(cli, ["prompts", "import", str(file)])
    assert again.exit_code == 0
    assert (
        session.scalar(select(func.count()).select_from(Prompt)) == 4
    )  # a, b found again; the line without external_id is a new duplicate row


def test_import_missing_file_and_pin(app_env, tmp_path: Path) -> None:
    missing = runner.invoke(cli, ["prompts", "import", str(tmp_path / "nope.jsonl")])
    assert missing.exit_code == 2 and "no such file" in missing.output
    assert "Traceback" not in missing.output
    pinned = runner.invoke(cli, ["prompts", "pin", "customer-7", "test"])
    assert pinned.exit_code == 0 and "No prompt has come from this user ID yet" in pinned.output
    bad = runner.invoke(cli, ["prompts", "pin", "customer-7", "holdout"])
    assert bad.exit_code == 2 and "unknown split" in bad.output
