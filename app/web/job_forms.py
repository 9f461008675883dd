"""The job launch form: fields derived from each kind's Pydantic schema (so the form offers
exactly what the API accepts, labelled and explained by the schema's field titles and
descriptions), valid model/snapshot choices from the kind's entry in ``JOB_KINDS``, and parsing
of the submitted form back into params. Hyper-parameters start empty, showing their defaults:
left empty, the job gets the ones that fit its model (the tiny preset's own for it and the
models trained from it, the method's otherwise)."""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy.orm import Session

from app.schemas.job_kinds import JOB_KINDS, JobKindSpec
from app.schemas.jobs import DataFilters, JobKind
from app.services.export import list_snapshots
from app.services.models_registry import current_policy, list_versions
from app.services.use_cases import list_use_cases
from trainer.config import PRESET_DEFAULTS, describe_defaults

KIND_TITLES = {kind.value: spec.title for kind, spec in JOB_KINDS.items()}
# the kinds the launch form offers
LAUNCH_KINDS = {kind.value: spec.title for kind, spec in JOB_KINDS.items() if spec.launchable}
FILTER_FIELDS = ("use_case", "since", "until", "include_held_out_labelers")
# starting values the form suggests for required fields without a default
SUGGESTED = {"k": 4, "prompt_count": 20}
# string settings with a fixed set of values
CHOICES = {"mixed_precision": ("no", "fp16", "bf16")}


@dataclass
class FormField:
    name: str
    widget: str  # text | number | select | multiselect | checkbox | datetime
    value: Any = None
    choices: list[tuple[str, str]] = field(default_factory=list)
    required: bool = False
    help: str = ""
    step: str = "any"
    placeholder: str = ""
    label: str = ""

    def __post_init__(self) -> None:
        if not self.label:
            self.label = self.name.replace("filters.", "").replace("_", " ").capitalize()


def _strip_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _widget(annotation: Any) -> tuple[str, list[tuple[str, str]], str]:
    annotation = _strip_optional(annotation)
    if typing.get_origin(annotation) is Literal:
        return "select", [(str(v), str(v)) for v in typing.get_args(annotation)], "any"
    if annotation is bool:
        return "checkbox", [], "any"
    if annotation is int:
        return "number", [], "1"
    if annotation is float:
        return "number", [], "any"
    return "text", [], "any"


def _spec(kind: str) -> JobKindSpec:
    return JOB_KINDS[JobKind(kind)]


def job_fields(session: Session, kind: str) -> tuple[list[FormField], list[FormField]]:
    """(what to train on, hyper-parameters) for the form of ``kind``, with defaults."""
    spec = _spec(kind)
    schema = spec.params
    hyper_names = set(spec.trainer_config.__dataclass_fields__) if spec.trainer_config else set()
    # a kind that runs on one device has no use for num_gpus
    hidden = set(spec.unused_params) | (set() if spec.distributed else {"num_gpus"})
    model_fields, snapshot_fields = spec.model_refs, spec.snapshot_refs
    hints = typing.get_type_hints(schema)
    setup: list[FormField] = []
    hyper: list[FormField] = []
    for name, info in schema.model_fields.items():
        if name == "filters" or name in hidden:
            continue
        if info.is_required():
            default = SUGGESTED.get(name)
        else:
            default = info.get_default(call_default_factory=True)
        widget, choices, step = _widget(hints[name])
        if typing.get_origin(_strip_optional(hints[name])) is list and name not in model_fields:
            continue  # list-valued settings (LoRA target modules, prompt ids): JSON API only
        f = FormField(
            name,
            widget,
            default,
            choices,
            info.is_required(),
            info.description or "",
            step,
            label=info.title or "",
        )
        if name in CHOICES:
            f.widget, f.choices = "select", [(c, c) for c in CHOICES[name]]
        if name in model_fields:
            is_list = typing.get_origin(_strip_optional(hints[name])) is list
            f.widget = "multiselect" if is_list else "select"
            f.choices = [
                (str(v.id), f"#{v.id} {v.kind} · {v.name}{' (current)' if v.is_current else ''}")
                for v in list_versions(session, model_fields[name])
            ]
            if name == "base_model":
                # a registered base model by default ("tiny" is registered on first start);
                # the name field below is the other way to give one
                f.required = False
                if not any(text.endswith("· tiny") for _, text in f.choices):
                    f.choices.append(("tiny", "tiny (the offline preset)"))
                tiny = [value for value, text in f.choices if text.endswith("· tiny")]
                f.value = tiny[0] if tiny else f.choices[0][0]
            elif not f.required:
                f.choices.insert(0, ("", "none"))
            if is_list:  # the current policy is the usual first choice
                current = current_policy(session)
                f.value = [str(current.id)] if current else []
        elif name in snapshot_fields:
            f.widget = "select"
            f.choices = [("", "current data (a new snapshot)")]
            f.choices += [
                (str(s.id), f"#{s.id} · {s.filters.get('split') or 'all'} · {s.row_count} rows")
                for s in list_snapshots(session, 50, snapshot_fields[name])
            ]
        if name in hyper_names and f.widget in ("number", "text"):
            f.value, f.placeholder = None, default_text(spec, name, default)
        (hyper if name in hyper_names else setup).append(f)
    # models and data first, then the rest (num_gpus ...)
    setup.sort(key=lambda f: 0 if f.name in model_fields else 1 if f.name in snapshot_fields else 2)
    return setup, hyper


def default_text(spec: JobKindSpec, name: str, default: Any) -> str:
    """The placeholder of an empty hyper-parameter: the method's default, and a preset's
    where it differs ("1e-05 · tiny: 0.0001")."""
    kind = spec.trainer_config.kind if spec.trainer_config else ""
    text = (
        "none"
        if default is None
        else f"{default:g}"
        if isinstance(default, float)
        else str(default)
    )
    for preset, by_kind in PRESET_DEFAULTS.items():
        value = by_kind.get(kind, {}).get(name, default)
        if value != default:
            text += (
                f" · {preset}: {value:g}" if isinstance(value, float) else f" · {preset}: {value}"
            )
    return text


def defaults_note(kind: str) -> str:
    """Which defaults apply to which models, above the hyper-parameters."""
    config = _spec(kind).trainer_config
    return describe_defaults(config.kind) if config is not None else ""


def filter_fields(session: Session, kind: str) -> list[FormField]:
    """The data filters; a kind that reads prompts only (sampling, PPO) filters prompts by
    creation time, and has no labelers to hold out. Labels and help from ``DataFilters``."""
    what = _spec(kind).filters_select
    docs = DataFilters.model_fields
    use_cases = [(u.name, u.name) for u in list_use_cases(session)]
    fields = [
        FormField(
            "filters.use_case", "select", None, [("", "any"), *use_cases],
            help=docs["use_case"].description or "", label=docs["use_case"].title or "",
        ),
        FormField(
            "filters.since", "datetime", help=f"{what.capitalize()} created at or after (UTC).",
            label=docs["since"].title or "",
        ),
        FormField(
            "filters.until", "datetime", help=f"{what.capitalize()} created before (UTC).",
            label=docs["until"].title or "",
        ),
    ]  # fmt: skip
    if what == "labels":
        held_out = docs["include_held_out_labelers"]
        fields.append(
            FormField(
                "filters.include_held_out_labelers",
                "checkbox",
                False,
                help=held_out.description or "",
                label=held_out.title or "",
            )  # fmt: skip
        )
    return fields


def has_filters(kind: str) -> bool:
    return "filters" in _spec(kind).params.model_fields


def params_from_form(
    kind: str, form: Any, setup: list[FormField], hyper: list[FormField]
) -> dict[str, Any]:
    """Submitted strings -> params for the schema (which converts and validates them).
    Empty inputs are left out, so the schema's defaults apply."""
    params: dict[str, Any] = {}
    for f in setup + hyper:
        if f.widget == "multiselect":
            values = [v for v in form.getlist(f.name) if v]
            if values:
                params[f.name] = values
        elif f.widget == "checkbox":
            params[f.name] = form.get(f.name) == "on"
        else:
            value = (form.get(f.name) or "").strip()
            if value:
                params[f.name] = value
    if "base_model" in _spec(kind).params.model_fields:
        custom = (form.get("base_model_name") or "").strip()
        if custom:
            params["base_model"] = custom
    if has_filters(kind):
        filters: dict[str, Any] = {}
        for name in FILTER_FIELDS:
            raw = form.get(f"filters.{name}")
            if name == "include_held_out_labelers":
                filters[name] = raw == "on"
            elif raw and raw.strip():
                filters[name] = raw.strip()
        params["filters"] = filters
    return params


def fill_values(fields: list[FormField], form: Any) -> None:
    """Keep what the researcher typed when the form comes back with an error."""
    for f in fields:
        if f.widget == "multiselect":
            f.value = form.getlist(f.name)
        elif f.widget == "checkbox":
            f.value = form.get(f.name) == "on"
        elif f.name in form:
            f.value = form.get(f.name)
