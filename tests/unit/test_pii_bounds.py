"""PII scanning is bounded in time whatever the text, runs off the request thread, and covers
everything a labeler or an export can see (every split by default, metadata, completions)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select

from app.models import Prompt
from app.services.curation.splits import hash_split
from tests.unit.test_intake_api import RATIOS, ingest, user_in

# 20,000 characters that stalled the old scanner (10,000 "!" took 22 s in one request)
ADVERSARIAL = {
    name: (pattern * 20_000)[:20_000]
    for name, pattern in {
        "exclamations": "!",
        "colons after a scheme": "a://::::",
        "dashed digits": "1-",
        "spaced digits": "1 2 ",
        "dotted digits": "1.",
    }.items()
}


def test_long_runs_and_window_edges_still_find_pii() -> None:
    from app.services.curation.pii import OVERLAP, WINDOW, PiiFilter

    pii_filter = PiiFilter(ner_model=None)
    # an address inside a 6,000-character run of punctuation
    run = "!" * 3000 + "jane.doe@example.com" + "!" * 3000
    assert pii_filter.scan(run).counts == {"EMAIL_ADDRESS": 1}
    # entities straddling each window edge
    filler = "word " * (WINDOW // 5)
    text = filler[: WINDOW - 10] + " jane.doe@example.com call +1 415 555 0100 " + filler * 2
    scan = pii_filter.scan(text)
    assert scan.counts == {"EMAIL_ADDRESS": 1, "PHONE_NUMBER": 1}
    assert "jane.doe" not in scan.text and "555 0100" not in scan.text
    assert OVERLAP >= 64


def test_a_text_not_scanned_in_time_is_a_failure_with_a_reason() -> None:
    from app.services.curation.pii_pool import ScanFailure, scan_batch

    (result,) = scan_batch([ADVERSARIAL["spaced digits"]], None, deadline_s=0.001)
    assert isinstance(result, ScanFailure) and "did not finish within" in result.reason


def test_a_prompt_whose_scan_times_out_is_rejected_not_stored(api_as, session, monkeypatch) -> None:
    from app.config import get_settings

    monkeypatch.setenv("PREFLOOP_PII_SCAN_DEADLINE_S", "0.0001")
    get_settings.cache_clear()
    api = api_as("researcher")
    [result] = ingest(api, [{"text": ADVERSARIAL["spaced digits"], "user_id": "u1"}])
    assert result["status"] == "rejected" and "PII scan" in result["reason"]
    assert result["prompt_id"] is None
    assert session.scalar(select(func.count()).select_from(Prompt)) == 0


def unbounded_scan_seconds(text: str) -> float:
    """How long the old scanner (one analyzer call over the whole text) takes on ``text``."""
    from app.services.curation.pii import PiiFilter

    pii_filter = PiiFilter(ner_model=None)  # a fresh tokenizer: nothing cached from before
    pii_filter.analyzer.analyze(text="warm up", language="en", entities=pii_filter.entities)
    started = time.monotonic()
    pii_filter.analyzer.analyze(text=text, language="en", entities=pii_filter.entities)
    return time.monotonic() - started


def test_adversarial_prompts_are_answered_fast_and_health_stays_fast(api_as, monkeypatch) -> None:
    """The old scanner is quadratic on a run of "!": 20,000 of them cost 100 times what 2,000
    do (measured here, so a loaded machine slows both sides alike); the new one scans all five
    20,000-character texts in a quarter of that. While an ingest is in its scan, /healthz
    answers: the scan holds no database connection nor SQLite's write lock. That is shown by
    order, not by a clock: the ingest stays in its scan until /healthz has answered."""
    from fastapi.testclient import TestClient

    from app.services import intake
    from app.services.curation.pii_pool import scan_texts

    scan_texts(["start the scanner's processes before timing"])
    old_seconds_for_20k = 100 * unbounded_scan_seconds("!" * 2000)
    api = api_as("researcher")
    health = TestClient(api.app)
    assert health.get("/healthz").status_code == 200
    in_scan, health_answered = threading.Event(), threading.Event()
    scan: dict[str, Any] = {}

    def scan_then_wait_for_health(texts: list[str]) -> Any:
        started = time.monotonic()
        results = scan_texts(texts)
        if texts and not in_scan.is_set():  # the first scan, outside the write transaction
            scan["seconds"] = time.monotonic() - started
            in_scan.set()
            scan["health answered meanwhile"] = health_answered.wait(timeout=30)
        return results

    monkeypatch.setattr(intake, "scan_texts", scan_then_wait_for_health)
    items = [{"text": text, "user_id": f"adv-{i}"} for i, text in enumerate(ADVERSARIAL.values())]
    answer: dict[str, Any] = {}
    sender = threading.Thread(
        target=lambda: answer.update(response=api.post("/api/v1/prompts", json={"prompts": items}))
    )
    sender.start()
    assert in_scan.wait(timeout=120), "the ingest never reached its scan"
    for _ in range(3):
        assert health.get("/healthz").status_code == 200
    health_answered.set()
    sender.join()
    assert scan["health answered meanwhile"], "/healthz waited for the ingest's scan to end"
    response = answer["response"]
    assert response.status_code == 200
    for result in response.json()["results"]:
        # scanned in time, or rejected with the reason: never accepted unscanned
        assert result["status"] == "accepted" or "PII scan" in (result["reason"] or "")
    assert scan["seconds"] < old_seconds_for_20k / 4, (scan["seconds"], old_seconds_for_20k)


def test_every_split_is_scanned_by_default(api_as) -> None:
    # before: only train; a val prompt with an e-mail, a card and a phone number reached a
    # labeler (demonstration tasks are made for train and val) and val exports unredacted
    api = api_as("researcher")
    text = "I am jane@example.com, card 4111 1111 1111 1111, phone +1 415 555 0100"
    for split in ("train", "val", "test"):
        [result] = ingest(api, [{"text": f"{split}: {text}", "user_id": user_in(split)}])
        stored = api.get(f"/api/v1/prompts/{result['prompt_id']}").json()
        assert stored["split"] == split
        assert "jane@example.com" not in stored["text"] and "4111" not in stored["text"]
        assert stored["pii"] == {"EMAIL_ADDRESS": 1, "CREDIT_CARD": 1, "PHONE_NUMBER": 1}


def test_a_labeled_split_that_is_not_scanned_is_refused(monkeypatch) -> None:
    from app.config import Settings

    monkeypatch.setenv("PREFLOOP_PII_SPLITS", "train")
    monkeypatch.setenv("PREFLOOP_DEMONSTRATION_SPLITS", "train,val")
    with pytest.raises(ValidationError, match="labelers would see raw PII"):
        Settings()


def test_metadata_values_are_scanned_too(api_as) -> None:
    api = api_as("researcher")
    metadata = {"contact": "bob@example.com", "nested": [{"phone": "+44 20 7946 0958"}], "n": 3}
    [result] = ingest(api, [{"text": "Plan my week", "user_id": "m1", "metadata": metadata}])
    stored = api.get(f"/api/v1/prompts/{result['prompt_id']}").json()
    assert stored["metadata"] == {
        "contact": "<EMAIL_ADDRESS>",
        "nested": [{"phone": "<PHONE_NUMBER>"}],
        "n": 3,
    }
    assert stored["pii"] == {"EMAIL_ADDRESS": 1, "PHONE_NUMBER": 1}


def test_the_dedup_key_is_computed_after_redaction(api_as) -> None:
    api = api_as("researcher")
    first, second = ingest(
        api,
        [
            {"text": "Email ann@example.com about the quarterly report", "user_id": "d1"},
            {"text": "Email bob@example.org about the quarterly report", "user_id": "d2"},
        ],
    )
    assert (first["status"], second["status"]) == ("accepted", "duplicate")


def test_a_pin_into_a_scanned_split_rescans_prompts_and_completions(api_as, monkeypatch) -> None:
    from app.config import get_settings

    monkeypatch.setenv("PREFLOOP_PII_SPLITS", "train")
    monkeypatch.setenv("PREFLOOP_DEMONSTRATION_SPLITS", "train")
    get_settings.cache_clear()
    api = api_as("researcher")
    user = next(f"p-{n}" for n in range(1000) if hash_split(f"p-{n}", RATIOS) == "test")
    [result] = ingest(api, [{"text": "Write to carol@example.com please", "user_id": user}])
    r = api.post(
        "/api/v1/completions",
        json={
            "prompt_id": result["prompt_id"],
            "completions": [{"text": "Sure, mailing carol@example.com now", "origin": "vendor"}],
        },
    )
    assert r.status_code == 201, r.text
    assert api.put(f"/api/v1/split-pins/{user}", json={"split": "train"}).status_code == 200
    from app.db import get_sessionmaker
    from app.models import Completion

    with get_sessionmaker()() as s:
        texts = list(s.scalars(select(Completion.text)))
        prompt = s.get(Prompt, result["prompt_id"])
        assert prompt is not None and "carol@" not in prompt.text
    assert texts == ["Sure, mailing <EMAIL_ADDRESS> now"]


def test_completions_of_a_scanned_prompt_are_scanned(api_as) -> None:
    api = api_as("researcher")
    [result] = ingest(api, [{"text": "Say hello to my friend", "user_id": "c1"}])
    r = api.post(
        "/api/v1/completions",
        json={
            "prompt_id": result["prompt_id"],
            "completions": [{"text": "Hello! Write to dan@example.com", "origin": "vendor"}],
        },
    )
    assert r.status_code == 201, r.text
    from app.db import get_sessionmaker
    from app.models import Completion

    with get_sessionmaker()() as s:
        assert list(s.scalars(select(Completion.text))) == ["Hello! Write to <EMAIL_ADDRESS>"]


def test_scanner_workers_fork_from_a_server_that_imported_the_scanner() -> None:
    """Each worker process is a fork of one that has imported Presidio and spaCy already, so a
    web process pays that import once, not once per worker."""
    import multiprocessing.forkserver

    from app.services.curation import pii_pool

    assert pii_pool.scan_texts(["mail x@example.com"])[0].found
    preloaded = multiprocessing.forkserver._forkserver._preload_modules  # type: ignore[attr-defined]
    assert pii_pool.__name__ in preloaded


_POOL_OWNER = """
import multiprocessing.forkserver, sys, time
from app.services.curation import pii_pool
assert pii_pool.scan_texts(["mail x@example.com"])[0].found
pids = [*pii_pool._pool._processes, multiprocessing.forkserver._forkserver._forkserver_pid]
print(" ".join(map(str, pids)), flush=True)
time.sleep(600)
"""


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rpartition(b")")[2].split()[0] != b"Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads process states from /proc")
def test_scanner_processes_end_when_their_owner_is_killed(tmp_path) -> None:
    """A server or worker killed outright (SIGKILL, the OOM killer) cannot shut its scanner
    pool down: the scanner processes and their fork server (1.3 GB together) end on their
    own instead of waiting forever on a queue nobody writes to."""
    env = dict(os.environ, PREFLOOP_PII_PROCESSES="2", PREFLOOP_DATA_DIR=str(tmp_path))
    owner = subprocess.Popen(
        [sys.executable, "-c", _POOL_OWNER], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        line = owner.stdout.readline() if owner.stdout else ""
        pids = [int(pid) for pid in line.split()]
        assert len(pids) >= 2 and all(_running(pid) for pid in pids), line
    finally:
        owner.kill()
        owner.wait()
    deadline = time.monotonic() + 60
    while any(_running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [pid for pid in pids if _running(pid)]
    for pid in left:  # not to leave them behind on this machine when the test fails
        os.kill(pid, signal.SIGKILL)
    assert not left, "scanner processes outlived their owner"
