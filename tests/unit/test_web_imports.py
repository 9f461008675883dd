"""A web process does not load the PII scanner's libraries: Presidio and spaCy (and torch and
transformers through them) cost seconds of start-up and hundreds of MB per web process, and
run in the scanner processes instead (app/services/curation/pii_pool.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = ["presidio_analyzer", "presidio_anonymizer", "spacy", "torch", "transformers"]


def test_the_web_app_imports_without_the_scanner_libraries() -> None:
    code = (
        "import json, sys; import app.asgi, app.main; "
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_the_light_scan_types_are_the_filters_own() -> None:
    """The scanner processes answer with the very class the web process reads."""
    from app.services.curation.pii import get_pii_filter
    from app.services.curation.pii_scan import PiiScan

    scan = get_pii_filter().scan("Call me at 212-555-0198 tomorrow.")
    assert type(scan) is PiiScan and scan.found
