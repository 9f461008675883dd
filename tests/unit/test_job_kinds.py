"""The registry of job kinds is complete and consistent: every kind can be validated, launched
from the form, queued, run and registered from its one entry."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from app.schemas.job_kinds import JOB_KINDS, POLICY_KINDS, JobKindSpec
from app.schemas.jobs import JobKind

SPECS = [pytest.param(kind, spec, id=kind.value) for kind, spec in JOB_KINDS.items()]


def test_every_kind_has_a_spec_and_a_runner() -> None:
    import app.worker.tasks  # noqa: F401  (imports every runner module)
    from app.worker.runners import RUNNERS

    assert set(JOB_KINDS) == set(JobKind) == set(RUNNERS)


@pytest.mark.parametrize(("kind", "spec"), SPECS)
def test_references_name_fields_of_the_params(kind: JobKind, spec: JobKindSpec) -> None:
    fields = spec.params.model_fields
    named = [*spec.model_refs, *spec.snapshot_refs, *spec.prompt_refs]
    assert all(name in fields for name in named), (kind, named)
    assert all(
        d in {"comparisons", "demonstrations", "prompts"} for d in spec.snapshot_refs.values()
    )
    known_models = {*POLICY_KINDS, "rm"}
    assert all(set(kinds) <= known_models for kinds in spec.model_refs.values())
    assert spec.output_model in (None, *known_models)
    assert spec.queue in ("cpu", "gpu")


@pytest.mark.parametrize(("kind", "spec"), SPECS)
def test_trainer_config_fields_are_hyperparameters_of_the_params(
    kind: JobKind, spec: JobKindSpec
) -> None:
    if spec.trainer_config is None:
        assert spec.trainer_function is None
        return
    config_fields = {f.name for f in dataclasses.fields(spec.trainer_config)}
    assert config_fields <= set(spec.params.model_fields)
    # the function exists and takes the config; distributed kinds also run under accelerate
    parameters = inspect.signature(spec.trainer()).parameters
    assert "config" in parameters
    if spec.distributed:
        assert "num_gpus" in spec.params.model_fields
        assert {"progress", "meta"} <= set(parameters)


def test_hyperparameters_are_the_trainer_configs_defaults_unless_given() -> None:
    spec = JOB_KINDS[JobKind.rm]
    params = spec.params.model_validate({"sft_model_version_id": 1, "epochs": 3})
    config = spec.trainer_config_of(params)
    assert config.epochs == 3
    assert config.lr == spec.trainer_config().lr  # type: ignore[misc]
    assert "sft_model_version_id" not in spec.hyperparameters(params)
