"""POST/GET /api/v1/prompts through the app: statuses, validation, idempotency, roles, PII."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.config import get_settings
from app.services.curation.splits import hash_split

RATIOS = (0.8, 0.1, 0.1)


def user_in(split: str, tag: str = "u") -> str:
    """A user ID that the default ratios hash to ``split``."""
    n = 0
    while hash_split(f"{tag}-{n}", RATIOS) != split:
        n += 1
    return f"{tag}-{n}"


def ingest(client, prompts: list[dict]) -> list[dict]:
    r = client.post("/api/v1/prompts", json={"prompts": prompts})
    assert r.status_code == 200, r.text
    return r.json()["results"]


def test_accepted_prompt_is_stored_and_readable(api_as) -> None:
    api = api_as("researcher")
    user = user_in("val")
    [result] = ingest(
        api,
        [{"text": "Write a story about a wise frog.", "user_id": user, "external_id": "e1",
          "use_case": "generation", "metadata": {"lang": "en"}}],
    )  # fmt: skip
    assert result["status"] == "accepted" and result["split"] == "val"
    assert result["external_id"] == "e1" and result["reason"] is None
    got = api.get(f"/api/v1/prompts/{result['prompt_id']}").json()
    assert got["text"] == "Write a story about a wise frog."
    assert got["use_case"] == "Generation"  # canonical name, matched case-insensitively
    assert got["source"] == "api" and got["user_id"] == user and got["status"] == "accepted"
    assert got["duplicate_of"] is None and got["pii"] == {}  # every split is scanned
    assert got["metadata"] == {"lang": "en"}


def test_results_in_input_order_with_rejections(api_as) -> None:
    api = api_as("researcher")
    limit = get_settings().prompt_max_chars
    results = ingest(
        api,
        [
            {"text": "", "user_id": "a", "external_id": "empty"},
            {"text": "   \n ", "user_id": "a", "external_id": "blank"},
            {"text": "x" * (limit + 1), "user_id": "a", "external_id": "big"},
            {"text": 42, "user_id": "a", "external_id": "number"},
            {"text": None, "user_id": "a", "external_id": "null"},
            {"text": ["a", "list"], "user_id": "a", "external_id": "list"},
            {"text": "bin\x00ary", "user_id": "a", "external_id": "nul"},
            {"text": "A fine prompt about gardening in spring.", "user_id": "a",
             "external_id": "ok"},
            {"text": "Another prompt", "user_id": "a", "use_case": "Astrology"},
        ],
    )  # fmt: skip
    assert [r["external_id"] for r in results] == [
        "empty", "blank", "big", "number", "null", "list", "nul", "ok", None,
    ]  # fmt: skip
    statuses = [r["status"] for r in results]
    assert statuses == ["rejected"] * 7 + ["accepted", "rejected"]
    reasons = [r["reason"] for r in results]
    assert "empty" in reasons[0] and "empty" in reasons[1]
    assert str(limit) in reasons[2]
    assert all("string" in reason for reason in reasons[3:6])
    assert "NUL" in reasons[6]
    assert "Astrology" in reasons[8] and "Generation" in reasons[8]
    assert all(r["prompt_id"] is None for r in results if r["status"] == "rejected")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompts": [{"text": "hi"}]}, "prompts.0.user_id"),
        ({"prompts": [{"user_id": "u"}]}, "prompts.0.text"),
        ({"prompts": "not a list"}, "prompts"),
        ({"prompts": []}, "prompts"),
        ({}, "prompts"),
        ({"prompts": [{"text": "hi", "user_id": "u", "colour": "red"}]}, "prompts.0.colour"),
        ({"prompts": [{"text": "hi", "user_id": "u", "metadata": [1]}]}, "prompts.0.metadata"),
        ({"prompts": [{"text": "t", "user_id": "u"}] * 1001}, "prompts"),
    ],
)
def test_malformed_body_is_422_naming_the_field(api_as, body, field) -> None:
    r = api_as("researcher").post("/api/v1/prompts", json=body)
    assert r.status_code == 422
    assert r.json()["field"] == field and field in r.json()["detail"]


def test_invalid_json_is_422(api_as) -> None:
    r = api_as("researcher").post(
        "/api/v1/prompts", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422 and r.json()["field"] == "body"


def test_resending_external_id_is_idempotent(api_as, session) -> None:
    from app.models import Prompt

    api = api_as("researcher")
    batch = [
        {"text": f"Prompt number {n} about a different topic entirely", "user_id": f"c{n % 2}",
         "external_id": f"x{n}"}
        for n in range(5)
    ]  # fmt: skip
    first = ingest(api, batch)
    second = ingest(api, batch)
    assert first == second
    # the same external_id twice in one call answers twice with the one prompt
    third = ingest(api, [batch[0], batch[0]])
    assert third == [first[0], first[0]]
    assert session.scalar(select(func.count()).select_from(Prompt)) == 5


def test_shared_prefix_is_a_duplicate_of_the_first(api_as) -> None:
    api = api_as("researcher")
    n = get_settings().dedup_prefix_chars
    base = "Explain the moon landing to a six year old in a few sentences please " * 2
    assert len(base) > n
    first, same_prefix, differs = ingest(
        api,
        [
            {"text": base, "user_id": "a"},
            # same first n characters after normalising case and whitespace, then different
            {
                "text": "  " + base[:n].upper().replace(" ", "   ") + " but in French",
                "user_id": "b",
            },
            {"text": base[: n - 1] + "!" + base[n:], "user_id": "c"},
        ],
    )
    assert first["status"] == "accepted" and differs["status"] == "accepted"
    assert same_prefix["status"] == "duplicate"
    got = api.get(f"/api/v1/prompts/{same_prefix['prompt_id']}").json()
    assert got["duplicate_of"] == first["prompt_id"] and got["status"] == "duplicate"
    # later calls find the owner through the stored key
    [again] = ingest(api, [{"text": base + " with a twist", "user_id": "d"}])
    assert again["status"] == "duplicate"


def test_short_prompts_duplicate_only_when_identical(api_as) -> None:
    api = api_as("researcher")
    results = ingest(
        api,
        [
            {"text": "Say hi", "user_id": "a"},
            {"text": "say   HI", "user_id": "b"},
            {"text": "Say hi to me", "user_id": "c"},
        ],
    )
    assert [r["status"] for r in results] == ["accepted", "duplicate", "accepted"]


def test_cap_per_user(api_as, monkeypatch) -> None:
    monkeypatch.setenv("PREFLOOP_PROMPTS_PER_USER_CAP", "3")
    get_settings.cache_clear()
    api = api_as("researcher")
    prompts = [{"text": f"Topic {n}: tell me something new", "user_id": "capped"} for n in range(5)]
    results = ingest(api, prompts)
    assert [r["status"] for r in results] == ["accepted"] * 3 + ["over_cap"] * 2
    assert "3" in results[3]["reason"]
    [later] = ingest(api, [{"text": "One more, on another day", "user_id": "capped"}])
    assert later["status"] == "over_cap" and later["prompt_id"] is not None
    [other] = ingest(api, [{"text": "One more, on another day", "user_id": "someone else"}])
    assert other["status"] == "accepted"  # an over-cap prompt does not own its prefix


def test_training_split_prompt_is_redacted(api_as) -> None:
    api = api_as("researcher")
    text = "Email jane.roe@example.org or call +1 415 555 0132 about card 4111-1111-1111-1111."
    [result] = ingest(api, [{"text": text, "user_id": user_in("train")}])
    got = api.get(f"/api/v1/prompts/{result['prompt_id']}").json()
    assert result["status"] == "accepted" and got["split"] == "train"
    assert got["text"] == "Email <EMAIL_ADDRESS> or call <PHONE_NUMBER> about card <CREDIT_CARD>."
    assert got["pii"] == {"EMAIL_ADDRESS": 1, "PHONE_NUMBER": 1, "CREDIT_CARD": 1}


def test_drop_policy_rejects_and_keeps_no_raw_text(api_as, monkeypatch) -> None:
    monkeypatch.setenv("PREFLOOP_PII_POLICY", "drop")
    get_settings.cache_clear()
    api = api_as("researcher")
    [dropped, clean] = ingest(
        api,
        [
            {"text": "My SSN is 123-45-6789, fill the form", "user_id": user_in("train")},
            {"text": "A prompt without personal data", "user_id": user_in("train", "v")},
        ],
    )
    assert dropped["status"] == "rejected" and "US_SSN" in dropped["reason"]
    got = api.get(f"/api/v1/prompts/{dropped['prompt_id']}").json()
    assert got["status"] == "pii_dropped" and "123-45-6789" not in got["text"]
    assert clean["status"] == "accepted"


def test_pin_moves_prompts_and_scans_them(api_as, monkeypatch) -> None:
    from app.config import get_settings

    # a deployment that scans train only (and labels only train)
    monkeypatch.setenv("PREFLOOP_PII_SPLITS", "train")
    monkeypatch.setenv("PREFLOOP_DEMONSTRATION_SPLITS", "train")
    get_settings.cache_clear()
    api = api_as("researcher")
    user = user_in("test")
    [result] = ingest(api, [{"text": "Reach me at bob@example.com for details", "user_id": user}])
    assert result["split"] == "test"
    r = api.put(f"/api/v1/split-pins/{user}", json={"split": "train"})
    assert r.status_code == 200 and r.json()["moved"] == 1
    got = api.get(f"/api/v1/prompts/{result['prompt_id']}").json()
    assert got["split"] == "train" and got["text"] == "Reach me at <EMAIL_ADDRESS> for details"
    [later] = ingest(api, [{"text": "Something else to ask about", "user_id": user}])
    assert later["split"] == "train"
    assert api.put(f"/api/v1/split-pins/{user}", json={"split": "nope"}).status_code == 422
    assert api.delete(f"/api/v1/split-pins/{user}").status_code == 204
    assert api.delete(f"/api/v1/split-pins/{user}").status_code == 404


def test_roles_and_ingest_scope(api_as, make_user, make_token, client) -> None:
    body = {"prompts": [{"text": "Hello there, a prompt", "user_id": "r"}]}
    labeler = api_as("labeler")
    assert labeler.post("/api/v1/prompts", json=body).status_code == 403
    assert labeler.get("/api/v1/prompts/1").status_code == 403
    assert client.post("/api/v1/prompts", json=body).status_code == 401
    # an ingest-scoped token (even a labeler's) may ingest, and do nothing else
    scoped_user = make_user("labeler")
    client.headers["Authorization"] = f"Bearer {make_token(scoped_user, scopes=['ingest'])}"
    r = client.post("/api/v1/prompts", json=body)
    assert r.status_code == 200 and r.json()["results"][0]["status"] == "accepted"
    prompt_id = r.json()["results"][0]["prompt_id"]
    assert client.get(f"/api/v1/prompts/{prompt_id}").status_code == 403
    assert client.get("/api/v1/use-cases").status_code == 403
    assert api_as("admin").get(f"/api/v1/prompts/{prompt_id}").status_code == 200
    assert api_as("researcher").get("/api/v1/prompts/999999").status_code == 404


def test_use_cases_are_seeded_at_bootstrap_and_reading_them_never_writes(api_as, session) -> None:
    from app.models import DEFAULT_USE_CASES, UseCase
    from app.services.bootstrap import bootstrap

    api = api_as("labeler")
    assert [u["name"] for u in api.get("/api/v1/use-cases").json()] == list(DEFAULT_USE_CASES)
    session.query(UseCase).delete()
    session.commit()
    assert api.get("/api/v1/use-cases").json() == []  # a GET shows the list, it seeds nothing
    assert session.scalar(select(func.count()).select_from(UseCase)) == 0
    bootstrap(session)  # `prefloop serve` on start
    assert [u["name"] for u in api.get("/api/v1/use-cases").json()] == list(DEFAULT_USE_CASES)


def test_renaming_a_use_case_moves_its_prompts(api_as) -> None:
    api = api_as("researcher")
    [kept, moved] = ingest(
        api,
        [
            {"text": "Summarise the frog's day.", "user_id": "r-1", "use_case": "Summarization"},
            {"text": "Write a story about a frog.", "user_id": "r-2", "use_case": "Generation"},
        ],
    )
    generation = next(u for u in api.get("/api/v1/use-cases").json() if u["name"] == "Generation")
    r = api.patch(f"/api/v1/use-cases/{generation['id']}", json={"name": "Story writing"})
    assert r.status_code == 200, r.text
    assert api.get(f"/api/v1/prompts/{moved['prompt_id']}").json()["use_case"] == "Story writing"
    assert api.get(f"/api/v1/prompts/{kept['prompt_id']}").json()["use_case"] == "Summarization"
