"""Ingest customers are isolated: external IDs and customer user IDs (cap, split, pins) belong
to the account whose token sent them."""

from __future__ import annotations

import pytest

from app.services.curation.splits import hash_split
from tests.unit.test_intake_api import RATIOS, ingest


@pytest.fixture
def customers(api_as, make_user, make_token):
    """Two customers' integrations: ingest-only tokens of two accounts."""
    from fastapi.testclient import TestClient

    clients = []
    for name in ("customer-a", "customer-b"):
        account = make_user("researcher", username=name)
        c = TestClient(api_as("researcher").app)
        c.headers["Authorization"] = f"Bearer {make_token(account, scopes=['ingest'])}"
        clients.append(c)
    return clients


def test_another_clients_external_id_is_another_prompt(customers, api_as) -> None:
    a, b = customers
    [mine] = ingest(a, [{"text": "Plan a trip to Lisbon", "user_id": "u1", "external_id": "x-1"}])
    # before: B was told "accepted" with A's prompt id, and B's text was dropped
    [theirs] = ingest(b, [{"text": "Summarise my notes", "user_id": "u1", "external_id": "x-1"}])
    assert theirs["status"] == "accepted" and theirs["prompt_id"] != mine["prompt_id"]
    researcher = api_as("researcher")
    stored = researcher.get(f"/api/v1/prompts/{theirs['prompt_id']}").json()
    assert stored["text"] == "Summarise my notes"
    # each client's retry still answers with its own prompt
    [again] = ingest(a, [{"text": "Plan a trip to Lisbon", "user_id": "u1", "external_id": "x-1"}])
    assert again["prompt_id"] == mine["prompt_id"]


def test_a_cross_client_duplicate_reveals_nothing_of_the_other(customers) -> None:
    a, b = customers
    text = "Write a haiku about the first snow of the year"
    [first] = ingest(a, [{"text": text, "user_id": "a-user"}])
    [second] = ingest(b, [{"text": text, "user_id": "b-user"}])
    assert second["status"] == "duplicate"
    assert second["prompt_id"] != first["prompt_id"]
    assert second["split"] == hash_split("b-user", RATIOS)
    assert "a-user" not in str(second) and second["reason"] is None


def test_caps_are_per_client(customers, monkeypatch) -> None:
    from app.config import get_settings

    monkeypatch.setenv("PREFLOOP_PROMPTS_PER_USER_CAP", "2")
    get_settings.cache_clear()
    a, b = customers
    results = ingest(a, [{"text": f"A's question number {i}", "user_id": "u1"} for i in range(3)])
    assert [r["status"] for r in results] == ["accepted", "accepted", "over_cap"]
    # before: B's "u1" was the same user ID, already at the cap
    [theirs] = ingest(b, [{"text": "B's very own question", "user_id": "u1"}])
    assert theirs["status"] == "accepted"


def test_pins_are_per_client(customers, api_as) -> None:
    a, b = customers
    user = next(f"p{n}" for n in range(1000) if hash_split(f"p{n}", RATIOS) == "train")
    [mine] = ingest(a, [{"text": "A's prompt for the pin", "user_id": user}])
    researcher = api_as("researcher")
    r = researcher.put(f"/api/v1/split-pins/{user}", json={"split": "test", "client": "customer-a"})
    assert r.status_code == 200 and r.json()["moved"] == 1 and r.json()["client"] == "customer-a"
    # B's user of the same name is not pinned, and A's prompts do not decide B's split
    [theirs] = ingest(b, [{"text": "B's prompt, same user ID", "user_id": user}])
    assert theirs["split"] == "train"
    assert researcher.get(f"/api/v1/prompts/{mine['prompt_id']}").json()["split"] == "test"
    pins = researcher.get("/api/v1/split-pins").json()
    assert [(p["client"], p["user_id"], p["split"]) for p in pins] == [("customer-a", user, "test")]
    gone = researcher.delete(f"/api/v1/split-pins/{user}", params={"client": "customer-a"})
    assert gone.status_code == 204
