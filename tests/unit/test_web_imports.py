"""A web process does not load the PII scanner's libraries: Presidio and spaCy (and torch and
transformers through them) cost seconds of start-up and hundreds of MB per web process, and
run in the scanner processes instead (app/services/curation/pii_pool.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

HEAVY = ["presidio_analyzer", "presidio_anonymizer", "spacy", "torch", "transformers"]


def _in_a_web_process(code: str) -> Any:
    """Runs ``code`` after ``import app.asgi`` in a new interpreter (as a server starts) and
    returns the JSON its last line printed."""
    out = subprocess.run(
        [sys.executable, "-c", f"import json, sys; import app.asgi; {code}"],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_web_app_imports_without_the_scanner_libraries() -> None:
    code = f"import app.main; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    assert _in_a_web_process(code) == []


def test_the_light_scan_types_are_the_filters_own() -> None:
    """The scanner processes answer with the very class the web process reads."""
    from app.services.curation.pii import get_pii_filter
    from app.services.curation.pii_scan import PiiScan

    scan = get_pii_filter().scan("Call me at 212-555-0198 tomorrow.")
    assert type(scan) is PiiScan and scan.found


def test_a_web_process_keeps_its_start_up_objects_out_of_full_collections() -> None:
    """A full collection pauses every request of its process while it scans every tracked
    object: 135-190 ms in a web process with the app loaded (issue 14). What is loaded at
    start-up lives as long as the process, so ``app.asgi`` freezes it (``gc.freeze``) and a
    full collection scans only what was made since."""
    frozen, tracked = _in_a_web_process(
        "import gc; print(json.dumps([gc.get_freeze_count(), len(gc.get_objects())]))"
    )
    assert frozen > 100_000  # the modules, the app, the ORM's mappers
    assert tracked < frozen / 20  # what a full collection still scans


def test_a_web_process_compiles_its_templates_before_its_first_request() -> None:
    """Compiling a page on its first request made that request the page's slowest (the labeler
    home's p99 at a million prompts was its first request in each web process)."""
    compiled, pages = _in_a_web_process(
        "from app.web.templating import templates; env = templates.env; "
        "print(json.dumps([len(env.cache), len(env.list_templates(extensions=['html']))]))"
    )
    assert pages > 40 and compiled == pages
