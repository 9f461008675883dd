"""The labeler's HTML pages through the test client: forms, errors that keep input, escaping,
and the instructions (Markdown rendered and sanitised)."""

from __future__ import annotations

from sqlalchemy import func, select

from app.models import Demonstration, Ranking, RankingEntry
from tests.conftest import csrf_from, login
from tests.labeling_support import make_prompt, make_ranking_task

XSS = '<script>alert("xss")</script><img src=x onerror="alert(1)">'


def _read(fn):
    from app.db import get_sessionmaker

    with get_sessionmaker()() as s:
        return fn(s)


def test_demonstration_page_keeps_input_on_errors_and_saves(client, make_user) -> None:
    labeler = make_user("labeler")
    structure = {
        "instruction": "Translate to French.",
        "examples": [{"query": "cat", "response": "chat"}, {"query": "dog", "response": "chien"}],
    }
    make_prompt("Translate to French.\ncat: chat\ndog: chien\nbird:", structure=structure)
    login(client, labeler)
    page = client.get("/labeler/next?kind=demonstration")
    assert page.status_code == 200 and 'data-testid="few-shot"' in page.text
    assert "Example 2" in page.text and "chien" in page.text
    action = page.url.path
    token = csrf_from(page.text)

    # whitespace only: 422, shown inline
    r = client.post(action, data={"csrf_token": token, "text": "  \r\n "})
    assert r.status_code == 422 and "write the ideal response" in r.text
    # skip without a reason: the response typed so far is still in the form
    draft = "oiseau <b>bold</b>"
    r = client.post(f"{action}/skip", data={"csrf_token": token, "text": draft, "skip_reason": ""})
    assert r.status_code == 422 and "say why you skip" in r.text
    assert "oiseau &lt;b&gt;bold&lt;/b&gt;</textarea>" in r.text
    assert 'data-server-state="1"' in r.text

    r = client.post(
        action, data={"csrf_token": token, "text": "oiseau\r\nfin", "time_spent_ms": "1234"}
    )
    assert r.status_code == 200 and "Saved." in r.text  # followed to the home page
    # the same form sent again (a double click): saved once, no error for the labeler
    again = client.post(action, data={"csrf_token": token, "text": "oiseau\r\nfin"})
    assert again.status_code == 200 and "Saved." in again.text
    changed = client.post(action, data={"csrf_token": token, "text": "autre"})
    assert changed.status_code == 409 and "cannot be changed" in changed.text
    demo = _read(lambda s: s.scalar(select(Demonstration)))
    assert demo.text == "oiseau\nfin" and demo.time_spent_ms == 1234


def test_ranking_form_with_ties_likert_and_flags(client, make_user) -> None:
    labeler = make_user("labeler")
    task_id, ids = make_ranking_task(make_prompt(), k=4)
    login(client, labeler)
    page = client.get("/labeler/next?kind=ranking")
    assert page.url.path == f"/labeler/tasks/{task_id}"
    token = csrf_from(page.text)
    a, b, c, d = ids
    form = {
        "csrf_token": token,
        f"rank_{a}": "2",
        f"rank_{b}": "1",
        f"rank_{c}": "2",
        f"rank_{d}": "3",
        f"likert_{b}": "6",
        f"flags_{b}": ["satisfies_constraint", "expresses_opinion"],
        f"flags_{d}": ["unknown_flag"],
    }
    r = client.post(f"/labeler/tasks/{task_id}", data=form)
    assert r.status_code == 422 and "unknown flag" in r.text
    # everything entered is shown again
    assert f'name="rank_{a}" value="2"' in r.text
    assert 'value="6"\n              checked' in r.text or 'value="6" checked' in r.text.replace(
        "\n              ", " "
    )
    form[f"flags_{d}"] = ["hallucination"]
    r = client.post(f"/labeler/tasks/{task_id}", data=form, follow_redirects=False)
    assert r.status_code == 303
    entries = _read(lambda s: s.scalars(select(RankingEntry)).all())
    got = {e.completion_id: (e.rank, e.likert, e.flags) for e in entries}
    assert got == {
        b: (1, 6, ["satisfies_constraint", "expresses_opinion"]),
        a: (2, None, []),
        c: (2, None, []),
        d: (3, None, ["hallucination"]),
    }
    assert _read(lambda s: s.scalar(select(Ranking.time_spent_ms))) >= 0


def test_completion_text_is_escaped(client, make_user) -> None:
    labeler = make_user("labeler")
    make_ranking_task(make_prompt(XSS), [XSS, "plain", "```python\nprint(1)\n```", "x"])
    login(client, labeler)
    page = client.get("/labeler/next?kind=ranking")
    assert "<script>alert" not in page.text and "<img src=x" not in page.text
    assert "&lt;script&gt;alert(&#34;xss&#34;)&lt;/script&gt;" in page.text
    assert "onerror=&#34;alert(1)&#34;" in page.text


def test_task_pages_refuse_tasks_not_held(client, make_user, api_as) -> None:
    task_id, _ = make_ranking_task(make_prompt(), k=4)
    holder = api_as("labeler")
    holder.get("/api/v1/tasks/next")
    login(client, make_user("labeler"))
    assert client.get(f"/labeler/tasks/{task_id}").status_code == 403
    r = client.get("/labeler/next?kind=ranking")
    assert r.url.path == "/labeler" and "Nothing is waiting" in r.text


def _sweep() -> None:
    """The periodic queue upkeep, which makes the demonstration tasks of prompts that did not
    come through intake (as these tests' prompts)."""
    from app.db import get_sessionmaker
    from app.services.queue_upkeep import maintain_queue

    with get_sessionmaker()() as s:
        maintain_queue(s)
        s.commit()


def test_home_summary_counts(client, make_user) -> None:
    labeler = make_user("labeler")
    make_prompt()
    make_ranking_task(make_prompt(), k=4)
    _sweep()
    login(client, labeler)
    home = client.get("/labeler")
    assert 'hx-get="/labeler/summary"' in home.text
    summary = client.get("/labeler/summary", headers={"HX-Request": "true"}).text
    assert "<html" not in summary  # a fragment for htmx; the whole page without it
    assert "<html" in client.get("/labeler/summary").text
    assert 'data-testid="waiting-demonstration">2<' in summary  # both prompts need one
    assert 'data-testid="waiting-ranking">1<' in summary
    assert 'data-testid="total-ranking">0<' in summary
    assert 'href="/instructions"' in summary


def test_home_summary_writes_nothing(client, make_user) -> None:
    """A GET only reads: the home page no longer makes the missing demonstration tasks (intake
    and the sweep do), and changes no row."""
    from app.models import Assignment, Task

    labeler = make_user("labeler")
    make_prompt()  # accepted, without its demonstration task (it skipped intake)

    def rows(s):
        return [s.scalar(select(func.count()).select_from(m)) for m in (Task, Assignment)]

    before = _read(rows)
    login(client, labeler)
    summary = client.get("/labeler/summary", headers={"HX-Request": "true"}).text
    assert 'data-testid="waiting-demonstration">0<' in summary
    assert _read(rows) == before == [0, 0]
    _sweep()
    summary = client.get("/labeler/summary", headers={"HX-Request": "true"}).text
    assert 'data-testid="waiting-demonstration">1<' in summary


def test_home_summary_caps_waiting_counts(client, make_user, monkeypatch) -> None:
    """Each waiting count stops past a bound (shown "N+"): an exact count read every open task."""
    import app.web.labeler as labeler_pages
    from app.services import queue

    def waiting_up_to_2(session, labeler, up_to=2):
        return queue.waiting_counts(session, labeler, up_to)

    monkeypatch.setattr(labeler_pages, "WAITING_UP_TO", 2)
    monkeypatch.setattr(labeler_pages, "waiting_counts", waiting_up_to_2)
    labeler = make_user("labeler")
    for _ in range(2):
        make_ranking_task(make_prompt(split="test"), k=4)
    login(client, labeler)
    summary = client.get("/labeler/summary", headers={"HX-Request": "true"}).text
    assert 'data-testid="waiting-ranking">2<' in summary
    make_ranking_task(make_prompt(split="test"), k=4)
    summary = client.get("/labeler/summary", headers={"HX-Request": "true"}).text
    assert 'data-testid="waiting-ranking">2+<' in summary


def test_instructions_default_edit_and_sanitising(client, make_user) -> None:
    labeler, researcher = make_user("labeler"), make_user("researcher")
    login(client, labeler)
    page = client.get("/instructions")
    assert "helpfulness to the user first" in page.text and "Truthful" in page.text
    assert client.get("/admin/instructions").status_code == 403

    login(client, researcher)
    editor = client.get("/admin/instructions")
    token = csrf_from(editor.text)
    markdown = (
        "# Rules\n\nBe **kind**.\n\n<script>alert(1)</script>\n\n"
        '[click](javascript:alert(1)) <img src=x onerror="alert(2)">\n\n[ok](https://example.org)'
    )
    r = client.post("/admin/instructions", data={"csrf_token": token, "markdown": markdown})
    assert r.status_code == 200 and "Saved." in r.text
    shown = client.get("/instructions").text
    body = shown.split('id="instructions">', 1)[1].split("</article>", 1)[0]
    assert "<h1>Rules</h1>" in body and "<strong>kind</strong>" in body
    assert "<script" not in body and "<img" not in body and 'href="javascript' not in body
    assert 'href="https://example.org"' in body
    empty = client.post("/admin/instructions", data={"csrf_token": token, "markdown": " "})
    assert empty.status_code == 422 and "must not be empty" in empty.text
    preview = client.post(
        "/admin/instructions/preview",
        data={"markdown": "*x* <script>"},
        headers={"X-CSRF-Token": token},
    )
    assert "<em>x</em>" in preview.text and "<script>" not in preview.text


def _use_case_of(prompt_id: int) -> str | None:
    from app.models import Prompt

    return _read(lambda s: s.get_one(Prompt, prompt_id).use_case)


def test_use_case_select_on_both_task_pages_saves_with_htmx(client, make_user) -> None:
    from app.models import Prompt

    labeler = make_user("labeler")
    demo_prompt = make_prompt()
    rank_prompt = make_prompt()
    task_id, _ = make_ranking_task(rank_prompt, k=4)
    login(client, labeler)
    htmx = {"HX-Request": "true"}

    demo_page = client.get("/labeler/next?kind=demonstration")
    assert 'id="use-case-select"' in demo_page.text
    assert '<option value="" selected>— not set —</option>' in demo_page.text
    assert '<option value="Brainstorming">Brainstorming</option>' in demo_page.text
    demo_url = f"{demo_page.url.path}/use-case"
    assert f'hx-post="{demo_url}"' in demo_page.text
    token = csrf_from(demo_page.text)
    r = client.post(demo_url, data={"csrf_token": token, "use_case": "brainstorming"}, headers=htmx)
    assert r.status_code == 200 and "Saved: Brainstorming." in r.text and "<html" not in r.text
    assert _use_case_of(demo_prompt) == "Brainstorming"  # the canonical name, as in the API
    # the page shows the saved value preselected; "— not set —" clears it
    assert '<option value="Brainstorming" selected>' in client.get(demo_page.url.path).text
    r = client.post(demo_url, data={"csrf_token": token, "use_case": ""}, headers=htmx)
    assert r.status_code == 200 and "Saved: not set." in r.text
    assert _use_case_of(demo_prompt) is None

    # ranking page: the current value is preselected; an unknown one is a 422 shown inline
    from app.db import get_sessionmaker

    with get_sessionmaker()() as s:
        s.get_one(Prompt, rank_prompt).use_case = "Generation"
        s.commit()
    rank_page = client.get("/labeler/next?kind=ranking")
    assert rank_page.url.path == f"/labeler/tasks/{task_id}"
    assert '<option value="Generation" selected>Generation</option>' in rank_page.text
    rank_url = f"/labeler/tasks/{task_id}/use-case"
    bad = client.post(rank_url, data={"csrf_token": token, "use_case": "Nope<b>"}, headers=htmx)
    assert bad.status_code == 422 and 'data-testid="use-case-error"' in bad.text
    assert "unknown use case" in bad.text and "Nope&lt;b&gt;" in bad.text
    assert _use_case_of(rank_prompt) == "Generation"
    # without htmx (no JavaScript): saved, then back to the task page
    plain = client.post(
        rank_url, data={"csrf_token": token, "use_case": "open qa"}, follow_redirects=False
    )
    assert plain.status_code == 303 and plain.headers["location"] == f"/labeler/tasks/{task_id}"
    assert _use_case_of(rank_prompt) == "Open QA"

    # CSRF is required: without the token nothing changes
    no_csrf = client.post(rank_url, data={"use_case": "Chat"}, headers=htmx)
    assert no_csrf.status_code == 403 and _use_case_of(rank_prompt) == "Open QA"

    # a labeler who does not hold the task: 403, nothing changes
    other = make_user("labeler")
    login(client, other)
    other_token = csrf_from(client.get("/labeler").text)
    r = client.post(rank_url, data={"csrf_token": other_token, "use_case": "Chat"}, headers=htmx)
    assert r.status_code == 403 and "not assigned to you" in r.text
    assert (
        client.post(rank_url, data={"csrf_token": other_token, "use_case": "Chat"}).status_code
        == 403
    )
    assert _use_case_of(rank_prompt) == "Open QA"
