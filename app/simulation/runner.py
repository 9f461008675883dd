"""Simulated labelers working through the public REST API, as people would.

Each labeler holds its own client (an ``httpx.Client`` with a base URL, or a FastAPI
``TestClient`` in tests) carrying its bearer token, and repeats: ``GET /api/v1/tasks/next``
for each wanted kind in turn, fill the task (its `Behaviour`), ``POST
/api/v1/tasks/{id}/submission``. Labelers take turns one task at a time (or act at once with
``concurrency`` > 1) until none of them is offered a task, ``max_tasks`` submissions were made,
or, with ``wait_s``, nothing new arrived for that long.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from app.simulation.behaviours import Behaviour, PreferenceError, PreferenceFollowing
from app.simulation.preferences import Preference

KINDS = ("ranking", "evaluation", "demonstration")
# a labeler whose submissions keep meeting 409 (holds expiring under them) stops
MAX_CONFLICTS_IN_A_ROW = 20
POLL_S = 0.5
CONFLICT = "conflict"


class SimulationError(Exception):
    """The run cannot go on; ``exit_code`` 2 for bad input (a token the server rejects, a
    preference function that fails), 1 for a server that fails or cannot be reached."""

    exit_code = 1


class UsageError(SimulationError):
    exit_code = 2


@dataclass
class SimulatedLabeler:
    client: Any
    behaviour: Behaviour
    rng: random.Random = field(default_factory=random.Random)
    name: str = ""
    done: Counter[str] = field(default_factory=Counter)
    conflicts: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    _conflicts_in_a_row: int = 0

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            response = getattr(self.client, method)(url, **kwargs)
        except Exception as exc:  # httpx.TransportError and friends: the server is unreachable
            raise SimulationError(
                f"{method.upper()} {url} failed: {type(exc).__name__}: {exc}"
            ) from exc
        self.latencies_ms.append((time.perf_counter() - start) * 1000)
        if response.status_code in (401, 403):
            raise UsageError(
                f"labeler {self.name or '?'}: {method.upper()} {url} was refused "
                f"({response.status_code}: {_detail(response)}); is the token valid and its "
                "user a labeler?"
            )
        if response.status_code >= 500:
            raise SimulationError(
                f"{method.upper()} {url}: server error {response.status_code}: {_detail(response)}"
            )
        return response

    def identify(self) -> None:
        """Ask the server who this token belongs to (fails early on a bad token)."""
        response = self.request("get", "/api/v1/me")
        if response.status_code != 200:
            raise SimulationError(f"GET /api/v1/me: {response.status_code}: {_detail(response)}")
        self.name = response.json()["username"]

    def step(self, kinds: Sequence[str]) -> str | None:
        """Take and submit one task of the first of ``kinds`` that has one; the kind done,
        `CONFLICT` when the hold expired before the submission, or None when nothing is
        waiting for this labeler."""
        for kind in kinds:
            response = self.request("get", "/api/v1/tasks/next", params={"kind": kind})
            if response.status_code == 204:
                continue
            if response.status_code != 200:
                raise SimulationError(
                    f"GET /api/v1/tasks/next?kind={kind}: {response.status_code}: "
                    f"{_detail(response)}"
                )
            task = response.json()
            try:
                body = self.behaviour.submission(task, self.rng)
            except PreferenceError as exc:
                raise UsageError(str(exc)) from exc
            url = f"/api/v1/tasks/{task['task_id']}/submission"
            response = self.request("post", url, json=body)
            if response.status_code == 409:  # the hold expired meanwhile: take a task again
                self.conflicts += 1
                self._conflicts_in_a_row += 1
                if self._conflicts_in_a_row >= MAX_CONFLICTS_IN_A_ROW:
                    raise SimulationError(f"POST {url}: 409 {_detail(response)} (repeatedly)")
                return CONFLICT
            if response.status_code == 422:
                error = response.json() if _is_json(response) else {}
                message = f"POST {url} was rejected: {_detail(response)}"
                if str(error.get("field", "")).startswith("ratings"):
                    raise UsageError(message + " (check the flags your preference returns)")
                raise SimulationError(message)
            if response.status_code != 200:
                raise SimulationError(f"POST {url}: {response.status_code}: {_detail(response)}")
            self._conflicts_in_a_row = 0
            self.done[task["kind"]] += 1
            return str(task["kind"])
        return None


def _is_json(response: Any) -> bool:
    return "json" in response.headers.get("content-type", "")


def _detail(response: Any) -> str:
    if _is_json(response):
        body = response.json()
        if isinstance(body, dict) and "detail" in body:
            return str(body["detail"])
        return str(body)
    return str(response.text)[:200]


@dataclass
class Summary:
    labelers: list[dict[str, Any]]
    submitted: int
    elapsed_s: float
    latency_ms: dict[str, float]
    stopped: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "submitted": self.submitted,
            "stopped": self.stopped,
            "elapsed_s": round(self.elapsed_s, 3),
            "latency_ms": self.latency_ms,
            "labelers": self.labelers,
        }


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


class Simulation:
    def __init__(
        self,
        labelers: Sequence[SimulatedLabeler],
        kinds: Sequence[str] = KINDS,
        max_tasks: int | None = None,
        wait_s: float = 0.0,
        concurrency: int = 1,
    ) -> None:
        if not labelers:
            raise UsageError("no labelers: give at least one token")
        unknown = [k for k in kinds if k not in KINDS]
        if unknown or not kinds:
            raise UsageError(f"unknown kind(s) {unknown}; choose from {', '.join(KINDS)}")
        if max_tasks is not None and max_tasks < 0:
            raise UsageError("max_tasks must not be negative")
        self.labelers = list(labelers)
        self.kinds = list(kinds)
        self.max_tasks = max_tasks
        self.wait_s = wait_s
        self.concurrency = max(1, concurrency)
        self.submitted = 0
        self._lock = threading.Lock()

    def _reserve(self) -> bool:
        """Claim one submission of the ``max_tasks`` budget."""
        with self._lock:
            if self.max_tasks is not None and self.submitted >= self.max_tasks:
                return False
            self.submitted += 1
            return True

    def _release(self) -> None:
        with self._lock:
            self.submitted -= 1

    def _turn(self, labeler: SimulatedLabeler) -> bool | None:
        """One task for ``labeler``: True done, False nothing waiting, None budget spent."""
        if not self._reserve():
            return None
        result = labeler.step(self.kinds)
        if result is None or result == CONFLICT:
            self._release()
        return result is not None

    def run(self) -> Summary:
        start = time.monotonic()
        for labeler in self.labelers:
            if not labeler.name:
                labeler.identify()
        stopped = "drained"
        last_work = time.monotonic()
        while True:
            outcome = self._round_robin() if self.concurrency == 1 else self._concurrent()
            if outcome == "budget":
                stopped = "max_tasks"
                break
            if outcome == "worked":
                last_work = time.monotonic()
            if time.monotonic() - last_work >= self.wait_s:
                break
            time.sleep(POLL_S)
        return self._summary(time.monotonic() - start, stopped)

    def _round_robin(self) -> str:
        """Labelers take turns until none is offered a task: "worked", "idle" or "budget"."""
        active = list(self.labelers)
        worked = False
        while active:
            for labeler in list(active):
                result = self._turn(labeler)
                if result is None:
                    return "budget"
                if result:
                    worked = True
                else:
                    active.remove(labeler)
        return "worked" if worked else "idle"

    def _concurrent(self) -> str:
        results: list[str] = []

        def work(labeler: SimulatedLabeler) -> None:
            done = False
            while True:
                result = self._turn(labeler)
                if result is None:
                    results.append("budget")
                    return
                if not result:
                    results.append("worked" if done else "idle")
                    return
                done = True

        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            for future in [pool.submit(work, labeler) for labeler in self.labelers]:
                future.result()
        if "budget" in results:
            return "budget"
        return "worked" if "worked" in results else "idle"

    def _summary(self, elapsed: float, stopped: str) -> Summary:
        latencies = [ms for labeler in self.labelers for ms in labeler.latencies_ms]
        return Summary(
            labelers=[
                {
                    "name": labeler.name,
                    "behaviour": labeler.behaviour.name,
                    **{kind: labeler.done.get(kind, 0) for kind in KINDS},
                    "conflicts": labeler.conflicts,
                }
                for labeler in self.labelers
            ],
            submitted=sum(sum(labeler.done.values()) for labeler in self.labelers),
            elapsed_s=elapsed,
            latency_ms={
                "requests": float(len(latencies)),
                "p50": _percentile(latencies, 0.5),
                "p95": _percentile(latencies, 0.95),
                "max": _percentile(latencies, 1.0),
            },
            stopped=stopped,
        )


def simulate(
    labelers: Sequence[Any],
    preference: Preference | None = None,
    *,
    agreement: float = 0.73,
    kinds: Sequence[str] = KINDS,
    max_tasks: int | None = None,
    seed: int | None = 0,
    wait_s: float = 0.0,
    concurrency: int = 1,
) -> Summary:
    """Run simulated labelers; each item of ``labelers`` is a ready `SimulatedLabeler` or a
    client carrying a labeler's token (it then follows ``preference`` with noise tuned to
    ``agreement``). ``seed`` makes the labelers' choices repeatable (the server's display
    order is its own).

        simulate([client_a, client_b], keyword, agreement=0.73, kinds=["evaluation"])
    """
    built = []
    for i, item in enumerate(labelers):
        if isinstance(item, SimulatedLabeler):
            built.append(item)
            continue
        if preference is None:
            raise UsageError("give a preference function for labelers given as clients")
        rng = random.Random(None if seed is None else f"{seed}:{i}")
        built.append(SimulatedLabeler(item, PreferenceFollowing(preference, agreement), rng))
    return Simulation(built, kinds, max_tasks, wait_s, concurrency).run()
