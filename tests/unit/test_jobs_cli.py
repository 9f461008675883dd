"""`prefloop jobs` and `prefloop models`: the same rules as the API, clear errors, exit codes."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from app.cli import cli

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(cli, list(args))


def test_launch_list_show_cancel_rerun(app_env: str, make_user) -> None:
    user = make_user("researcher")
    launched = invoke(
        "jobs",
        "launch",
        "sft",
        "--params",
        '{"base_model": "tiny", "epochs": 2}',
        "--as",
        user.username,
    )
    assert launched.exit_code == 0, launched.output
    job_id = int(launched.output.strip())
    assert f"{job_id}\tsft\tqueued\t0/0" in invoke("jobs", "list").output
    shown = json.loads(invoke("jobs", "show", str(job_id)).output)
    assert shown["params"]["epochs"] == 2 and shown["created_by"] == user.username
    assert "cancelled" in invoke("jobs", "cancel", str(job_id)).output
    again = invoke("jobs", "rerun", str(job_id))
    assert again.exit_code == 0 and int(again.output.strip()) != job_id


def test_bad_params_exit_2_with_the_field(app_env: str) -> None:
    result = invoke(
        "jobs",
        "launch",
        "sample",
        "--params",
        '{"model_version_ids": [1], "k": 12, "prompt_count": 1}',
    )
    assert result.exit_code == 2 and "params.k" in result.output
    assert invoke("jobs", "launch", "sft", "--params", "{not json").exit_code == 2
    assert invoke("jobs", "show", "999").exit_code == 1


def test_models_list_and_current(app_env: str) -> None:
    from app.db import get_sessionmaker
    from app.models import ModelVersion

    with get_sessionmaker()() as s:
        base = ModelVersion(kind="base", name="tiny", path="tiny", parent_ids=[])
        rm = ModelVersion(kind="rm", name="rm", path="/x", parent_ids=[])
        s.add_all([base, rm])
        s.commit()
    assert invoke("models", "current", str(rm.id)).exit_code == 2  # an RM is no policy
    assert invoke("models", "current", str(base.id)).exit_code == 0
    assert f"*{base.id}\tbase" in invoke("models", "list").output
