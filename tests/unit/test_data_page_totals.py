"""The admin data page's PII totals come from SQL over the prompts' JSON reports (both
backends), and equal the sums of the reports."""

from __future__ import annotations

from tests.labeling_support import make_prompt


def test_pii_totals_are_summed_in_sql(app_env) -> None:
    from sqlalchemy import update

    from app.db import get_sessionmaker
    from app.models import Prompt
    from app.services.intake_stats import curation_counts

    reports = [
        {"EMAIL_ADDRESS": 2, "PHONE_NUMBER": 1},
        {"EMAIL_ADDRESS": 1},
        {},
        {},
        None,  # not scanned
    ]
    ids = [make_prompt() for _ in reports]
    with get_sessionmaker()() as s:
        for pid, report in zip(ids, reports, strict=True):
            s.execute(update(Prompt).where(Prompt.id == pid).values(pii=report))
        s.commit()
        counts = curation_counts(s)
    assert counts["scanned"] == 4
    assert counts["with_pii"] == 2
    assert counts["entities"] == {"EMAIL_ADDRESS": 3, "PHONE_NUMBER": 1}
    assert list(counts["entities"]) == ["EMAIL_ADDRESS", "PHONE_NUMBER"]  # most found first
