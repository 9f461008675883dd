"""De-duplication by long common prefix, through an indexed key.

Two prompts are duplicates when their normalised texts share a prefix of at least N characters
(``dedup_prefix_chars``). That holds exactly when their first N normalised characters are equal,
so the key is a hash of those N characters and the check is one primary-key lookup in
``dedup_keys``, however many prompts there are. Inserting the key is the atomic claim: the first
prompt to insert it owns it, every later one is its duplicate.

Prompts shorter than N characters cannot share an N-character prefix with anything, so they are
duplicates only of a prompt with the same whole normalised text (their key hashes the whole text;
a short text never equals an N-character prefix, so short and long keys never collide).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.db import is_postgres
from app.models import DedupKey

_SPACE = re.compile(r"\s+")


def normalise_text(text: str) -> str:
    """Compatibility-normalised, case-folded, whitespace collapsed to single spaces, trimmed."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def dedup_key(text: str, prefix_chars: int) -> str:
    """The 64-hex-digit key of ``text``: sha256 of its first ``prefix_chars`` normalised chars."""
    prefix = normalise_text(text)[:prefix_chars]
    return hashlib.sha256(prefix.encode("utf-8")).hexdigest()


def key_owners(session: Session, keys: set[str]) -> dict[str, int]:
    """Key -> id of the prompt that owns it, for the keys already claimed."""
    if not keys:
        return {}
    rows = session.execute(select(DedupKey.key, DedupKey.prompt_id).where(DedupKey.key.in_(keys)))
    return {key: prompt_id for key, prompt_id in rows}


def claim_keys(session: Session, claims: dict[str, int]) -> set[str]:
    """Insert key -> prompt id rows; returns the keys this call won.

    A key claimed meanwhile by a concurrent transaction is skipped (ON CONFLICT DO NOTHING), so
    its prompt is a duplicate. Keys go in sorted order so concurrent claimers never deadlock.
    """
    if not claims:
        return set()
    dialect = postgresql if is_postgres(session) else sqlite
    rows = [{"key": key, "prompt_id": claims[key]} for key in sorted(claims)]
    stmt = (
        dialect.insert(DedupKey)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(DedupKey.key)
    )
    return set(session.scalars(stmt))
