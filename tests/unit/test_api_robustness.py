"""Hostile input to the JSON API is a clear 4xx, never a 500 (found by fuzzing the API).

Each case runs on SQLite and PostgreSQL, whose drivers reject different things: integers
beyond 64 bits, NUL characters in text, NaN in JSON columns.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.labeling_support import make_prompt, make_ranking_task

TOO_BIG = 2**31  # one past the largest row id (INTEGER: 32-bit on PostgreSQL)
HUGE = 10**30  # past 64 bits: SQLite's driver cannot even bind it


def _assert_clear_4xx(r: Any, *, field: str | None = None) -> None:
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    body = r.json()
    assert body["detail"], body
    if field is not None:
        assert field in body["field"], body


@pytest.mark.parametrize("big", [TOO_BIG, 2**63, HUGE, -(2**31) - 1])
@pytest.mark.parametrize(
    ("method", "path", "field"),
    [
        ("GET", "/api/v1/prompts/{id}", "prompt_id"),
        ("PUT", "/api/v1/prompts/{id}/use-case", "prompt_id"),
        ("PATCH", "/api/v1/use-cases/{id}", "use_case_id"),
        ("GET", "/api/v1/jobs/{id}", "job_id"),
        ("GET", "/api/v1/jobs/{id}/metrics", "job_id"),
        ("POST", "/api/v1/jobs/{id}/cancel", "job_id"),
        ("POST", "/api/v1/jobs/{id}/rerun", "job_id"),
        ("POST", "/api/v1/models/{id}/current", "model_version_id"),
        ("GET", "/api/v1/export/snapshots/{id}", "snapshot_id"),
        ("GET", "/api/v1/export/snapshots/{id}/download", "snapshot_id"),
        ("POST", "/api/v1/tasks/{id}/submission", "task_id"),
    ],
)
def test_out_of_range_id_in_path_is_4xx(api_as, method, path, field, big) -> None:
    # a body that is valid for its route, so only the id is wrong
    body = {
        "/api/v1/prompts/{id}/use-case": {"use_case": "Generation"},
        "/api/v1/use-cases/{id}": {"name": "x"},
    }.get(path, {"text": "an answer"})
    r = api_as("admin").request(method, path.format(id=big), json=body)
    _assert_clear_4xx(r, field=field)


@pytest.mark.parametrize("kind", ["comparisons", "demonstrations", "prompts"])
@pytest.mark.parametrize(
    ("query", "field"),
    [
        (f"labeler_id={TOO_BIG}", "labeler_id"),
        (f"after={TOO_BIG}", "after"),
        (f"after=1:{HUGE}", "after"),
        ("after=%C2%B2", "after"),  # "²": str.isdigit() says yes, int() says no
    ],
)
def test_out_of_range_export_filters_are_422(api_as, kind, query, field) -> None:
    if kind == "comparisons" and query.startswith("after=1:"):
        query += "&format=pairs"
    r = api_as("admin").get(f"/api/v1/export/{kind}?{query}")
    _assert_clear_4xx(r, field=field)


def test_out_of_range_ids_in_bodies_are_4xx(api_as) -> None:
    api = api_as("admin")
    prompt_id = make_prompt()
    _, completion_ids = make_ranking_task(prompt_id, k=4)
    cases: list[tuple[str, dict[str, Any], str]] = [
        (
            "/api/v1/completions",
            {"prompt_id": TOO_BIG, "completions": [{"text": "a", "origin": "human"}]},
            "prompt_id",
        ),
        (
            "/api/v1/completions",
            {
                "prompt_id": prompt_id,
                "completions": [{"text": "a", "origin": "m", "model_version_id": TOO_BIG}],
            },
            "model_version_id",
        ),
        (
            "/api/v1/ranking-tasks",
            {"prompt_id": prompt_id, "completion_ids": [*completion_ids[:3], TOO_BIG]},
            "completion_ids",
        ),
        ("/api/v1/jobs", {"kind": "sft", "params": {"base_model": str(TOO_BIG)}}, "base_model"),
        ("/api/v1/jobs", {"kind": "sft", "params": {"base_model": TOO_BIG}}, "base_model"),
        (
            "/api/v1/jobs",
            {"kind": "sft", "params": {"base_model": "tiny", "train_snapshot_id": TOO_BIG}},
            "train_snapshot_id",
        ),
        (
            "/api/v1/jobs",
            {"kind": "rm", "params": {"sft_model_version_id": TOO_BIG}},
            "sft_model_version_id",
        ),
        (
            "/api/v1/export/snapshots",
            {"export": "prompts", "labeler_id": TOO_BIG},
            "labeler_id",
        ),
    ]
    for path, body, field in cases:
        _assert_clear_4xx(api.post(path, json=body), field=field)


def test_out_of_range_stored_numbers_are_4xx(api_as) -> None:
    """Plain integer columns are 32-bit on PostgreSQL: a larger value must not reach them."""
    api = api_as("admin")
    use_case_id = api.get("/api/v1/use-cases").json()[0]["id"]
    r = api.patch(f"/api/v1/use-cases/{use_case_id}", json={"position": 2**31})
    _assert_clear_4xx(r, field="position")

    labeler = api_as("labeler")
    make_prompt()
    task = labeler.get("/api/v1/tasks/next?kind=demonstration")
    assert task.status_code == 200, task.text
    r = labeler.post(
        f"/api/v1/tasks/{task.json()['task_id']}/submission",
        json={"text": "a fine answer", "time_spent_ms": 2**31},
    )
    _assert_clear_4xx(r, field="time_spent_ms")


def test_deeply_nested_json_body_is_422(api_as) -> None:
    depth = 5000
    nested = '{"a":' * depth + "1" + "}" * depth
    api = api_as("admin")
    body = '{"prompts":[{"text":"a prompt","user_id":"u1","metadata":' + nested + "}]}"
    r = api.post("/api/v1/prompts", content=body, headers={"Content-Type": "application/json"})
    _assert_clear_4xx(r, field="body")
    body = '{"prompt_id": 1, "completions": ' + "[" * depth + "]" * depth + "}"
    r = api.post("/api/v1/completions", content=body, headers={"Content-Type": "application/json"})
    _assert_clear_4xx(r, field="body")


def test_hostile_metadata_is_rejected_or_stored(api_as) -> None:
    """NUL characters and NaN in a prompt's metadata: PostgreSQL's JSONB takes neither."""
    api = api_as("admin")
    deep: dict[str, Any] = {}
    for _ in range(200):  # deep, but within what the JSON decoder accepts
        deep = {"a": deep}
    hostile = ({"note": "a\x00b"}, {"a\x00": 1}, {"score": float("nan")}, {"k": "\ud800"}, deep)
    for metadata in hostile:
        r = api.post(
            "/api/v1/prompts",
            content=_json(
                {"prompts": [{"text": "a prompt here", "user_id": "u", "metadata": metadata}]}
            ),
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code < 500, r.text
        if r.status_code == 200:
            assert r.json()["results"][0]["status"] == "rejected", r.text


def _json(value: Any) -> str:
    import json

    return json.dumps(value)  # allow_nan: the wire carries NaN as a JavaScript client sends it


NUL = "a\x00b"


def test_nul_characters_in_text_fields_are_4xx(api_as) -> None:
    """PostgreSQL text cannot hold NUL; every text field rejects it on both databases alike."""
    api = api_as("admin")
    prompt_id = make_prompt()
    use_case_id = api.get("/api/v1/use-cases").json()[0]["id"]
    cases: list[tuple[str, str, dict[str, Any], str]] = [
        ("POST", "/api/v1/use-cases", {"name": NUL}, "name"),
        ("POST", "/api/v1/use-cases", {"name": "Fine", "description": NUL}, "description"),
        ("PATCH", f"/api/v1/use-cases/{use_case_id}", {"name": NUL}, "name"),
        ("PATCH", f"/api/v1/use-cases/{use_case_id}", {"description": NUL}, "description"),
        ("PUT", f"/api/v1/prompts/{prompt_id}/use-case", {"use_case": NUL}, "use_case"),
        (
            "POST",
            "/api/v1/completions",
            {"prompt_id": prompt_id, "completions": [{"text": NUL, "origin": "human"}]},
            "text",
        ),
        (
            "POST",
            "/api/v1/completions",
            {"prompt_id": prompt_id, "completions": [{"text": "fine", "origin": NUL}]},
            "origin",
        ),
        ("PUT", "/api/v1/split-pins/u%00x", {"split": "train"}, "user_id"),
        ("POST", "/api/v1/labeler-prompts", {"kind": "plain", "text": NUL}, "text"),
        ("POST", "/api/v1/jobs", {"kind": "sft", "params": {"base_model": NUL}}, "base_model"),
    ]
    for method, path, body, field in cases:
        _assert_clear_4xx(api.request(method, path, json=body), field=field)
    for query in ("use_case=a%00b", "labeler=a%00b", "format=a%00b", "output=a%00b", "after=1%00"):
        for kind in ("comparisons", "prompts"):
            _assert_clear_4xx(api.get(f"/api/v1/export/{kind}?{query}"), field=query.split("=")[0])

    labeler = api_as("labeler")
    task = labeler.get("/api/v1/tasks/next?kind=demonstration").json()
    url = f"/api/v1/tasks/{task['task_id']}/submission"
    _assert_clear_4xx(labeler.post(url, json={"text": NUL}), field="text")
    _assert_clear_4xx(labeler.post(url, json={"skip": {"reason": NUL}}), field="reason")
    # the task is still open: a clean answer goes through
    assert labeler.post(url, json={"text": "a clean answer"}).status_code == 200


def test_job_params_that_json_cannot_store_are_422(api_as) -> None:
    api = api_as("admin")
    for params, field in [
        ({"base_model": "tiny", "lr": float("inf")}, "lr"),
        ({"base_model": "tiny", "weight_decay": float("nan")}, "weight_decay"),
        ({"base_model": "tiny", "mixed_precision": NUL}, "mixed_precision"),
        ({"base_model": "tiny", "epochs": HUGE}, "epochs"),  # once crashed the worker's report
        ({"base_model": "tiny", "filters": {"use_case": NUL}}, "use_case"),
    ]:
        r = api.post(
            "/api/v1/jobs",
            content=_json({"kind": "sft", "params": params}),
            headers={"Content-Type": "application/json"},
        )
        _assert_clear_4xx(r, field=field)


def test_lone_surrogate_in_prompt_text_is_rejected(api_as) -> None:
    """JSON may escape half a UTF-16 pair ("\\ud800"): no valid text, so the item is rejected."""
    r = api_as("admin").post(
        "/api/v1/prompts",
        content=_json({"prompts": [{"text": "half a pair \ud800 here", "user_id": "u"}]}),
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 200, r.text
    result = r.json()["results"][0]
    assert result["status"] == "rejected" and "Unicode" in result["reason"], result


@pytest.mark.parametrize("when", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59"])
def test_time_beyond_the_calendar_in_utc_is_422(api_as, when) -> None:
    """A valid ISO time whose offset pushes it past year 9999 (or before year 1) in UTC."""
    api = api_as("admin")
    for kind in ("comparisons", "demonstrations", "prompts"):
        _assert_clear_4xx(api.get(f"/api/v1/export/{kind}", params={"until": when}), field="until")
    r = api.post("/api/v1/export/snapshots", json={"export": "prompts", "since": when})
    _assert_clear_4xx(r, field="since")
    params = {"base_model": "tiny", "filters": {"since": when}}
    _assert_clear_4xx(
        api.post("/api/v1/jobs", json={"kind": "sft", "params": params}), field="since"
    )


def test_login_with_nul_characters_is_a_failed_login(client, make_user) -> None:
    from tests.conftest import csrf_from

    user = make_user("labeler")
    for username, password in (("a\x00b", "whatever"), (user.username, "pass\x00word")):
        page = client.get("/login")
        r = client.post(
            "/login",
            data={"username": username, "password": password, "csrf_token": csrf_from(page.text)},
            follow_redirects=False,
        )
        assert r.status_code == 401, r.text
