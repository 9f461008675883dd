"""A labeler in a real browser: demonstration, ranking by mouse and by keyboard alone (with a
tie), Likert and flags, errors and reloads that keep their work, and inert XSS payloads."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from app.models import Demonstration, Prompt, Ranking
from tests.browser.conftest import log_in
from tests.labeling_support import make_prompt, make_ranking_task

pytestmark = pytest.mark.browser


def _read(fn):
    from app.db import get_sessionmaker

    with get_sessionmaker()() as s:
        return fn(s)


def _shown_order(page: Any) -> list[int]:
    return [
        int(c)
        for c in page.eval_on_selector_all(".rank-card", "els => els.map(e => e.dataset.cid)")
    ]


def _ranking_of(task_id: int) -> tuple[Ranking, dict[int, tuple[int, int | None, list[str]]]]:
    def fetch(s):
        ranking = s.scalar(select(Ranking).where(Ranking.task_id == task_id))
        return ranking, {e.completion_id: (e.rank, e.likert, e.flags) for e in ranking.entries}

    return _read(fetch)


def _tab_to(page: Any, selector: str, limit: int = 150) -> None:
    """Press Tab (keyboard only) until the element matching ``selector`` has focus."""
    for _ in range(limit):
        if page.evaluate(
            "s => document.activeElement && document.activeElement.matches(s)", selector
        ):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached {selector}")


def test_labeler_demonstrates_and_ranks_by_mouse_and_keyboard(
    live_server, browser_page, make_user, artifacts_dir
) -> None:
    page = browser_page
    labeler = make_user("labeler")
    demo_prompt = make_prompt("Write a two-line poem about the sea.")
    # test split: these prompts need rankings only, no demonstration
    mouse_task, _ = make_ranking_task(make_prompt("Name a fruit.", split="test"), k=5)
    keyboard_task, _ = make_ranking_task(make_prompt("Name a colour.", split="test"), k=5)

    log_in(page, live_server, labeler)
    page.click("text=Next demonstration")  # the summary panel is loaded by htmx
    page.wait_for_url("**/labeler/tasks/*")
    assert "two-line poem" in page.inner_text('[data-testid="prompt-text"]')
    poem = "The sea hums low beneath the moon,\nand every wave forgets too soon."
    page.fill("#demo-text", poem)
    page.click("#submit-task")
    page.wait_for_selector("#saved-notice")
    demo = _read(lambda s: s.scalar(select(Demonstration)))
    assert (demo.prompt_id, demo.text, demo.labeler_id) == (demo_prompt, poem, labeler.id)
    assert demo.time_spent_ms is not None and demo.time_spent_ms >= 0

    # ranking 1, with the mouse: reverse the order shown by dragging cards to the top
    page.goto(f"{live_server}/labeler/next?kind=ranking")
    assert page.url.endswith(f"/labeler/tasks/{mouse_task}")
    shown = _shown_order(page)
    assert len(shown) == 5
    for cid in shown[1:]:
        handle = page.locator(f'.rank-card[data-cid="{cid}"] .drag-handle')
        top_card = page.locator(".rank-card").first
        handle.drag_to(top_card, target_position={"x": 40, "y": 5})
    assert _shown_order(page) == shown[::-1]
    best, worst = shown[-1], shown[0]
    page.check(f'input[name="likert_{best}"][value="7"]')
    page.check(f'input[name="likert_{worst}"][value="2"]')
    page.click(f'.rank-card[data-cid="{best}"] details.flags summary')  # flags are folded
    page.click(f'.rank-card[data-cid="{worst}"] details.flags summary')
    page.check(f'input[name="flags_{best}"][value="satisfies_constraint"]')
    page.check(f'input[name="flags_{worst}"][value="hallucination"]')
    page.check(f'input[name="flags_{worst}"][value="fails_to_follow"]')
    page.screenshot(path=str(artifacts_dir / "ranking-mouse.png"), full_page=True)
    page.click("#submit-task")
    page.wait_for_selector("#saved-notice")
    ranking, entries = _ranking_of(mouse_task)
    assert ranking.display_order == shown and ranking.labeler_id == labeler.id
    assert ranking.time_spent_ms is not None
    expected: dict[int, tuple[int, int | None, list[str]]] = {
        cid: (5 - i, None, []) for i, cid in enumerate(shown)
    }
    expected[best] = (1, 7, ["satisfies_constraint"])
    expected[worst] = (5, 2, ["fails_to_follow", "hallucination"])
    assert entries == expected

    # ranking 2, keyboard only (Tab, arrows, Home, T, F, Space, Enter), with a tie
    page.goto(f"{live_server}/labeler/next?kind=ranking")
    assert page.url.endswith(f"/labeler/tasks/{keyboard_task}")
    s0, s1, s2, s3, s4 = _shown_order(page)
    _tab_to(page, f'.rank-card[data-cid="{s0}"]')
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")  # s1 s2 s0 s3 s4
    page.keyboard.press("t")  # s0 ties with s2
    _tab_to(page, f'.rank-card[data-cid="{s3}"]')
    page.keyboard.press("Home")  # s3 s1 (s2 = s0) s4
    assert "rank 1" in page.inner_text("#rank-status")
    _tab_to(page, f'input[name="likert_{s3}"]')
    for _ in range(4):
        page.keyboard.press("ArrowRight")  # 1 -> 5
    page.keyboard.press("f")  # opens the card's flags at the first one
    _tab_to(page, f'input[name="flags_{s3}"][value="hallucination"]')
    page.keyboard.press("Space")
    _tab_to(page, f'input[name="likert_{s1}"]')
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")  # 1 -> 3
    assert _shown_order(page) == [s3, s1, s2, s0, s4]
    assert page.is_visible(f'.rank-card[data-cid="{s0}"] [data-tie-note]')
    page.screenshot(path=str(artifacts_dir / "ranking-keyboard-tie.png"), full_page=True)
    _tab_to(page, "#submit-task")
    page.keyboard.press("Enter")
    page.wait_for_selector("#saved-notice")
    _, entries = _ranking_of(keyboard_task)
    assert entries == {
        s3: (1, 5, ["hallucination"]),
        s1: (2, 3, []),
        s2: (3, None, []),
        s0: (3, None, []),
        s4: (4, None, []),
    }
    assert page.dialogs == []


def test_reload_and_validation_errors_keep_the_labelers_work(
    live_server, browser_page, make_user, artifacts_dir
) -> None:
    page = browser_page
    make_prompt("Summarise the water cycle.")
    number_prompt = make_prompt("Pick a number.", split="test")
    task_id, _ = make_ranking_task(number_prompt, k=4)
    log_in(page, live_server, make_user("labeler"))

    page.goto(f"{live_server}/labeler/next?kind=demonstration")
    draft = "Water evaporates, condenses into clouds,\nand falls again as rain."
    page.fill("#demo-text", draft)
    page.wait_for_function(
        "() => document.querySelector('[data-draft-status]').textContent.includes('saved')"
    )
    page.reload()
    assert page.input_value("#demo-text") == draft  # an accidental reload loses nothing
    page.click("text=Skip this task")
    page.click("#skip-task")  # no reason given
    page.wait_for_selector("#skip-error")
    assert "say why you skip" in page.inner_text("#skip-error")
    assert page.input_value("#demo-text") == draft

    page.goto(f"{live_server}/labeler/next?kind=ranking")
    assert page.url.endswith(f"/labeler/tasks/{task_id}")
    s0, s1, s2, s3 = _shown_order(page)
    page.click(f'.rank-card[data-cid="{s2}"] [data-move="up"]')
    page.click(f'.rank-card[data-cid="{s2}"] [data-move="up"]')
    page.click(f'.rank-card[data-cid="{s1}"] [data-tie]')  # s2 s0 s1 s3, s1 tied with s0 above it
    page.click(f'.rank-card[data-cid="{s1}"] .rank-pos')  # a click on the header is no drag
    assert page.is_visible(f'.rank-card[data-cid="{s1}"] [data-tie-note]')
    page.check(f'input[name="likert_{s3}"][value="4"]')
    page.click(f'.rank-card[data-cid="{s0}"] details.flags summary')
    page.check(f'input[name="flags_{s0}"][value="expresses_moral_judgment"]')
    # the prompt's use case saves on its own (htmx), without submitting or touching the task
    assert page.is_hidden(".use-case-save")  # saves on change; the button is for no-JS
    page.select_option("#use-case-select", "Open QA")
    page.wait_for_selector('[data-testid="use-case-saved"]')
    assert "Saved: Open QA." in page.inner_text("#use-case-status")
    use_case = select(Prompt.use_case).where(Prompt.id == number_prompt)
    assert _read(lambda s: s.scalar(use_case)) == "Open QA"
    page.evaluate(
        """() => { const sel = document.querySelector('#use-case-select');
        sel.add(new Option('Nope', 'Nope')); sel.value = 'Nope';
        sel.dispatchEvent(new Event('change', {bubbles: true})); }"""
    )
    page.wait_for_selector('[data-testid="use-case-error"]')  # the 422, shown inline
    assert "unknown use case" in page.inner_text("#use-case-status")
    assert _read(lambda s: s.scalar(use_case)) == "Open QA"
    assert page.url.endswith(f"/labeler/tasks/{task_id}") and _shown_order(page) == [s2, s0, s1, s3]
    page.click("text=Skip this task")
    page.click("#skip-task")
    page.wait_for_selector("#skip-error")
    assert _shown_order(page) == [s2, s0, s1, s3]
    assert page.is_visible(f'.rank-card[data-cid="{s1}"] [data-tie-note]')
    assert page.is_checked(f'input[name="likert_{s3}"][value="4"]')
    assert page.is_checked(f'input[name="flags_{s0}"][value="expresses_moral_judgment"]')
    page.screenshot(path=str(artifacts_dir / "ranking-error-kept.png"), full_page=True)
    # and the work is still there after a reload of the task page
    page.goto(f"{live_server}/labeler/tasks/{task_id}")
    assert _shown_order(page) == [s2, s0, s1, s3]
    assert page.is_checked(f'input[name="likert_{s3}"][value="4"]')
    page.click("text=Skip this task")
    page.fill("#skip-reason", "I cannot judge numbers.")
    page.click("#skip-task")
    page.wait_for_selector("#saved-notice")
    assert _read(lambda s: s.scalar(select(Ranking))) is None


def test_completion_payloads_render_inert(live_server, browser_page, make_user) -> None:
    page = browser_page
    script = "<script>window.__xss = 'script'; alert('script')</script>"
    handler = "<img src=x onerror=\"window.__xss = 'onerror'; alert('onerror')\">"
    svg = '<svg onload="window.__xss = \'svg\'"></svg> <a href="javascript:alert(3)">link</a>'
    task_id, _ = make_ranking_task(
        make_prompt(f"Repeat this: {script}", split="test"),
        [script, handler, svg, f"```\n{script}\n```"],
    )
    log_in(page, live_server, make_user("labeler"))
    page.goto(f"{live_server}/labeler/next?kind=ranking")
    assert page.url.endswith(f"/labeler/tasks/{task_id}")
    page.wait_for_timeout(300)  # give any injected handler the chance to run
    assert page.evaluate("window.__xss") is None
    assert page.dialogs == []
    assert (
        page.locator(".rank-card img, .rank-card svg, .rank-card a[href^='javascript']").count()
        == 0
    )
    texts = page.locator(".completion-text").all_inner_texts()
    assert script in texts and handler in texts  # shown as text, verbatim
    html = page.content()
    assert "&lt;script&gt;window.__xss" in html and "&lt;img src=x onerror=" in html
