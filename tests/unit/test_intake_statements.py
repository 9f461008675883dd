"""Ingest's database work is per batch, not per prompt or per user ID (issue 14): a batch from
many user IDs runs as many SQL statements as one from a few, on both databases."""

from __future__ import annotations

from tests.unit.test_queue_statements import counted_statements


def _statements_for(api, users: int, tag: str) -> int:
    prompts = [
        {"text": f"Prompt {tag} number {n}: describe a different garden plan in detail.",
         "user_id": f"{tag}-user-{n % users}", "external_id": f"{tag}-{n}"}
        for n in range(40)
    ]  # fmt: skip
    with counted_statements() as seen:
        r = api.post("/api/v1/prompts", json={"prompts": prompts})
    assert r.status_code == 200, r.text
    assert {x["status"] for x in r.json()["results"]} == {"accepted"}
    return len(seen)


def test_statements_do_not_grow_with_the_number_of_user_ids(api_as) -> None:
    api = api_as("researcher")
    _statements_for(api, 1, "warm")  # first use: use cases, tasks settings and the like
    assert _statements_for(api, 40, "many") == _statements_for(api, 2, "few")
