"""The model registry: base models, and the SFT / RM / PPO versions training jobs produce.

Lineage is kept as parent ids: base -> SFT -> RM, and SFT + RM -> PPO. Researchers mark one
policy (base, SFT or PPO) as current: the one whose outputs go to labelers next.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.config import get_settings
from app.models import ModelVersion
from app.schemas.job_kinds import MODEL_KIND_LABELS, POLICY_KINDS
from app.services import Invalid, NotFound

TINY = "tiny"
# a Hugging Face hub ID: "name" or "org/name"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def list_versions(
    session: Session, kind: str | tuple[str, ...] | None = None
) -> list[ModelVersion]:
    """Registered versions, newest first; only of ``kind`` (one, or any of several) if given."""
    query = select(ModelVersion).order_by(ModelVersion.id.desc())
    if isinstance(kind, str):
        query = query.where(ModelVersion.kind == kind)
    elif kind is not None:
        query = query.where(ModelVersion.kind.in_(kind))
    return list(session.scalars(query))


def get_version(session: Session, version_id: int, field: str | None = None) -> ModelVersion:
    version = session.get(ModelVersion, version_id)
    if version is None:
        raise NotFound(f"model version {version_id} not found", field=field)
    return version


def require_kind(
    session: Session, version_id: int, kinds: tuple[str, ...], field: str
) -> ModelVersion:
    """The version, or a 422 naming the field when it is unknown or of the wrong kind (an RM
    given where a policy is expected, say)."""
    version = session.get(ModelVersion, version_id)
    if version is None:
        raise Invalid(f"unknown model version {version_id}", field=field)
    if version.kind not in kinds:
        wanted = " or ".join(MODEL_KIND_LABELS[k] for k in kinds)
        raise Invalid(
            f"model version {version_id} is a {MODEL_KIND_LABELS.get(version.kind, version.kind)}, "
            f"expected a {wanted}",
            field=field,
        )
    return version


def check_base_model_name(name: str, field: str) -> None:
    """A base model given by name must be "tiny", a directory under the model roots
    (``PREFLOOP_MODEL_ROOTS``), or a hub ID when ``PREFLOOP_ALLOW_HUB_MODELS`` is on.

    Anything the trainer would read as a local path (it tries the name as a path first) is
    checked as one, so ``/etc/shadow`` or ``../../secrets`` never reach a worker; a path
    outside the roots is refused before its existence is looked at, so the answer tells
    nothing about the server's files.
    """
    if name == TINY:
        return
    settings = get_settings()
    candidate = Path(name).expanduser()
    looks_like_path = name.startswith(("/", ".", "~")) or name.count("/") > 1
    if looks_like_path or _exists(candidate):
        resolved = candidate.resolve()
        roots = settings.model_root_paths
        if not any(resolved.is_relative_to(root) for root in roots):
            where = ", ".join(str(root) for root in roots)
            raise Invalid(
                f"local models are read only under the model roots ({where}; PREFLOOP_MODEL_ROOTS)",
                field=field,
            )
        if not resolved.is_dir():
            raise Invalid(f"no model directory at {name}", field=field)
        return
    if not _HUB_ID.match(name):
        raise Invalid(
            f"{name!r} is neither 'tiny', a local path, a hub ID nor a model version id",
            field=field,
        )
    if not settings.allow_hub_models:
        raise Invalid(
            f"{name!r} would be downloaded from the model hub, which is off on this server "
            "(PREFLOOP_ALLOW_HUB_MODELS=true turns it on); use 'tiny', a registered model "
            "version or a directory under the model roots",
            field=field,
        )


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a name too long for the file system, say
        return False


def ensure_base_version(session: Session, name_or_path: str) -> ModelVersion:
    """The registered base version for a hub ID / path / "tiny", created on first use."""
    existing = session.scalars(
        select(ModelVersion)
        .where(ModelVersion.kind == "base", ModelVersion.path == name_or_path)
        .order_by(ModelVersion.id)
    ).first()
    if existing is not None:
        return existing
    version = ModelVersion(kind="base", name=name_or_path, path=name_or_path, parent_ids=[])
    session.add(version)
    session.flush()
    return version


def base_model_of(session: Session, model: int | str) -> str:
    """The base model a version descends from (first parents up to a base version): "tiny",
    a hub ID or a path. It decides which defaults fit the next job (the tiny preset's own or
    the method's); read from the lineage, so no model file needs to be reachable from here."""
    seen: set[int] = set()
    while isinstance(model, int) and model not in seen:
        seen.add(model)
        version = session.get(ModelVersion, model)
        if version is None:
            return ""
        if version.kind == "base" or not version.parent_ids:
            return version.path
        model = version.parent_ids[0]
    return model if isinstance(model, str) else ""


def register_version(
    session: Session,
    *,
    kind: str,
    path: str,
    parent_ids: list[int],
    metrics: dict[str, Any],
    snapshot_ids: dict[str, int],
    job_id: int | None,
) -> ModelVersion:
    version = ModelVersion(
        kind=kind,
        name=f"{kind}-{job_id}" if job_id is not None else kind,
        path=path,
        parent_ids=parent_ids,
        metrics=metrics,
        snapshot_ids=snapshot_ids,
        job_id=job_id,
    )
    session.add(version)
    session.flush()
    return version


def mark_current(session: Session, version_id: int) -> ModelVersion:
    """Make ``version_id`` the current policy (exactly one is current)."""
    version = require_kind(session, version_id, POLICY_KINDS, "model_version_id")
    session.execute(
        update(ModelVersion).where(ModelVersion.id != version.id).values(is_current=False)
    )
    version.is_current = True
    session.flush()
    return version


def current_policy(session: Session) -> ModelVersion | None:
    return session.scalars(select(ModelVersion).where(ModelVersion.is_current)).first()


def version_view(version: ModelVersion) -> dict[str, Any]:
    return {
        "model_version_id": version.id,
        "kind": version.kind,
        "name": version.name,
        "parents": list(version.parent_ids or []),
        "path": version.path,
        "metrics": version.metrics or {},
        "snapshot_ids": version.snapshot_ids or {},
        "job_id": version.job_id,
        "is_current": version.is_current,
        "created_at": version.created_at,
    }
