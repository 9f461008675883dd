"""The compact ranking page in Chromium: a K=9 task fits two screens at 1366x900, K=4 ranked
by hotkeys alone in under 30 key presses, an untouched ranking refused inline, a draft that
survives a 422 and a reload, and 44 px tap targets at 390x844.

The page does not depend on the database backend (the unit tests cover both doors on both):
these run once, on SQLite, for the suite's time budget."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from app.models import Ranking
from tests.browser.conftest import log_in
from tests.labeling_support import make_prompt, make_ranking_task

pytestmark = pytest.mark.browser

DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}


def _sqlite_only(app_env: str) -> None:
    if not app_env.startswith("sqlite"):
        pytest.skip("page layout and keys do not depend on the database: run once, on SQLite")


def _read(fn):
    from app.db import get_sessionmaker

    with get_sessionmaker()() as s:
        return fn(s)


def _entries(task_id: int) -> dict[int, tuple[int, int | None, list[str]]] | None:
    def fetch(s):
        ranking = s.scalar(select(Ranking).where(Ranking.task_id == task_id))
        if ranking is None:
            return None
        return {e.completion_id: (e.rank, e.likert, e.flags) for e in ranking.entries}

    return _read(fetch)


def _shown(page: Any) -> list[int]:
    return [
        int(c)
        for c in page.eval_on_selector_all(".rank-card", "els => els.map(e => e.dataset.cid)")
    ]


class Keys:
    """The keyboard, counting every key press."""

    def __init__(self, page: Any) -> None:
        self.page, self.count = page, 0

    def press(self, *keys: str) -> None:
        for key in keys:
            self.page.keyboard.press(key)
            self.count += 1


def test_k9_fits_two_screens_and_k4_ranks_by_hotkeys_alone(
    app_env, live_server, page, make_user, artifacts_dir
) -> None:
    _sqlite_only(app_env)
    labeler = make_user("labeler")
    k9, _ = make_ranking_task(
        make_prompt("Give me a word that rhymes with light.", split="test"),
        [
            f"{w} — it rhymes with light."
            for w in [
                "bright",
                "night",
                "kite",
                "sight",
                "flight",
                "might",
                "white",
                "fight",
                "tight",
            ]
        ],
    )
    page.set_viewport_size(DESKTOP)
    log_in(page, live_server, labeler)
    page.goto(f"{live_server}/labeler/next?kind=ranking")
    assert page.url.endswith(f"/labeler/tasks/{k9}")
    height = page.evaluate("document.documentElement.scrollHeight")
    print(f"K=9 page height at 1366x900: {height} px ({height / 900:.2f} screens)")
    assert height <= 2 * 900
    assert page.inner_text("[data-draft-status]") == ""  # nothing typed: no "Draft saved"
    page.screenshot(path=str(artifacts_dir / "ranking-k9-1366.png"), full_page=True)
    # a card is a handful of tab stops, not 15: the card, its score group, its flags
    stops = page.evaluate(
        """() => { const card = document.querySelector('.rank-card');
        const all = card.querySelectorAll('a, button, input, summary, [tabindex]');
        const names = new Set();
        let n = 1;
        for (const el of all) {
          if (el.tabIndex < 0 || el.hidden || el.type === 'hidden' || !el.offsetParent) continue;
          if (el.type === 'radio') { if (names.has(el.name)) continue; names.add(el.name); }
          if (el.closest('details:not([open])') && el.tagName !== 'SUMMARY') continue;
          n += 1;
        }
        return n; }"""
    )
    assert stops <= 4, stops
    page.click("text=Skip this task")
    page.fill("#skip-reason", "measured only")
    page.click("#skip-task")
    page.wait_for_selector("#saved-notice")

    # K=4 by hotkeys alone: the best is the third shown, then the first, the others tied last
    k4, _ = make_ranking_task(make_prompt("Name a planet.", split="test"), k=4)
    page.goto(f"{live_server}/labeler/next?kind=ranking")
    assert page.url.endswith(f"/labeler/tasks/{k4}")
    a, b, c, d = _shown(page)
    keys = Keys(page)
    keys.press("?")  # the list of keys
    assert page.is_visible("#hotkeys") and "Ctrl" in page.inner_text("#hotkeys")
    keys.press("Escape")
    keys.press("j", "5")  # the first card (A) gets focus, scored 5
    keys.press("j", "2")  # B: 2
    keys.press("j", "7", "Home")  # C: 7, and to the top: C A B D
    assert _shown(page) == [c, a, b, d]
    keys.press("j", "j", "j", "t")  # from C down to D, tied with B above it
    keys.press("f", "Space", "Escape")  # D's flags: tick the first, back to the card
    keys.press("Control+Enter")
    page.wait_for_selector("#saved-notice")
    print(f"K=4 ranked by hotkeys in {keys.count} key presses")
    assert keys.count < 30
    entries = _entries(k4)
    assert entries is not None and entries[c][0] == 1 and entries[c][1] == 7
    assert entries[a][:2] == (2, 5) and entries[b][0] == entries[d][0] == 3
    assert entries[d][2] == ["fails_to_follow"]  # the first flag, ticked with Space

    # K <= 3 (evaluations): side by side on a wide screen, best on the left
    k3 = _three_output_task()
    page.goto(f"{live_server}/labeler/next?kind=ranking")
    assert page.url.endswith(f"/labeler/tasks/{k3}")
    boxes = [page.locator(".rank-card").nth(i).bounding_box() for i in range(3)]
    assert (
        len({round(b["y"]) for b in boxes}) == 1 and boxes[0]["x"] < boxes[1]["x"] < boxes[2]["x"]
    )
    x, y = boxes[2]["x"] + 40, boxes[2]["y"] + 15  # drag the right card to the left
    third = _shown(page)[2]
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(boxes[0]["x"] + 10, y, steps=8)
    page.mouse.up()
    assert _shown(page)[0] == third
    page.screenshot(path=str(artifacts_dir / "ranking-k3-side-by-side-1366.png"), full_page=True)
    assert page.dialogs == []


def _three_output_task() -> int:
    """A ranking form with three outputs (an evaluation's shape; made directly, since ranking
    tasks proper need 4..9)."""
    from app.db import get_sessionmaker
    from app.models import Task, TaskItem
    from app.services.completions import add_completions

    prompt_id = make_prompt("Which is the best greeting?", split="test")
    with get_sessionmaker()() as s:
        rows = add_completions(
            s, prompt_id, [{"text": t, "origin": "test"} for t in ("Hello.", "Hi there!", "Hey.")]
        )
        task = Task(kind="ranking", prompt_id=prompt_id, overlap=1)
        task.items = [TaskItem(completion_id=c.id, position=i) for i, c in enumerate(rows)]
        s.add(task)
        s.commit()
        return task.id


def test_untouched_refused_draft_survives_a_422_and_a_reload_and_phone_targets(
    app_env, live_server, page, make_user, artifacts_dir
) -> None:
    _sqlite_only(app_env)
    long_text = "\n".join(f"Line {i} of a long answer about the sea." for i in range(40))
    task_id, (long_id, *_) = make_ranking_task(
        make_prompt("Describe the sea.", split="test"),
        [long_text, "The sea is big.", "Salt water, waves.", "Blue, mostly."],
    )
    page.set_viewport_size(PHONE)
    log_in(page, live_server, make_user("labeler"))
    page.goto(f"{live_server}/labeler/next?kind=ranking")
    assert page.url.endswith(f"/labeler/tasks/{task_id}")
    a, b, c, d = _shown(page)

    # untouched: refused on the page, nothing sent
    page.click("#submit-task")
    assert page.is_visible("#untouched") and "order shown" in page.inner_text("#untouched")
    assert page.url.endswith(f"/labeler/tasks/{task_id}") and _entries(task_id) is None

    # tap targets: every control a labeler touches is at least 44x44 px at 390 wide
    page.click(".rank-card:first-child details.flags summary")
    targets = page.evaluate(
        """() => [...document.querySelectorAll(
            '.task-main button, .task-main summary, .task-main label.seg, .task-main label.choice, .task-main select, .task-main a')]
          .filter(el => el.offsetParent && !el.closest('.visually-hidden'))
          .map(el => [el.textContent.trim().slice(0, 30), el.getBoundingClientRect()])
          .map(([name, r]) => [name, Math.round(r.width), Math.round(r.height)])"""
    )
    print(
        f"{len(targets)} tap targets at 390x844, smallest "
        f"{min(w for _, w, _ in targets)} px wide, {min(h for *_, h in targets)} px tall"
    )
    assert [t for t in targets if t[1] < 44 or t[2] < 44] == []
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    long_card = page.locator(f'.rank-card[data-cid="{long_id}"]')
    assert long_card.locator("[data-show-all]").is_visible()  # long output collapsed
    collapsed = long_card.bounding_box()["height"]
    long_card.locator("[data-show-all]").click()
    assert long_card.bounding_box()["height"] > collapsed + 200
    long_card.locator("[data-show-all]").click()
    page.click(".rank-card:first-child details.flags summary")
    page.screenshot(path=str(artifacts_dir / "ranking-k4-390.png"), full_page=True)

    # some work, then a server-side 422 (a skip without its reason) keeps it
    page.click(f'.rank-card[data-cid="{c}"] [data-move="up"]')
    page.click(f'.rank-card[data-cid="{d}"] label.seg:nth-child(6)')
    page.click("text=Skip this task")
    page.click("#skip-task")
    page.wait_for_selector("#skip-error")
    assert _shown(page) == [a, c, b, d]
    # more work on the error page, then a reload: a GET of the task page, the draft restored
    page.click(f'.rank-card[data-cid="{b}"] label.seg:nth-child(2)')
    page.wait_for_function(
        "() => document.querySelector('[data-draft-status]').textContent.includes('saved')"
    )
    page.reload()
    assert page.url.endswith(f"/labeler/tasks/{task_id}")
    assert not page.is_visible("#skip-error")  # not the old form posted again
    assert _shown(page) == [a, c, b, d]
    assert page.is_checked(f'input[name="likert_{d}"][value="6"]')
    assert page.is_checked(f'input[name="likert_{b}"][value="2"]')
    assert "Draft restored" in page.inner_text("[data-draft-status]")
    page.click("#submit-task")
    page.wait_for_selector("#saved-notice")
    assert _entries(task_id) == {
        a: (1, None, []),
        c: (2, None, []),
        b: (3, 2, []),
        d: (4, 6, []),
    }
    assert page.dialogs == []


def _open_nine_outputs(live_server: str, page: Any, labeler: Any) -> None:
    """A K=9 ranking task (two screens tall), opened by ``labeler`` at desktop size."""
    task_id, _ = make_ranking_task(make_prompt("Name a river.", split="test"), k=9)
    page.set_viewport_size(DESKTOP)
    log_in(page, live_server, labeler)
    page.goto(f"{live_server}/labeler/next?kind=ranking")
    assert page.url.endswith(f"/labeler/tasks/{task_id}")


def test_dragging_near_the_window_edge_scrolls(app_env, live_server, page, make_user) -> None:
    _sqlite_only(app_env)
    _open_nine_outputs(live_server, page, make_user("labeler"))
    first = _shown(page)[0]
    head = page.locator(".rank-card").first.locator(".rank-head").bounding_box()
    page.mouse.move(head["x"] + 60, head["y"] + head["height"] / 2)
    page.mouse.down()
    page.mouse.move(head["x"] + 60, DESKTOP["height"] - 10, steps=5)  # held at the bottom edge
    page.wait_for_function("() => window.scrollY > 300")
    page.mouse.move(head["x"] + 60, 10, steps=5)  # and at the top edge: back up
    page.wait_for_function("() => window.scrollY === 0")
    page.mouse.move(head["x"] + 60, DESKTOP["height"] - 10, steps=5)
    page.wait_for_function(
        "() => window.scrollY + innerHeight >= document.documentElement.scrollHeight - 2"
    )
    page.mouse.up()
    assert _shown(page)[-1] == first  # carried to the end of the list
    assert page.dialogs == []


def test_a_card_pressed_near_the_window_edge_leaves_the_page_still(
    app_env, live_server, page, make_user
) -> None:
    """A press on a card that lies near the window's bottom edge is not a drag yet: the page
    scrolls only once the pointer moves (it used to scroll from the press on, so a drag that
    went on to the top of the list could land below the first card)."""
    _sqlite_only(app_env)
    _open_nine_outputs(live_server, page, make_user("labeler"))
    shown = _shown(page)
    # scroll until the fifth card's header is 20 px above the window's bottom edge
    page.evaluate(
        """() => {
            const head = document.querySelectorAll(".rank-card")[4].querySelector(".rank-head");
            const box = head.getBoundingClientRect();
            window.scrollBy(0, box.top + box.height / 2 - (innerHeight - 20));
        }"""
    )
    scrolled = page.evaluate("() => window.scrollY")
    head = page.locator(".rank-card").nth(4).locator(".rank-head").bounding_box()
    assert head["y"] + head["height"] / 2 > DESKTOP["height"] - 60  # inside the scrolling edge
    page.mouse.move(head["x"] + 60, head["y"] + head["height"] / 2)
    page.mouse.down()
    page.evaluate(  # twenty animation frames: the edge scrolls a step on each while dragging
        """() => new Promise(done => {
            let frames = 0;
            const tick = () => (++frames >= 20 ? done() : requestAnimationFrame(tick));
            requestAnimationFrame(tick);
        })"""
    )
    assert page.evaluate("() => window.scrollY") == scrolled
    page.mouse.up()
    assert _shown(page) == shown  # a press and release in place is not a move
    assert page.dialogs == []
