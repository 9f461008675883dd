"""Overlap settings researchers change in the app: stored rows override the environment.

``PREFLOOP_AGREEMENT_SHARE``, ``_AGREEMENT_OVERLAP``, ``_ADAPTIVE_AGREEMENT_MIN`` and
``_ADAPTIVE_OVERLAP_MAX`` give the defaults; a value saved on /admin/quality (or with
``PUT /api/v1/quality/settings``) is kept in ``labeling_settings`` and wins until reset.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, cast

from sqlalchemy import Select, Table, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.config import get_settings
from app.db import is_postgres, sql_constant, utcnow
from app.models import LabelingSetting, User
from app.schemas.quality import OverlapSettings, OverlapSettingsOut
from app.services import Invalid, validated

KEYS = tuple(OverlapSettings.model_fields)


@lru_cache(maxsize=1)
def _stored_statement() -> Select[str, Any]:
    # built once, Core on the table (the ORM's compile step cost more than the read): read on
    # every submission that completes a shared task (adaptive overlap)
    # the keys written out: a bound list is expanded into the text on every execution
    table = cast(Table, LabelingSetting.__table__)
    return select(table.c.key, table.c.value).where(
        table.c.key.in_([sql_constant(key) for key in KEYS])
    )


def _stored(session: Session) -> dict[str, Any]:
    # the settings are written in Core statements too: nothing pending that this must flush
    return dict(session.connection().execute(_stored_statement()).all())


def overlap_settings(session: Session) -> OverlapSettings:
    """The settings in force: the environment's, overridden by those saved in the app."""
    env = get_settings()
    values = {key: getattr(env, key) for key in KEYS}
    values.update(_stored(session))
    return OverlapSettings.model_validate(values)


def describe_overlap_settings(session: Session) -> OverlapSettingsOut:
    current = overlap_settings(session)
    return OverlapSettingsOut(**current.model_dump(), overridden=sorted(_stored(session)))


def update_overlap_settings(
    session: Session, changes: dict[str, Any], by: User | None = None
) -> OverlapSettingsOut:
    """Save some settings (None values are left as they are); 422 naming the field when a
    value is out of range. New tasks use them at once; existing tasks keep their overlap."""
    unknown = sorted(set(changes) - set(KEYS))
    if unknown:
        raise Invalid(f"unknown setting(s) {unknown}", field=unknown[0])
    changes = {key: value for key, value in changes.items() if value is not None}
    merged = {**overlap_settings(session).model_dump(), **changes}
    checked = validated(OverlapSettings, merged)
    dialect = postgresql if is_postgres(session) else sqlite
    for key in changes:
        value = getattr(checked, key)
        row = {"key": key, "value": value, "updated_by_id": by.id if by else None}
        stmt = dialect.insert(LabelingSetting).values(**row, updated_at=utcnow())
        # two researchers saving at once: the last one wins, neither gets an error
        session.execute(
            stmt.on_conflict_do_update(
                index_elements=["key"],
                set_={
                    "value": value,
                    "updated_by_id": row["updated_by_id"],
                    "updated_at": utcnow(),
                },
            )
        )
    session.flush()
    return describe_overlap_settings(session)


def reset_overlap_settings(session: Session) -> OverlapSettingsOut:
    """Back to the environment's values."""
    session.execute(delete(LabelingSetting).where(LabelingSetting.key.in_(KEYS)))
    session.flush()
    return describe_overlap_settings(session)
