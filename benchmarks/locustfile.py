"""Load test of prefloop over HTTP with Locust: labelers, researchers and ingest clients.

Run by benchmarks/labeling_http.py (which seeds a database, starts the servers and prints
ratios), or by hand against a running server:

    PREFLOOP_LOCUST_TOKENS=tokens.json locust -f benchmarks/locustfile.py --headless \
        -u 100 -r 50 -t 60s --host http://127.0.0.1:8000 LabelerUser

``tokens.json``: {"labelers": [bearer tokens], "researchers": [{"username", "password",
"token"}], "ingest": [bearer tokens]}; each simulated user takes the next one in turn.
``ReferenceLabeler`` plays the same loop against benchmarks/reference_app.py.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import threading

from locust import HttpUser, between, constant, task

from benchmarks.labeling_http import NOTHING_WAITING
from benchmarks.texts import realistic_text

_lock = threading.Lock()
_accounts: dict[str, itertools.cycle] = {}


def _next_account(kind: str):
    with _lock:
        if not _accounts:
            with open(os.environ["PREFLOOP_LOCUST_TOKENS"]) as f:
                data = json.load(f)
            for key, values in data.items():
                _accounts[key] = itertools.cycle(values)
        return next(_accounts[kind])


def _ranking_of(task: dict) -> dict:
    shown = [c["completion_id"] for c in task["completions"]]
    random.shuffle(shown)
    return {"ranking": [[cid] for cid in shown], "confirmed_order": True}


class LabelerUser(HttpUser):
    """Loops GET /api/v1/tasks/next?kind=ranking -> POST /api/v1/tasks/{id}/submission."""

    wait_time = constant(0)

    def on_start(self) -> None:
        self.client.headers["Authorization"] = f"Bearer {_next_account('labelers')}"

    @task(10)
    def label(self) -> None:
        with self.client.get(
            "/api/v1/tasks/next", params={"kind": "ranking"}, name="next", catch_response=True
        ) as r:
            if r.status_code == 204:
                r.failure(NOTHING_WAITING)
            if r.status_code != 200:
                return
        task_ = r.json()
        self.client.post(
            f"/api/v1/tasks/{task_['task_id']}/submission", json=_ranking_of(task_), name="submit"
        )


class BrowsingLabeler(LabelerUser):
    """A labeler who also opens their home page now and then (one visit per ten tasks), and
    pauses ``PREFLOOP_LOCUST_THINK_S`` seconds between actions (0 by default: back to back)."""

    wait_time = constant(float(os.environ.get("PREFLOOP_LOCUST_THINK_S", "0")))

    @task(1)
    def home(self) -> None:
        self.client.get("/labeler/summary", name="labeler home")


class ReferenceLabeler(HttpUser):
    """The same loop against the reference app (no authentication, no rules)."""

    wait_time = constant(0)
    _ids = itertools.count(1)

    def on_start(self) -> None:
        self.labeler = next(self._ids)

    @task
    def label(self) -> None:
        with self.client.get(
            "/next", params={"labeler": self.labeler}, name="next", catch_response=True
        ) as r:
            if r.status_code == 204:
                r.failure(NOTHING_WAITING)
            if r.status_code != 200:
                return
        body = r.json()
        ranking = [[i] for i in random.sample(range(5), 5)]
        self.client.post(
            f"/submit/{body['task_id']}",
            params={"labeler": self.labeler},
            json={"ranking": ranking},
            name="submit",
        )


class ResearcherUser(HttpUser):
    """Signs in through the login form and reads the pages researchers watch."""

    fixed_count = 2  # beside any number of labelers
    wait_time = between(1, 3)

    def on_start(self) -> None:
        account = _next_account("researchers")
        page = self.client.get("/login", name="login page")
        match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        self.client.post(
            "/login",
            data={
                "username": account["username"],
                "password": account["password"],
                "csrf_token": match.group(1) if match else "",
            },
            name="login",
        )

    @task(3)
    def admin_home(self) -> None:
        self.client.get("/admin", name="/admin")
        # its panels, as the browser loads them with htmx right after
        self.client.get("/admin/overview", name="/admin/overview")

    @task(2)
    def data_page(self) -> None:
        self.client.get("/admin/data", name="/admin/data")


class IngestUser(HttpUser):
    """Posts batches of 100 realistic prompts to the ingest API."""

    wait_time = constant(0)
    _ids = itertools.count()

    def on_start(self) -> None:
        self.client.headers["Authorization"] = f"Bearer {_next_account('ingest')}"
        self.rng = random.Random(next(self._ids))

    @task
    def ingest(self) -> None:
        batch = [
            {"text": realistic_text(self.rng), "user_id": f"customer-{self.rng.randrange(10**6)}"}
            for _ in range(100)
        ]
        self.client.post("/api/v1/prompts", json={"prompts": batch}, name="ingest 100")
