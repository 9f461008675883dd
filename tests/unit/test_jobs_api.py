"""The jobs API without a worker: validation (422s), the lifecycle rules, the crash sweep, the
model registry. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.db import get_sessionmaker, utcnow
from app.models import Job, ModelVersion
from app.schemas.jobs import JobKind


def _version(kind: str, parents: list[int] | None = None, path: str = "tiny") -> int:
    with get_sessionmaker()() as s:
        v = ModelVersion(kind=kind, name=kind, path=path, parent_ids=parents or [])
        s.add(v)
        s.commit()
        return v.id


@pytest.fixture
def api(api_as):
    return api_as("researcher")


def test_sft_job_is_queued_with_the_defaults_of_its_model(api) -> None:
    from trainer.config import PRESET_DEFAULTS, SFTConfig

    real = _version("base", path="some-org/llm")  # a real checkpoint, registered
    r = api.post("/api/v1/jobs", json={"kind": "sft", "params": {"base_model": real}})
    assert r.status_code == 201, r.text
    job = api.get(f"/api/v1/jobs/{r.json()['job_id']}").json()
    assert job["status"] == "queued" and job["kind"] == "sft"
    assert job["params"]["epochs"] == 16 and job["params"]["residual_dropout"] == 0.2  # [16], [0.2]
    assert job["progress"] == {"step": 0, "total": 0, "fraction": 0.0, "eta_s": None}
    assert job["model_version_id"] is None and job["error"] is None

    # the tiny preset carries its own, and explicit settings win (a string "1e-3" is a float)
    r = api.post(
        "/api/v1/jobs",
        json={"kind": "sft", "params": {"base_model": "tiny", "lr": "1e-3", "epochs": 3}},
    )
    params = api.get(f"/api/v1/jobs/{r.json()['job_id']}").json()["params"]
    tiny = SFTConfig.for_model("tiny", {"lr": 1e-3, "epochs": 3})
    assert {k: params[k] for k in tiny.to_dict()} == tiny.to_dict()
    assert params["lr"] == 1e-3 and params["epochs"] == 3
    assert params["batch_size"] == PRESET_DEFAULTS["tiny"]["sft"]["batch_size"]


def test_later_steps_get_the_defaults_of_the_model_they_descend_from(api) -> None:
    from trainer.config import PPOConfig, RMConfig

    tiny_sft = _version("sft", [_version("base", path="tiny")], path="/tmp/sft")
    other_sft = _version("sft", [_version("base", path="some-org/llm")], path="/tmp/sft2")
    rm = _version("rm", [tiny_sft], path="/tmp/rm")
    for sft, expected in ((tiny_sft, RMConfig.for_model("tiny")), (other_sft, RMConfig())):
        r = api.post("/api/v1/jobs", json={"kind": "rm", "params": {"sft_model_version_id": sft}})
        params = api.get(f"/api/v1/jobs/{r.json()['job_id']}").json()["params"]
        assert params["lr"] == expected.lr and params["epochs"] == expected.epochs
    r = api.post(
        "/api/v1/jobs",
        json={
            "kind": "ppo",
            "params": {"sft_model_version_id": tiny_sft, "rm_model_version_id": rm},
        },
    )
    params = api.get(f"/api/v1/jobs/{r.json()['job_id']}").json()["params"]
    assert params["kl_coef"] == PPOConfig.for_model("tiny").kl_coef != PPOConfig().kl_coef


@pytest.mark.parametrize(
    ("kind", "params", "field"),
    [
        ("sample", {"model_version_ids": ["SFT"], "k": 3, "prompt_count": 2}, "params.k"),
        ("sample", {"model_version_ids": ["SFT"], "k": 10, "prompt_count": 2}, "params.k"),
        (
            "sample",
            {"model_version_ids": ["RM"], "k": 4, "prompt_count": 2},
            "params.model_version_ids.0",
        ),
        (
            "sample",
            {"model_version_ids": [999], "k": 4, "prompt_count": 2},
            "params.model_version_ids.0",
        ),
        (
            "ppo",
            {"sft_model_version_id": "RM", "rm_model_version_id": "RM"},
            "params.sft_model_version_id",
        ),
        (
            "ppo",
            {"sft_model_version_id": "SFT", "rm_model_version_id": "SFT"},
            "params.rm_model_version_id",
        ),
        ("rm", {"sft_model_version_id": "RM"}, "params.sft_model_version_id"),
        ("rm", {"sft_model_version_id": 12345}, "params.sft_model_version_id"),
        ("sft", {"base_model": "RM"}, "params.base_model"),
        ("sft", {"base_model": "/no/such/dir"}, "params.base_model"),
        ("sft", {"base_model": "tiny", "epochs": 0}, "params.epochs"),
        ("sft", {"base_model": "tiny", "lerning_rate": 1}, "params.lerning_rate"),
        ("sft", {}, "params.base_model"),
        (
            "ppo",
            {"sft_model_version_id": "SFT", "rm_model_version_id": "RM", "kl_coef": -1},
            "params.kl_coef",
        ),
        (
            "ppo",
            {"sft_model_version_id": "SFT", "rm_model_version_id": "RM", "value_lr": "fast"},
            "params.value_lr",
        ),
        (  # a rule of the trainer's config: PPO samples the full distribution
            "ppo",
            {"sft_model_version_id": "SFT", "rm_model_version_id": "RM", "top_p": 0.9},
            "params.top_p",
        ),
        (
            "ppo",
            {"sft_model_version_id": "SFT", "rm_model_version_id": "RM", "temperature": 0},
            "params.temperature",
        ),
    ],
)
def test_bad_combinations_are_422_naming_the_field(api, kind, params, field) -> None:
    base = _version("base")
    ids = {"SFT": _version("sft", [base]), "RM": _version("rm")}
    resolved = {
        k: (
            [ids.get(x, x) for x in v]
            if isinstance(v, list)
            else ids.get(v, v)
            if isinstance(v, str)
            else v
        )
        for k, v in params.items()
    }
    r = api.post("/api/v1/jobs", json={"kind": kind, "params": resolved})
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field
    with get_sessionmaker()() as s:
        assert s.query(Job).count() == 0  # nothing half-created


@pytest.mark.parametrize(
    ("params", "field"),
    [
        # JSON true/false is not a number, 0 is not a switch, a number is not a date-time
        ({"base_model": "tiny", "epochs": True}, "params.epochs"),
        ({"base_model": "tiny", "lr": False}, "params.lr"),
        ({"base_model": "tiny", "use_lora": 1}, "params.use_lora"),
        ({"base_model": "tiny", "num_gpus": True}, "params.num_gpus"),
        ({"base_model": "tiny", "filters": {"labeler_id": False}}, "params.filters.labeler_id"),
        (
            {"base_model": "tiny", "filters": {"include_held_out_labelers": 0}},
            "params.filters.include_held_out_labelers",
        ),  # fmt: skip
        ({"base_model": "tiny", "filters": {"until": 0}}, "params.filters.until"),
    ],
)
def test_params_are_the_types_the_document_says(api, params, field) -> None:
    r = api.post("/api/v1/jobs", json={"kind": "sft", "params": params})
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field


def test_the_document_describes_each_launchable_kind(api) -> None:
    from app.schemas.job_kinds import JOB_KINDS

    doc = api.get("/openapi.json").json()
    body = doc["paths"]["/api/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]
    union = doc["components"]["schemas"][body["schema"]["$ref"].rpartition("/")[2]]
    assert union["discriminator"]["propertyName"] == "kind"
    mapping = union["discriminator"]["mapping"]
    assert set(mapping) == {k.value for k, spec in JOB_KINDS.items() if spec.launchable}
    for kind, ref in mapping.items():
        member = doc["components"]["schemas"][ref.rpartition("/")[2]]
        assert member["properties"]["kind"]["const"] == kind
        params = member["properties"]["params"]["$ref"].rpartition("/")[2]
        assert params == JOB_KINDS[JobKind(kind)].params.__name__
    # bounds in JSON Schema's words (a validator placed before a Field once left them as ge/le)
    job_id = doc["components"]["schemas"]["RMParams"]["properties"]["sft_model_version_id"]
    assert {"minimum", "maximum"} <= set(job_id) and not {"ge", "le"} & set(job_id)


def test_unknown_kind_is_422(api) -> None:
    r = api.post("/api/v1/jobs", json={"kind": "dpo", "params": {}})
    assert r.status_code == 422


def test_cancel_queued_then_rerun_with_the_same_params(api) -> None:
    job_id = api.post(
        "/api/v1/jobs", json={"kind": "sft", "params": {"base_model": "tiny", "epochs": 2}}
    ).json()["job_id"]
    r = api.post(f"/api/v1/jobs/{job_id}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert api.post(f"/api/v1/jobs/{job_id}/cancel").status_code == 409
    r = api.post(f"/api/v1/jobs/{job_id}/rerun")
    assert r.status_code == 201
    again = api.get(f"/api/v1/jobs/{r.json()['job_id']}").json()
    assert again["status"] == "queued" and again["rerun_of"] == job_id
    assert again["params"] == api.get(f"/api/v1/jobs/{job_id}").json()["params"]
    assert api.post(f"/api/v1/jobs/{again['job_id']}/rerun").status_code == 409


def test_running_job_with_stale_heartbeat_is_failed_by_the_sweep_not_by_reads(api) -> None:
    from app.worker.heartbeat import sweep_jobs

    job_id = api.post(
        "/api/v1/jobs", json={"kind": "sft", "params": {"base_model": "tiny"}}
    ).json()["job_id"]
    with get_sessionmaker()() as s:
        job = s.get_one(Job, job_id)
        job.status, job.worker = "running", "gpu@dead-host"
        job.started_at = job.heartbeat_at = utcnow() - timedelta(minutes=5)
        s.commit()
    # reading never writes: the job page and the list show what is stored
    assert api.get(f"/api/v1/jobs/{job_id}").json()["status"] == "running"
    assert api.get("/api/v1/jobs").json()[0]["status"] == "running"
    sweep_jobs()  # what every worker's heartbeat and `prefloop serve` run periodically
    job = api.get(f"/api/v1/jobs/{job_id}").json()
    assert job["status"] == "failed"
    assert "gpu@dead-host" in job["error"] and "heartbeat" in job["error"]
    assert api.post(f"/api/v1/jobs/{job_id}/rerun").status_code == 201


def test_fresh_heartbeat_keeps_a_running_job_running(api) -> None:
    job_id = api.post(
        "/api/v1/jobs", json={"kind": "sft", "params": {"base_model": "tiny"}}
    ).json()["job_id"]
    with get_sessionmaker()() as s:
        job = s.get_one(Job, job_id)
        job.status, job.started_at, job.heartbeat_at = "running", utcnow(), utcnow()
        s.commit()
    assert api.get(f"/api/v1/jobs/{job_id}").json()["status"] == "running"
    r = api.post(f"/api/v1/jobs/{job_id}/cancel")
    assert r.json()["status"] == "running" and r.json()["cancel_requested"] is True


def test_models_registry_and_mark_current(api) -> None:
    base = _version("base")
    sft = _version("sft", [base])
    rm = _version("rm", [sft])
    models = {m["model_version_id"]: m for m in api.get("/api/v1/models").json()}
    assert models[rm]["parents"] == [sft] and models[sft]["kind"] == "sft"
    assert api.post(f"/api/v1/models/{rm}/current").status_code == 422  # an RM is no policy
    assert api.post("/api/v1/models/999/current").status_code == 404
    assert api.post(f"/api/v1/models/{sft}/current").json()["is_current"] is True
    assert api.post(f"/api/v1/models/{base}/current").status_code == 200
    current = [m["model_version_id"] for m in api.get("/api/v1/models").json() if m["is_current"]]
    assert current == [base]


def test_labelers_cannot_touch_jobs(api_as) -> None:
    labeler = api_as("labeler")
    assert (
        labeler.post(
            "/api/v1/jobs", json={"kind": "sft", "params": {"base_model": "tiny"}}
        ).status_code
        == 403
    )
    assert labeler.get("/api/v1/models").status_code == 403


def test_unreachable_broker_is_503_and_the_job_is_sent_when_it_is_back(api, monkeypatch) -> None:
    import app.services.jobs as job_service

    real_send = job_service.send_job  # type: ignore[attr-defined]  # patched where it is used

    def broker_down(job_id: int, queue: str) -> str:
        raise ConnectionError("connection refused")

    monkeypatch.setattr(job_service, "send_job", broker_down)
    r = api.post("/api/v1/jobs", json={"kind": "sft", "params": {"base_model": "tiny"}})
    assert r.status_code == 503, r.text
    assert "broker" in r.json()["detail"]
    (job,) = api.get("/api/v1/jobs").json()  # nothing lost: stored, waiting to be sent
    assert job["status"] == "queued"
    with get_sessionmaker()() as s:
        assert s.get_one(Job, job["job_id"]).celery_task_id is None
        # a launch still on its way to the broker is left alone; an older one is sent again
        assert job_service.send_unsent_jobs(s) == []
        later = utcnow() + timedelta(seconds=job_service.SEND_GRACE_S + 1)
        assert job_service.send_unsent_jobs(s, later) == []  # still down: stays unsent
        monkeypatch.setattr(job_service, "send_job", real_send)
        assert job_service.send_unsent_jobs(s, later) == [job["job_id"]]
        s.commit()
        assert s.get_one(Job, job["job_id"]).celery_task_id is not None
