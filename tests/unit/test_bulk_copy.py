"""COPY of prompts on PostgreSQL stores what the ORM insert stores, ids in input order, and a
duplicate key is SQLAlchemy's IntegrityError (which ingest retries), as from the insert."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from app.models import Prompt
from app.services.bulk_copy import copy_rows


def _rows(tag: str) -> list[dict[str, Any]]:
    return [
        {"text": f"Prompt {n} with a tab\there, a \\ backslash and\nnew line", "source": "api",
         "kind": "api", "user_id": f"u-{n}", "author_id": None, "external_id": f"{tag}-{n}",
         "client": "c", "use_case": None, "structure": None,
         "metadata_": {"lang": "en", "n": [n, None]} if n % 2 else None, "split": "train",
         "status": "accepted", "reason": None, "duplicate_of_id": None,
         "dedup_key": f"{tag}{n:058d}", "pii": {"EMAIL_ADDRESS": 1} if n == 1 else None}
        for n in range(3)
    ]  # fmt: skip


COLUMNS = [
    c for c in Prompt.__table__.c if c.name not in {"id", "created_at", "external_id", "dedup_key"}
]


def test_copy_stores_the_rows_the_insert_stores(app_env: str, session) -> None:
    if not app_env.startswith("postgresql"):
        pytest.skip("COPY is PostgreSQL's")
    copied = copy_rows(session, Prompt, [{**r} for r in _rows("copy")])
    inserted = list(
        session.scalars(
            insert(Prompt).returning(Prompt.id, sort_by_parameter_order=True), _rows("insert")
        )
    )
    session.commit()
    assert copied == sorted(copied) and len(copied) == 3
    stored = {r.id: r for r in session.execute(select(Prompt.__table__))}
    for a, b in zip(copied, inserted, strict=True):
        assert [stored[a]._mapping[c] for c in COLUMNS] == [stored[b]._mapping[c] for c in COLUMNS]
        assert stored[a].created_at is not None
    # SQL NULL where the insert stores SQL NULL (and JSON null where it stores JSON null)
    for column in ("structure", "metadata", "pii"):
        null = set(session.scalars(select(Prompt.id).where(Prompt.__table__.c[column].is_(None))))
        assert [i in null for i in copied] == [i in null for i in inserted]


def test_a_duplicate_key_is_an_integrity_error(app_env: str, session) -> None:
    if not app_env.startswith("postgresql"):
        pytest.skip("COPY is PostgreSQL's")
    copy_rows(session, Prompt, _rows("same"))
    session.commit()
    with pytest.raises(IntegrityError):
        copy_rows(session, Prompt, _rows("same"))
    session.rollback()
