"""The labeler's prompt forms and the admin data pages through the HTML client (no browser)."""

from __future__ import annotations

import re

from sqlalchemy import select

from app.models import Prompt
from tests.conftest import csrf_from, login


def stored(session) -> list[Prompt]:
    """The prompts in the database; ends the read so the app's next write is not blocked."""
    rows = list(session.scalars(select(Prompt).order_by(Prompt.id)))
    session.commit()
    return rows


def form_page(client, kind: str) -> str:
    r = client.get(f"/labeler/prompts/new?kind={kind}")
    assert r.status_code == 200
    return r.text


def test_plain_prompt_form_accepts(client, make_user, session) -> None:
    labeler = make_user("labeler")
    login(client, labeler)
    page = form_page(client, "plain")
    assert 'name="text"' in page and "Generation" in page  # use cases seeded on first use
    r = client.post(
        "/labeler/prompts/new",
        data={"csrf_token": csrf_from(page), "kind": "plain", "text": "Write a haiku about rain.",
              "use_case": "Generation"},
    )  # fmt: skip
    assert r.status_code == 200 and "accepted" in r.text
    prompt = stored(session)[0]
    assert prompt.user_id == f"labeler:{labeler.id}" and prompt.source == "labeler"
    assert prompt.kind == "plain" and prompt.use_case == "Generation"
    assert "Write a haiku about rain." in r.text  # listed under "your recent prompts"


def test_few_shot_validation_keeps_the_input(client, make_user, session) -> None:
    login(client, make_user("labeler"))
    page = form_page(client, "few_shot")
    data = {
        "csrf_token": csrf_from(page),
        "kind": "few_shot",
        "instruction": "Turn the sentence into a question <b>now</b>",
        "query_0": "It is raining.",
        "response_0": "Is it raining?",
        "query_1": "She left early.",
        "response_1": "",
    }
    r = client.post("/labeler/prompts/new", data=data)
    assert r.status_code == 422
    assert "example 2 needs a response" in r.text
    # what they typed is still there, escaped
    assert "Turn the sentence into a question &lt;b&gt;now&lt;/b&gt;" in r.text
    assert "It is raining." in r.text and "She left early." in r.text
    assert stored(session) == []

    data["response_1"] = "Did she leave early?"
    r = client.post("/labeler/prompts/new", data={**data, "csrf_token": csrf_from(r.text)})
    assert r.status_code == 200 and 'id="prompt-notice"' in r.text
    prompt = stored(session)[0]
    assert prompt.kind == "few_shot"
    assert prompt.structure == {
        "instruction": "Turn the sentence into a question <b>now</b>",
        "examples": [
            {"query": "It is raining.", "response": "Is it raining?"},
            {"query": "She left early.", "response": "Did she leave early?"},
        ],
    }
    assert (
        prompt.text.startswith("Turn the sentence")
        and "Output: Did she leave early?" in prompt.text
    )


def test_use_case_prompt_needs_a_use_case(client, make_user) -> None:
    login(client, make_user("labeler"))
    page = form_page(client, "use_case")
    r = client.post(
        "/labeler/prompts/new",
        data={"csrf_token": csrf_from(page), "kind": "use_case", "text": "Summarise my notes"},
    )
    assert r.status_code == 422 and "choose the use case" in r.text
    assert "Summarise my notes" in r.text
    r = client.post(
        "/labeler/prompts/new",
        data={"csrf_token": csrf_from(page), "kind": "use_case", "text": "Summarise my notes",
              "use_case": "Summarization"},
    )  # fmt: skip
    assert r.status_code == 200 and "accepted" in r.text


def test_duplicate_keeps_input_and_says_why(client, make_user) -> None:
    login(client, make_user("labeler"))
    text = "Write a long story about a dragon who learns to bake bread in a small village"
    page = form_page(client, "plain")
    client.post("/labeler/prompts/new", data={"csrf_token": csrf_from(page), "kind": "plain",
                                             "text": text})  # fmt: skip
    r = client.post("/labeler/prompts/new", data={"csrf_token": csrf_from(page), "kind": "plain",
                                                 "text": text + " again"})  # fmt: skip
    assert r.status_code == 409 and "duplicate" in r.text and text + " again" in r.text


def test_form_without_csrf_is_refused(client, make_user) -> None:
    login(client, make_user("labeler"))
    r = client.post("/labeler/prompts/new", data={"kind": "plain", "text": "x"})
    assert r.status_code == 403


def test_labeler_prompt_json_twin(api_as) -> None:
    api = api_as("labeler")
    r = api.post(
        "/api/v1/labeler-prompts",
        json={"kind": "few_shot", "instruction": "Antonyms",
              "examples": [{"query": "hot", "response": "cold"}, {"query": "up", "response": "down"}]},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["result"]["status"] == "accepted"
    assert body["prompt"]["user_id"] == f"labeler:{api.user.id}"
    assert body["prompt"]["structure"]["examples"][1] == {"query": "up", "response": "down"}
    r = api.post("/api/v1/labeler-prompts", json={"kind": "few_shot", "instruction": "x"})
    assert r.status_code == 422 and r.json()["field"] == "examples"
    r = api.post("/api/v1/labeler-prompts", json={"kind": "poem"})
    assert r.status_code == 422 and r.json()["field"] == "kind"
    # a labeler may categorise a prompt afterwards
    prompt_id = body["prompt"]["prompt_id"]
    r = api.put(f"/api/v1/prompts/{prompt_id}/use-case", json={"use_case": "rewrite"})
    assert r.status_code == 200 and r.json()["use_case"] == "Rewrite"
    r = api.put(f"/api/v1/prompts/{prompt_id}/use-case", json={"use_case": "Nope"})
    assert r.status_code == 422 and r.json()["field"] == "use_case"


def test_admin_data_page_counts(client, make_user, api_as) -> None:
    api = api_as("researcher")
    api.post(
        "/api/v1/prompts",
        json={"prompts": [
            {"text": "Plan a trip to Lisbon for a week with two kids who love trams and the sea", "user_id": "c1",
             "use_case": "Brainstorming"},
            {"text": "Plan a trip to Lisbon for a week with two kids who love trams and the sea, cheaply", "user_id": "c2"},
            {"text": "Reply to sam@example.com about the invoice", "user_id": "c3"},
        ]},
    )  # fmt: skip
    overview = api.get("/api/v1/data/overview").json()
    assert overview["curation"]["by_status"]["accepted"] == 2
    assert overview["curation"]["by_status"]["duplicate"] == 1
    ppo = [r for r in overview["datasets"]["rows"] if r["dataset"] == "PPO"]
    assert sum(r["api"] for r in ppo) == 2 and sum(r["labeler"] for r in ppo) == 0
    assert {u["use_case"] for u in overview["use_cases"]} == {"Brainstorming", "(not set)"}

    researcher = make_user("researcher")
    login(client, researcher)
    page = client.get("/admin/data")
    assert page.status_code == 200
    assert "Brainstorming" in page.text and re.search(
        r"duplicate</td><td class=\"num\">1", page.text
    )


def test_admin_edits_use_cases_and_pins(client, make_user) -> None:
    login(client, make_user("researcher"))
    page = client.get("/admin/data/use-cases")
    assert page.status_code == 200 and page.text.count('name="name"') == 11  # ten + the add form
    r = client.post("/admin/data/use-cases", data={"csrf_token": csrf_from(page.text),
                                                   "name": "Translation"})  # fmt: skip
    assert r.status_code == 200 and "Translation" in r.text  # after the redirect
    r = client.post("/admin/data/use-cases", data={"csrf_token": csrf_from(page.text),
                                                   "name": "translation"})  # fmt: skip
    assert r.status_code == 409 and "already exists" in r.text
    pins = client.get("/admin/data/pins")
    r = client.post("/admin/data/pins", data={"csrf_token": csrf_from(pins.text),
                                              "user_id": "vip-customer", "split": "test"})  # fmt: skip
    assert r.status_code == 200 and "vip-customer" in r.text
    assert "No prompt has come from this user ID yet" in r.text  # unknown user ID: said so
    from tests.labeling_support import make_prompt

    make_prompt("A prompt from a known customer.", split="train")
    known = _read_user_id_of_last_prompt()
    r = client.post("/admin/data/pins", data={"csrf_token": csrf_from(pins.text),
                                              "user_id": known, "split": "test"})  # fmt: skip
    assert r.status_code == 200 and "moved 1 prompt(s)" in r.text
    r = client.post("/admin/data/pins", data={"csrf_token": csrf_from(pins.text),
                                              "user_id": "x", "split": "holdout"})  # fmt: skip
    assert r.status_code == 422 and "unknown split" in r.text


def _read_user_id_of_last_prompt() -> str | None:
    from sqlalchemy import select

    from app.db import get_sessionmaker
    from app.models import Prompt

    with get_sessionmaker()() as s:
        return s.scalars(select(Prompt.user_id).order_by(Prompt.id.desc())).first()


def test_labeler_cannot_open_admin_data(client, make_user) -> None:
    login(client, make_user("labeler"))
    assert client.get("/admin/data").status_code == 403
    assert client.get("/admin/data/use-cases").status_code == 403


def test_use_case_edit_with_a_bad_position_says_so(client, make_user, session) -> None:
    from app.models import UseCase

    login(client, make_user("researcher"))
    page = client.get("/admin/data/use-cases")
    first = session.scalars(select(UseCase).order_by(UseCase.position)).first()
    before = (first.id, first.name, first.position)
    session.commit()
    r = client.post(
        f"/admin/data/use-cases/{first.id}",
        data={"csrf_token": csrf_from(page.text), "name": "Renamed", "position": "first"},
    )
    assert r.status_code == 422 and "whole number" in r.text
    after = session.get(UseCase, first.id)
    assert (after.id, after.name, after.position) == before  # nothing half-applied
    session.commit()
