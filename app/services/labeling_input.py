"""What a labeler sends, checked before anything is stored: a ranking's tie groups and ratings,
a demonstration's text, a skip's reason (each error a 422 naming its field)."""

from __future__ import annotations

from typing import Any

from app.config import get_settings
from app.models import FLAGS
from app.schemas.labeling import SubmissionIn
from app.services import Invalid, validated

SKIP_REASON_MAX_CHARS = 2000


def parse_submission(payload: SubmissionIn | dict[str, Any]) -> SubmissionIn:
    return validated(SubmissionIn, payload)


def ranking_entries(
    groups: list[list[int]], ratings: dict[int, tuple[int | None, list[str]]]
) -> list[dict[str, Any]]:
    """A ranking's entries as rows (rank 1 = best; tied completions share their group's
    rank): plain dicts, since a submission inserts them in Core (an ORM object each cost
    more than its insert)."""
    unrated: tuple[int | None, list[str]] = (None, [])
    return [
        {
            "completion_id": cid,
            "rank": position,
            "likert": ratings.get(cid, unrated)[0],
            "flags": ratings.get(cid, unrated)[1],
        }
        for position, group in enumerate(groups, start=1)
        for cid in group
    ]


def validated_ranking(
    sub: SubmissionIn, shown: list[int], *, likert_required: bool
) -> tuple[list[list[int]], dict[int, tuple[int | None, list[str]]]]:
    assert sub.ranking is not None
    groups = validated_groups(sub.ranking, shown)
    ratings = _validated_ratings(sub, shown, likert_required=likert_required)
    untouched = groups == [[cid] for cid in shown] and not any(
        likert is not None or flags for likert, flags in ratings.values()
    )
    if untouched and not sub.confirmed_order:
        raise Invalid(
            "the outputs are still in the order shown, with no score or flag: rank them "
            "(best first) before submitting, or confirm that the shown order is your ranking "
            '(API: "confirmed_order": true)',
            field="ranking",
        )
    return groups, ratings


def checked_skip_reason(reason: str) -> str:
    reason = reason.strip()
    if not reason:
        raise Invalid("say why you skip this task (e.g. the prompt is unclear)", field="skip")
    if len(reason) > SKIP_REASON_MAX_CHARS:
        raise Invalid(f"the reason is longer than {SKIP_REASON_MAX_CHARS} characters", field="skip")
    return reason


def demonstration_text(text: str, field: str = "text") -> str:
    """A demonstration as stored (LF line breaks); 422 naming ``field`` when it is empty or
    too long."""
    # browsers submit textarea line breaks as CRLF; store what the labeler typed
    text = text.replace("\r\n", "\n")
    if not text.strip():
        raise Invalid("write the ideal response before submitting", field=field)
    limit = get_settings().demonstration_max_chars
    if len(text) > limit:
        raise Invalid(f"the response is longer than {limit} characters", field=field)
    return text


def validated_groups(
    ranking: list[list[int]], shown: list[int], field: str = "ranking"
) -> list[list[int]]:
    """A weak order (tie groups, best first) that places every one of ``shown`` exactly once;
    422 naming ``field`` otherwise."""
    seen: set[int] = set()
    for group in ranking:
        if not group:
            raise Invalid(f"a tie group in '{field}' is empty", field=field)
        for cid in group:
            if cid not in shown:
                raise Invalid(f"completion {cid} is not part of this task", field=field)
            if cid in seen:
                raise Invalid(f"completion {cid} is ranked more than once", field=field)
            seen.add(cid)
    missing = [cid for cid in shown if cid not in seen]
    if missing:
        raise Invalid(
            f"completions {missing} are not ranked; place every completion exactly once",
            field=field,
        )
    return ranking


def _validated_ratings(
    sub: SubmissionIn, shown: list[int], *, likert_required: bool = False
) -> dict[int, tuple[int | None, list[str]]]:
    ratings: dict[int, tuple[int | None, list[str]]] = {}
    if likert_required:
        given = sub.ratings or {}
        unrated = [cid for cid in shown if cid not in given or given[cid].likert is None]
        if unrated:
            raise Invalid(
                f"give every output an overall quality score (1-7); missing for {unrated}",
                field="ratings",
            )
    for cid, rating in (sub.ratings or {}).items():
        if cid not in shown:
            raise Invalid(f"completion {cid} is not part of this task", field=f"ratings.{cid}")
        if rating.likert is not None and not 1 <= rating.likert <= 7:
            raise Invalid(
                f"overall quality must be 1 to 7, got {rating.likert}",
                field=f"ratings.{cid}.likert",
            )
        unknown = [f for f in rating.flags if f not in FLAGS]
        if unknown:
            raise Invalid(
                f"unknown flag(s) {unknown}; known flags: {', '.join(FLAGS)}",
                field=f"ratings.{cid}.flags",
            )
        # stored once each, in the order labelers see them
        ratings[cid] = (rating.likert, [f for f in FLAGS if f in rating.flags])
    return ratings
