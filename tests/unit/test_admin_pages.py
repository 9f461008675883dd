"""Admin pages through the test client: the admin home's figures agree with the data page and
with what labelers see, and the data browser's filters, detail view and export link."""

from __future__ import annotations

import re

from tests.conftest import login
from tests.labeling_support import make_prompt, make_ranking_task


def _cell(html: str, cell_id: str) -> str:
    match = re.search(rf'id="{cell_id}">([^<]*)<', html)
    assert match, cell_id
    return match.group(1).strip()


def test_admin_home_figures_have_one_source(client, api_as, make_user) -> None:
    for i in range(3):
        make_prompt(f"Write a limerick about cheese number {i}.")  # no demonstration task yet
    make_ranking_task(make_prompt("Rank these answers.", split="train"), k=4)
    login(client, make_user("researcher"))
    overview = client.get("/admin/overview").text
    # tasks are made lazily when a labeler looks: the home counts them already
    assert _cell(overview, "open-demonstration-tasks") == "4"  # 3 + the ranked prompt
    assert _cell(overview, "open-ranking-tasks") == "1"
    labeler = api_as("labeler")
    assert labeler.get("/api/v1/tasks/next?kind=demonstration").status_code == 200  # made now
    overview_after = client.get("/admin/overview").text
    assert _cell(overview_after, "open-demonstration-tasks") == "4"  # the same figure
    # RM (train) prompts: the same number as the data page's table
    assert _cell(overview, "rm-train").startswith("1 prompt · 0 rankings")  # was "1 prompts"
    data = client.get("/admin/data").text
    rm_train = re.search(
        r"<td>RM</td><td>train</td>.*?<td class=\"num\">(\d+)</td></tr>", data, re.S
    )
    assert rm_train and rm_train.group(1) == "1"


def test_data_browser_filters_detail_and_export_link(client, api_as, make_user) -> None:
    from urllib.parse import parse_qsl, urlsplit

    ana = make_user("labeler", username="ana")
    make_user("labeler", username="ben")
    train = make_prompt("Summarise the history of tea.")
    make_prompt("Translate 'good morning' to Spanish.", split="test")
    task_id, ids = make_ranking_task(make_prompt("Pick the best haiku.", split="train"), k=4)
    from tests.conftest import login as log

    labeler = api_as("labeler", user=ana)
    demo = labeler.get("/api/v1/tasks/next?kind=demonstration").json()
    labeler.post(
        f"/api/v1/tasks/{demo['task_id']}/submission", json={"text": "Tea came from China."}
    )
    labeler.get("/api/v1/tasks/next?kind=ranking")
    labeler.post(f"/api/v1/tasks/{task_id}/submission", json={"ranking": [ids]})

    log(client, make_user("researcher"))
    assert client.get("/admin/browse", follow_redirects=False).status_code == 307
    page = client.get("/admin/browse/prompts?split=test")
    assert (
        page.status_code == 200
        and "good morning" in page.text
        and "history of tea" not in page.text
    )
    page = client.get("/admin/browse/demonstrations?labeler=ana&split=train")
    assert "Tea came from China." in page.text and 'id="browse-total">1 demonstrations' in page.text
    link = re.search(r'id="export-link" href="([^"]+)"', page.text)
    assert link
    url = link.group(1).replace("&amp;", "&")
    assert urlsplit(url).path == "/api/v1/export/demonstrations"
    assert dict(parse_qsl(urlsplit(url).query)) == {"split": "train", "labeler_id": str(ana.id)}
    exported = client.get(url)  # the same data through the export API
    assert exported.status_code == 200 and exported.headers["x-total-count"] == "1"
    assert "Tea came from China." in exported.text
    assert client.get("/admin/browse/demonstrations?labeler=ben").text.count("Tea came") == 0
    rankings = client.get("/admin/browse/rankings?use_case=&split=train")
    assert 'id="browse-total">1 rankings' in rankings.text
    assert "/api/v1/export/comparisons?format=rankings&amp;split=train" in rankings.text
    tasks = client.get("/admin/browse/tasks?status=done")
    assert "Pick the best haiku." in tasks.text and "export-link" not in tasks.text

    # every filter is checked: a 422 on the page that names it, never an empty result
    for query, field in [
        ("prompts?split=holdout", "split"),
        ("prompts?status=lost", "status"),
        ("demonstrations?status=accepted", "status"),
        # a well-formed filter naming nobody: 404, as the export API answers it, shown inline
        ("rankings?labeler=nobody", "labeler"),
        ("tasks?since=yesterday", "since"),
        ("prompts?since=2030-01-02&until=2030-01-01", "since"),
        ("prompts?page=0", "page"),
        ("prompts?colour=red", "colour"),
        ("rankings?min_gold_accuracy=0.5", "min_gold_accuracy"),  # the export's, not applied here
    ]:
        r = client.get(f"/admin/browse/{query}")
        expected = 404 if "nobody" in query else 422
        assert r.status_code == expected, query
        assert 'id="browse-error"' in r.text and f"({field})" in r.text, query
    assert client.get("/admin/browse/secrets").status_code == 404

    detail = client.get(f"/admin/browse/prompts/{train}")
    assert (
        detail.status_code == 200 and "Tea came from China." in detail.text and "ana" in detail.text
    )
    ranked = client.get(f"/admin/browse/prompts/{ids and _prompt_of(task_id)}")
    assert ranked.status_code == 200 and f"Task {task_id}" in ranked.text
    assert client.get("/admin/browse/prompts/2147483647").status_code == 404
    assert client.get("/admin/browse/prompts/99999999999").status_code in (404, 422)
    login_as_labeler = api_as("labeler")
    assert login_as_labeler.get("/admin/browse/prompts").status_code == 403


def _prompt_of(task_id: int) -> int:
    from app.db import get_sessionmaker
    from app.models import Task

    with get_sessionmaker()() as s:
        return s.get_one(Task, task_id).prompt_id


def test_counts_are_worded_for_one_and_many() -> None:
    from app.services.wording import counted

    assert counted(1, "demonstration") == "1 demonstration"  # was "1 demonstrations"
    assert counted(0, "ranking task") == "0 ranking tasks"
    assert counted(12345, "prompt") == "12,345 prompts"
    assert counted(2, "child", "children") == "2 children"
