"""Adversarial prompts against the PII scanner: seconds per 20,000-character text through the
ingest API, and /healthz latency meanwhile, beside the old unbounded scan of a 2,000-character
run (quadratic: 20,000 characters cost about 100 times as much).

    .venv/bin/python benchmarks/pii_adversarial.py

Prints one line per pattern and the ratio against the old scanner; never part of the tests.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PATTERNS = {"!": "!", "a://::::": "a://::::", "1-": "1-", "1 2 ": "1 2 ", "1.": "1."}


def main() -> None:
    # the data directory (its SQLite database), removed when done
    data_dir = tempfile.mkdtemp(prefix="pii-adversarial-")
    os.environ.update(
        PREFLOOP_DATA_DIR=data_dir,
        PREFLOOP_SECRET_KEY="bench-secret-key-not-for-production-0123",
    )
    try:
        run()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def run() -> None:
    from fastapi.testclient import TestClient

    from app.db import get_sessionmaker
    from app.main import create_app
    from app.migrate import upgrade_to_head
    from app.services.accounts import create_token, create_user
    from app.services.curation.pii import PiiFilter
    from app.services.curation.pii_pool import pool_size, warm_pool

    upgrade_to_head()
    with get_sessionmaker()() as s:
        create_user(s, "bench", "bench password", "researcher")
        _, token = create_token(s, "bench")
        s.commit()
    warm_pool()
    old = PiiFilter(ner_model=None)
    old.analyzer.analyze(text="warm up", language="en", entities=old.entities)
    started = time.monotonic()
    old.analyzer.analyze(text="!" * 2000, language="en", entities=old.entities)
    old_2k = time.monotonic() - started
    print(f"old scanner, 2,000 '!': {old_2k:.2f} s (20,000: about {100 * old_2k:.0f} s)")
    print(f"scanner processes: {pool_size()}")
    app = create_app()
    api, health = TestClient(app), TestClient(app)
    api.headers["Authorization"] = f"Bearer {token}"
    for n, (name, pattern) in enumerate(PATTERNS.items()):
        text = (pattern * 20_000)[:20_000]
        answer: dict[str, Any] = {}

        def send(text: str = text, n: int = n, answer: dict[str, Any] = answer) -> None:
            t0 = time.monotonic()
            r = api.post("/api/v1/prompts", json={"prompts": [{"text": text, "user_id": f"b{n}"}]})
            answer["seconds"] = time.monotonic() - t0
            answer["status"] = r.json()["results"][0]["status"]

        sender = threading.Thread(target=send)
        sender.start()
        latencies = []
        while sender.is_alive():
            t0 = time.monotonic()
            health.get("/healthz")
            latencies.append(time.monotonic() - t0)
            time.sleep(0.02)
        sender.join()
        seconds = float(answer["seconds"])
        print(
            f"{name!r:12} {seconds:6.2f} s ({answer['status']}), "
            f"ratio to the old 20,000 '!': {seconds / (100 * old_2k):.3f}; "
            f"/healthz median {1000 * statistics.median(latencies):.0f} ms, "
            f"max {1000 * max(latencies):.0f} ms over {len(latencies)} calls"
        )


if __name__ == "__main__":
    main()
