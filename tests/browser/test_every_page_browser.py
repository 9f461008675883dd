"""Every HTML page, with data in it, in Chromium: axe-core finds no serious or critical
violation at 1366x900 or at 390x844, nothing overflows sideways at 390 px, and every control on
a task page is a 44x44 px tap target at 390 px (details opened).

Pages are found from the app's routes, so a new page is checked without being listed here: a
page without a path parameter is opened as is, and a page with one (a job, a user, a prompt
...) must have a URL in ``_object_pages`` or the test fails naming it. The project is seeded
first with what a team's pages show: labeled rankings and demonstrations, gold and screening
tasks, an evaluation, a reward-model, a PPO and a held sample job with metrics, users with
tokens. Labeler task pages are opened for every kind of task (ranking, gold ranking,
demonstration, evaluation, screening), each as the labeler the queue gives it to. Runs once,
on SQLite: pages do not depend on the database backend."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.routing import APIRoute

from tests.browser.conftest import ARTIFACTS, axe_violations, log_in
from tests.labeling_support import make_prompt, make_ranking_task
from tests.quality_support import as_shown, outputs, work, worked

pytestmark = pytest.mark.browser

DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}
SCREENSHOTS = ARTIFACTS / "pages"
# GET routes that are not pages a person opens (redirects, fragments, files)
NOT_PAGES = {
    "/favicon.ico",
    "/docs",  # Swagger UI: tests/browser/test_pages_browser.py renders it offline
    "/openapi.json",
    "/labeler/next",
    "/labeler/summary",
    "/logout",
    "/admin/gold/go",
}


def _get_routes() -> list[APIRoute]:
    from app.main import create_app
    from tests.unit.test_roles import iter_api_routes

    return [
        r
        for r in iter_api_routes(create_app().routes)
        if "GET" in (r.methods or set())
        and not r.include_in_schema
        and r.path not in NOT_PAGES
        and not r.path.endswith(("/live", "/preview", "/summary"))  # htmx fragments
    ]


def _db(fn):
    from app.db import get_sessionmaker

    with get_sessionmaker()() as s:
        result = fn(s)
        s.commit()
        return result


def _job(kind: str, status: str, user_id: int, metrics: dict[str, list[float]]) -> int:
    from app.models import Job, JobMetric

    def add(s):
        job = Job(
            kind=kind,
            params={},
            status=status,
            created_by_id=user_id,
            progress_step=len(next(iter(metrics.values()))),
            progress_total=len(next(iter(metrics.values()))),
            log_tail="step 1\nstep 2\n",
        )
        s.add(job)
        s.flush()
        s.add_all(
            JobMetric(job_id=job.id, step=step, name=name, value=value)
            for name, values in metrics.items()
            for step, value in enumerate(values, start=1)
        )
        return job.id

    return _db(add)


def rm_and_ppo_jobs(user_id: int) -> tuple[int, int]:
    """A finished reward-model job and a running PPO job with the metrics their runners report
    (the constants and timings too)."""
    rm = _job(
        "rm",
        "succeeded",
        user_id,
        {
            "loss": [0.69, 0.66, 0.61, 0.58, 0.55, 0.54],
            "accuracy": [0.5, 0.56, 0.61, 0.64, 0.66, 0.67],
            "val_accuracy": [0.52, 0.55, 0.58, 0.6, 0.61, 0.61],
            "comparisons": [96.0] * 6,
            "steps": [6.0] * 6,
            "train_seconds": [1.2, 2.3, 3.5, 4.6, 5.8, 7.0],
        },
    )
    ppo = _job(
        "ppo",
        "running",
        user_id,
        {
            "reward": [-0.4, -0.3, -0.1, 0.05, 0.2],
            "kl": [0.0, 0.004, 0.011, 0.018, 0.02],
            "entropy": [2.31, 2.3, 2.28, 2.27, 2.25],
            "policy_loss": [0.03, 0.02, 0.025, 0.01, 0.012],
            "value_loss": [0.8, 0.6, 0.5, 0.41, 0.37],
            "time_generation": [0.8, 0.7, 0.75, 0.72, 0.7],
            "time_training": [0.3, 0.31, 0.3, 0.29, 0.3],
            "time_rewards": [0.05, 0.05, 0.06, 0.05, 0.05],
        },
    )
    return rm, ppo


def _seed(make_user, api_as) -> dict[str, Any]:
    """A project with data on every page; returns the users and object ids the pages need."""
    from app.models import LabelerStatus, User
    from app.services.use_cases import ensure_default_use_cases
    from tests.unit.test_sampled_tasks import sample_job_with_tasks

    _db(ensure_default_use_cases)
    admin = make_user("admin")
    researcher = api_as("researcher")
    labeler = api_as("labeler")
    judge = make_user("labeler", held_out=True)
    newcomer = make_user("labeler")

    # a ranking the labeler submitted, its task still open for a second labeler (My work: Edit)
    ranked_prompt = make_prompt("Name three rivers of Europe.")
    shared, _ = make_ranking_task(ranked_prompt, k=5, overlap=2)
    assert worked(labeler, as_shown)["task_id"] == shared
    # a demonstration by the labeler, more prompts in every split, one with a long text
    make_prompt("Explain what a river delta is.")
    assert work(labeler, as_shown, kind="demonstration") is not None
    make_prompt("Write a limerick about a heron. " * 30, split="val")
    make_prompt("Summarise the water cycle for a child.", split="test")
    # a ranking task, a gold ranking and a screening set
    regular, _ = make_ranking_task(make_prompt("Suggest a name for a cat."), k=6)
    prompt_id, ids = outputs(4)
    reference = {"prompt_id": prompt_id, "completion_ids": ids,
                 "reference_ranking": [[i] for i in ids]}  # fmt: skip
    gold = researcher.post("/api/v1/gold-tasks", json=reference)
    screening = researcher.post("/api/v1/gold-tasks", json=reference | {"screening": True})
    demo_prompt, _ = outputs(1)
    screening_demo = researcher.post(
        "/api/v1/gold-demonstrations",
        json={"prompt_id": demo_prompt, "reference_text": "The reference answer."},
    )
    assert {gold.status_code, screening.status_code, screening_demo.status_code} == {201}

    def in_screening(s):
        s.get(User, newcomer.id).labeler_status = LabelerStatus.screening.value

    _db(in_screening)
    # an evaluation of two uploaded systems on two test prompts, judged by held-out labelers
    eval_prompts = [make_prompt(f"Name a sea bird, number {i}.", split="test") for i in (1, 2)]
    body = {
        "name": "sea birds",
        "judges": "held_out",
        "systems": [
            {"name": name, "outputs": [{"prompt_id": p, "text": text} for p in eval_prompts]}
            for name, text in (("plain", "A gull."), ("rich", "A puffin, with its bright beak."))
        ],
    }
    r = researcher.post("/api/v1/evaluations", json=body)
    assert r.status_code == 202, r.text
    evaluation = r.json()["evaluation_id"]
    # jobs: a reward model, a PPO run, a sample job whose tasks wait for release
    rm, ppo = rm_and_ppo_jobs(researcher.user.id)
    sample, _ = sample_job_with_tasks(researcher.user.id)
    return {
        "admin": admin,
        "labeler": labeler.user,
        "judge": judge,
        "newcomer": newcomer,
        "shared": shared,
        "ranked_prompt": ranked_prompt,
        "regular": regular,
        "gold": gold.json()["task_id"],
        "screening": {screening.json()["task_id"], screening_demo.json()["task_id"]},
        "prompt": eval_prompts[0],
        "evaluation": evaluation,
        "jobs": [rm, ppo, sample],
    }


def _task_pages(
    page: Any, base: str, kind: str | None, problems: dict[str, list[str]], limit: int = 6
) -> list[str]:
    """Checks the task pages the queue gives the signed-in labeler for ``kind``, one after the
    other (each is checked while held, then skipped so the next comes); returns their paths."""
    seen: list[str] = []
    for _ in range(limit):
        page.set_viewport_size(DESKTOP)
        page.goto(f"{base}/labeler/next" + (f"?kind={kind}" if kind else ""))
        if "/labeler/tasks/" not in page.url:
            return seen
        path = page.url.removeprefix(base)
        seen.append(path)
        _check(page, base, [path], problems)
        page.goto(f"{base}{path}")  # as it opens (the check unfolded everything)
        page.click("text=Skip this task")
        page.fill("#skip-reason", "seen by the every-page test")
        page.click("#skip-task")
        page.wait_for_selector("#saved-notice")
    return seen


# every control a labeler touches on a task page, at least 44x44 px on a phone
SMALL_TARGETS = """() => [...document.querySelectorAll(
    '.task-main button, .task-main summary, .task-main label.seg, .task-main label.choice,'
    + ' .task-main select, .task-main a, .task-main input:not([type=hidden])')]
  .filter(el => el.offsetParent && !el.closest('.visually-hidden'))
  .filter(el => !(el.tagName === 'INPUT' && el.closest('label.seg, label.choice')))
  .map(el => [el.tagName + ' ' + el.textContent.trim().slice(0, 30), el.getBoundingClientRect()])
  .filter(([, r]) => r.width < 44 || r.height < 44)
  .map(([name, r]) => `${name}: ${Math.round(r.width)}x${Math.round(r.height)}`)"""


def _check(page: Any, base: str, paths: list[str], problems: dict[str, list[str]]) -> None:
    """axe-core at both sizes, the width at 390 px, tap targets on task pages; a screenshot of
    each page at each size in test-artifacts/pages/ (to look at)."""
    for path in paths:
        for viewport in (DESKTOP, PHONE):
            page.set_viewport_size(viewport)
            response = page.goto(f"{base}{path}")
            assert response is not None
            expected = 404 if path == "/no/such/page" else 200
            assert response.status == expected, (path, response.status)
            found = axe_violations(page)
            width = page.evaluate("document.documentElement.scrollWidth")
            if width > viewport["width"]:
                found.append(f"{width} px wide at {viewport['width']}")
            if viewport is PHONE and path.startswith("/labeler/"):
                page.eval_on_selector_all("details", "els => els.forEach(d => d.open = true)")
                found.extend(f"tap target {t}" for t in page.evaluate(SMALL_TARGETS))
            if found:
                problems.setdefault(path, []).extend(f"@{viewport['width']}: {f}" for f in found)
            name = path.strip("/").replace("/", "-").replace("?", "-").replace("=", "-") or "root"
            page.screenshot(path=str(SCREENSHOTS / f"{name}-{viewport['width']}.png"),
                            full_page=True)  # fmt: skip


def test_every_page_with_data_passes_axe_and_fits_a_phone(
    app_env, live_server, _browser, make_user, api_as, monkeypatch
) -> None:
    from app.config import get_settings

    if not app_env.startswith("sqlite"):
        pytest.skip("pages do not depend on the database: run once, on SQLite")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("PREFLOOP_GOLD_RATE", "1")  # the gold task comes first, not by chance
    get_settings.cache_clear()
    data = _seed(make_user, api_as)
    routes = _get_routes()
    plain = sorted(r.path for r in routes if "{" not in r.path and not _needs_query(r))
    assert {"/labeler", "/admin", "/admin/users", "/admin/browse", "/labeler/work"} <= set(plain)
    objects = {
        "/admin/jobs/{job_id}": [f"/admin/jobs/{j}" for j in data["jobs"]],
        "/admin/evaluations/{evaluation_id}": [f"/admin/evaluations/{data['evaluation']}"],
        "/admin/browse/prompts/{prompt_id}": [
            f"/admin/browse/prompts/{data['prompt']}",
            "/admin/browse/prompts/1",
        ],  # fmt: skip
        "/admin/browse/{view}": [
            f"/admin/browse/{v}" for v in ("demonstrations", "rankings", "tasks")
        ],  # fmt: skip
        "/admin/labelers/{labeler_id}": [f"/admin/labelers/{data['labeler'].id}"],
        "/admin/gold/tasks/{task_id}": [f"/admin/gold/tasks/{data['gold']}"],
        "/admin/users/{user_id}": [f"/admin/users/{data['labeler'].id}"],
        "/labeler/work/{task_id}": [f"/labeler/work/{data['shared']}"],  # as the labeler
        "/labeler/tasks/{task_id}": [],  # every kind, as the labeler the queue gives it to
    }
    missing = {r.path for r in routes if "{" in r.path} - set(objects)
    assert not missing, f"pages with a path parameter the test does not open: {missing}"

    problems: dict[str, list[str]] = {}
    task_pages: dict[str, list[str]] = {}
    browser = _browser
    for who, kinds in (
        ("labeler", ("ranking", "demonstration")),
        ("judge", ("evaluation",)),
        ("newcomer", (None,)),
    ):
        context = browser.new_context(viewport=DESKTOP)
        page = context.new_page()
        page.set_default_timeout(20_000)
        log_in(page, live_server, data[who])
        if who == "labeler":
            _check(page, live_server, ["/labeler", "/labeler/work",
                                       "/labeler/work?when=all",
                                       f"/labeler/work/{data['shared']}"], problems)  # fmt: skip
        for kind in kinds:
            task_pages[f"{who}:{kind}"] = _task_pages(page, live_server, kind, problems)
        context.close()
    shown = {p for pages in task_pages.values() for p in pages}
    want = {data["regular"], data["gold"], *data["screening"]}
    assert {f"/labeler/tasks/{t}" for t in want} <= shown, (task_pages, data)
    assert task_pages["judge:evaluation"] and task_pages["labeler:demonstration"]

    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    page.set_default_timeout(20_000)
    log_in(page, live_server, data["admin"])
    admin_paths = [p for p in plain if p not in ("/labeler/work",)] + [
        url for key, urls in objects.items() if not key.startswith("/labeler/") for url in urls
    ]
    _check(page, live_server, admin_paths + ["/no/such/page"], problems)
    context.close()
    labeler_pages = {p for pages in task_pages.values() for p in pages}
    print(
        f"axe-core at 1366 and 390 px: {len(admin_paths) + 1} admin/system pages, "
        f"{len(labeler_pages) + 4} labeler pages ({len(labeler_pages)} task pages: {task_pages})"
    )
    assert problems == {}, "\n".join(f"{p} {v}" for p, vs in problems.items() for v in vs)


def _needs_query(route: APIRoute) -> bool:
    return any(q.field_info.is_required() for q in route.dependant.query_params)
