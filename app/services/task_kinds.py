"""Task kinds: what differs between demonstration, ranking, evaluation and gold tasks, in one place.

Every kind lives in the same ``tasks`` table, is served by the same queue
(app/services/queue.py) and is done on one of two forms (a demonstration or a ranking of the
task's outputs). A kind's spec says everything that differs:

- ``form``: the page and the submission shape (``text`` or ``ranking`` + ``ratings``);
- ``shown_as``: the kind a labeler and the task API are told; gold tasks pass for ordinary
  ones, so a labeler cannot treat them differently;
- ``training_data``: whether its labels reach the training exports (the SFT and RM data sets);
- ``k_range``: how many outputs a ranking form shows;
- ``likert_required``: every output needs a 1-7 score (``requires_likert()`` adds the
  project-wide ``PREFLOOP_LIKERT_REQUIRED`` for every ranking form);
- ``once_per_labeler``: every eligible labeler may do it once (gold), instead of ``overlap``
  slots taken and given back by the queue;
- ``eligible``: the extra SQL condition on ``Task`` (and its prompt) for one labeler;
- ``adaptive_overlap``: when its labelers disagree, the task is reopened for one more
  (app/services/judgment_scores.py);
- ``agreement_data``: its rankings feed inter-annotator agreement and the per-labeler
  statistics (docs/quality.md);
- ``reference``: what a researcher's reference answer is (``ranking`` or ``text``), that labelers
  are scored against.

The queue, the submission check, the pages and the exports read these specs; none of them
compares kind names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from sqlalchemy import ColumnElement, and_, exists, or_, true

from app.config import get_settings
from app.db import sql_constant
from app.models import (
    Demonstration,
    Evaluation,
    Judges,
    LabelerStatus,
    Task,
    TaskKind,
)
from app.models.labeling import K_MAX, K_MIN
from app.services import Invalid

Form = Literal["demonstration", "ranking"]


class LabelerTraits(Protocol):
    """What a queue condition reads of a labeler: a ``User``, or the queue's stand-in whose
    ``id`` is a bound parameter (so one statement serves every labeler of the same traits)."""

    @property
    def id(self) -> Any: ...

    @property
    def held_out(self) -> bool: ...

    @property
    def labeler_status(self) -> str: ...


def a_or_an(noun: str) -> str:
    return f"an {noun}" if noun[0] in "aeiou" else f"a {noun}"


def _anyone(labeler: LabelerTraits, task: type[Task] = Task) -> ColumnElement[bool]:
    return true()


def _allowed_judges(labeler: LabelerTraits, task: type[Task] = Task) -> ColumnElement[bool]:
    """Evaluation tasks: the run's judge group admits this labeler, and they did not demonstrate
    the prompt (a labeler never judges outputs for a prompt they wrote or demonstrated; the
    queue already keeps everyone off prompts they wrote)."""
    groups = [
        Judges.any.value,
        Judges.held_out.value if labeler.held_out else Judges.training.value,
    ]
    admitted = exists().where(Evaluation.id == task.evaluation_id, Evaluation.judges.in_(groups))
    demonstrated = exists().where(
        Demonstration.prompt_id == task.prompt_id, Demonstration.labeler_id == labeler.id
    )
    return and_(admitted, ~demonstrated)


def _screening_labelers(labeler: LabelerTraits, task: type[Task] = Task) -> ColumnElement[bool]:
    # reference demonstrations only measure labelers in screening; others write real ones
    return true() if labeler.labeler_status == LabelerStatus.screening.value else ~true()


@dataclass(frozen=True)
class TaskKindSpec:
    kind: TaskKind
    form: Form
    shown_as: str
    title: str
    training_data: bool
    k_range: tuple[int, int] | None = None
    likert_required: bool = False
    once_per_labeler: bool = False
    # (labeler, the Task entity or an alias of it) -> condition
    eligible: Callable[[LabelerTraits, type[Task]], ColumnElement[bool]] = _anyone
    adaptive_overlap: bool = False
    agreement_data: bool = False
    reference: Literal["ranking", "text"] | None = None

    def requires_likert(self) -> bool:
        """Every output needs a 1-7 score: always for this kind, or for every ranking form when
        the project says so (``PREFLOOP_LIKERT_REQUIRED``)."""
        return self.likert_required or (self.form == "ranking" and get_settings().likert_required)

    def check_k(self, k: int) -> None:
        """A ranking form shows ``k_range`` outputs (422 naming ``completion_ids`` otherwise)."""
        if self.k_range is None:
            return
        low, high = self.k_range
        if not low <= k <= high:
            raise Invalid(
                f"{a_or_an(self.title.lower())} task needs {low} to {high} completions, got {k}",
                field="completion_ids",
            )


SPECS: dict[str, TaskKindSpec] = {
    spec.kind.value: spec
    for spec in (
        TaskKindSpec(
            TaskKind.demonstration, "demonstration", "demonstration", "Demonstration", True
        ),
        TaskKindSpec(
            TaskKind.ranking,
            "ranking",
            "ranking",
            "Ranking",
            True,
            k_range=(K_MIN, K_MAX),
            adaptive_overlap=True,
            agreement_data=True,
        ),
        TaskKindSpec(
            TaskKind.evaluation,
            "ranking",
            "evaluation",
            "Evaluation",
            training_data=False,
            k_range=(2, K_MAX),
            likert_required=True,
            eligible=_allowed_judges,
        ),
        TaskKindSpec(
            TaskKind.gold,
            "ranking",
            "ranking",
            "Gold ranking",
            training_data=False,
            k_range=(2, K_MAX),
            once_per_labeler=True,
            agreement_data=True,
            reference="ranking",
        ),
        TaskKindSpec(
            TaskKind.gold_demonstration,
            "demonstration",
            "demonstration",
            "Gold demonstration",
            training_data=False,
            once_per_labeler=True,
            eligible=_screening_labelers,
            reference="text",
        ),
    )
}

# what a labeler or a client may ask for in ``GET /api/v1/tasks/next?kind=``
SHOWN_KINDS: tuple[str, ...] = tuple(dict.fromkeys(spec.shown_as for spec in SPECS.values()))


def spec_of(kind: str) -> TaskKindSpec:
    return SPECS[kind]


def kinds_shown_as(shown: str | None) -> list[str]:
    """The stored kinds a request for ``shown`` (None: any) may serve."""
    return [k for k, spec in SPECS.items() if shown is None or spec.shown_as == shown]


def parse_shown_kind(kind: str | None) -> str | None:
    """``None``/empty for any kind, else a kind labelers may ask for (422 otherwise)."""
    if kind in (None, ""):
        return None
    if kind not in SHOWN_KINDS:
        names = ", ".join(SHOWN_KINDS)
        raise Invalid(f"unknown task kind {kind!r}; use one of {names}", field="kind")
    return kind


def training_kinds(form: Form) -> list[str]:
    """The stored kinds whose ``form`` labels are training data (the exports' filter)."""
    return [k for k, spec in SPECS.items() if spec.form == form and spec.training_data]


def slot_kinds() -> list[str]:
    """Kinds served by ``overlap`` slots (the others: once to every eligible labeler)."""
    return [k for k, spec in SPECS.items() if not spec.once_per_labeler]


def kinds_of_form(form: Form) -> list[str]:
    return [k for k, spec in SPECS.items() if spec.form == form]


def agreement_kinds() -> list[str]:
    """Kinds whose rankings measure agreement and labelers (docs/quality.md)."""
    return [k for k, spec in SPECS.items() if spec.agreement_data]


def reference_kinds(reference: Literal["ranking", "text"]) -> list[str]:
    """Gold kinds: those with a reference ``ranking`` or reference ``text``."""
    return [k for k, spec in SPECS.items() if spec.reference == reference]


def eligibility(
    labeler: LabelerTraits, kinds: list[str], task: type[Task] = Task
) -> ColumnElement[bool]:
    """SQL: the task (``Task`` or an alias) is of one of ``kinds`` and this labeler may take
    it."""
    return or_(
        *(and_(task.kind == sql_constant(k), SPECS[k].eligible(labeler, task)) for k in kinds)
    )


def shown_kind_of(kind: str) -> str:
    return SPECS[kind].shown_as


def describe_spec(kind: str) -> dict[str, Any]:
    """What a client needs to know to fill the task's form."""
    spec = SPECS[kind]
    return {"kind": spec.shown_as, "likert_required": spec.requires_likert()}
