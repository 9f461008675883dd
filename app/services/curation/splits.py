"""Train / val / test by user ID: a stable hash, researcher pins, and one split per user.

The hash is sha256 of the user ID (never Python's ``hash()``, which changes per process), read as
a number in [0, 1) and compared with the cumulative ``split_ratios``. A user who already has
prompts keeps the split those prompts are in (so changing the ratios never puts a user in two
splits); a researcher's pin overrides both. Pinning a user who already has prompts moves all of
that user's prompts to the pinned split, scanning them for PII first when the new split is one
that is scanned. User IDs belong to the client that ingested them (``Prompt.client``): pins and
"the split of its prompts" are looked up within that client, so one customer's pins or prompts
never move another customer's user of the same name.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.config import get_settings
from app.models import Prompt, SplitPin
from app.models.prompts import Split
from app.services import Invalid, NotFound

SPLITS = [s.value for s in Split]


def hash_split(user_id: str, ratios: Sequence[float]) -> str:
    """The split ``user_id`` hashes to under ``ratios`` (train, val, test)."""
    digest = hashlib.sha256(user_id.encode("utf-8")).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64
    cumulative = 0.0
    for name, ratio in zip(SPLITS, ratios, strict=True):
        cumulative += ratio
        if position < cumulative:
            return name
    return next(name for name, ratio in zip(SPLITS[::-1], ratios[::-1], strict=True) if ratio > 0)


def splits_for_users(session: Session, client: str, user_ids: Iterable[str]) -> dict[str, str]:
    """User ID -> split for every given ID of ``client``: pin, else the split of its prompts,
    else the hash."""
    wanted = set(user_ids)
    if not wanted:
        return {}
    found: dict[str, str] = dict(
        session.execute(
            select(SplitPin.user_id, SplitPin.split).where(
                SplitPin.client == client, SplitPin.user_id.in_(wanted)
            )
        ).all()
    )
    rest = wanted - found.keys()
    if rest:
        rows = session.execute(
            select(Prompt.user_id, func.min(Prompt.split))
            .where(Prompt.client == client, Prompt.user_id.in_(rest), Prompt.split.is_not(None))
            .group_by(Prompt.user_id)
        )
        found.update({user_id: split for user_id, split in rows if split is not None})
    ratios = get_settings().split_ratios
    for user_id in wanted - found.keys():
        found[user_id] = hash_split(user_id, ratios)
    return found


def parse_split(value: str, field: str = "split") -> str:
    if value not in SPLITS:
        raise Invalid(f"unknown split {value!r}; choose one of {', '.join(SPLITS)}", field=field)
    return value


def pin_split(session: Session, user_id: str, split: str, client: str = "") -> int:
    """Pin ``client``'s ``user_id`` to ``split`` and move the user's existing prompts there;
    returns how many.

    Holds the user's quota row lock (as ingest does), so no concurrent ingest can add a prompt
    in the old split meanwhile. Prompts moved into a scanned split are scanned for PII first.
    """
    from app.services.curation.pii_policy import apply_pii_to_existing
    from app.services.curation.quota import lock_quotas

    user_id = user_id.strip()
    if not user_id:
        raise Invalid("user ID must not be empty", field="user_id")
    parse_split(split)
    lock_quotas(session, client, {user_id})
    pin = session.get(SplitPin, (client, user_id))
    if pin is None:
        session.add(SplitPin(client=client, user_id=user_id, split=split))
    else:
        pin.split = split
    moving = list(
        session.scalars(
            select(Prompt).where(
                Prompt.client == client, Prompt.user_id == user_id, Prompt.split != split
            )
        )
    )
    if split in get_settings().pii_splits:
        apply_pii_to_existing(session, moving)
    if moving:
        session.execute(
            update(Prompt)
            .where(Prompt.id.in_([p.id for p in moving]))
            .values(split=split)
            .execution_options(synchronize_session="fetch")
        )
    session.flush()
    return len(moving)


def pin_message(session: Session, user_id: str, split: str, moved: int) -> str:
    """What a pin did, for the pins page and the CLI: a user ID no prompt came from yet is
    pinned all the same (a customer held out before they send anything), but said so, since
    it is also what a typo looks like."""
    user_id = user_id.strip()
    if session.scalar(select(Prompt.id).where(Prompt.user_id == user_id).limit(1)) is None:
        return (
            f"Pinned {user_id!r} to {split}. No prompt has come from this user ID yet (check "
            f"the spelling): its future prompts will go to {split}."
        )
    return f"Pinned {user_id!r} to {split}; moved {moved} prompt(s)."


def unpin_split(session: Session, user_id: str, client: str = "") -> None:
    """Remove a pin; the user's prompts stay where they are (and so do later ones)."""
    pin = session.get(SplitPin, (client, user_id))
    if pin is None:
        raise NotFound(f"no split pin for user ID {user_id!r}", field="user_id")
    session.delete(pin)
    session.flush()


def list_clients(session: Session) -> list[str]:
    """The clients (ingesting accounts; "" for the command-line import) that sent prompts."""
    return list(session.scalars(select(Prompt.client).distinct().order_by(Prompt.client)))


def list_pins(session: Session) -> list[SplitPin]:
    return list(session.scalars(select(SplitPin).order_by(SplitPin.created_at.desc())))
