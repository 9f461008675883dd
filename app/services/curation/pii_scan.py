"""What a PII scan answers, and which NER model a scan uses: the light half of the PII filter.

The web process imports only this module; Presidio and spaCy (and, through them, torch and
transformers: seconds of start-up and hundreds of MB per web process) are imported by the
scanner processes that run ``pii.PiiFilter`` (see ``pii_pool``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import metadata

from app.config import get_settings

NER_MODELS = ["en_core_web_lg", "en_core_web_md", "en_core_web_sm", "en_core_web_trf"]


class ScanTimeout(Exception):
    """The text was not scanned within its deadline (adversarial or pathological input)."""


@dataclass
class PiiScan:
    """The outcome of one scan: text with typed placeholders and entity type -> count."""

    text: str
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def found(self) -> bool:
        return bool(self.counts)


def _installed(package: str) -> bool:
    # what spacy.util.is_package asks, without importing spaCy
    try:
        metadata.distribution(package)
    except metadata.PackageNotFoundError:
        return False
    return True


def installed_ner_model() -> str | None:
    """The spaCy NER model to use for person names, or None when none is installed."""
    configured = get_settings().pii_ner_model
    if configured == "none":
        return None
    candidates = [configured] if configured else NER_MODELS
    return next((name for name in candidates if _installed(name)), None)
