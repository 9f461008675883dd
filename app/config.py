"""Typed settings, read from the environment (prefix ``PREFLOOP_``) and an optional ``.env``."""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# the project's checkout: templates/, static/, migrations/ and alembic.ini live here
ROOT = Path(__file__).resolve().parents[1]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PREFLOOP_", env_file=".env", extra="ignore")

    # where the embedded default keeps its SQLite file, generated secret and artifacts
    data_dir: Path = Path("var")
    # empty: SQLite file under data_dir
    database_url: str = ""
    # empty: Celery's SQLAlchemy transport on a SQLite file under data_dir
    broker_url: str = ""
    # connections each process keeps to PostgreSQL (SQLAlchemy's QueuePool): pool_size kept
    # open, up to db_max_overflow more under load. Size them against the server's
    # max_connections: (db_pool_size + db_max_overflow) x (web processes + worker processes)
    # + other clients must stay below it (see docs/performance.md). No overflow by default:
    # the pool closes an overflow connection as soon as it comes back to a full pool, so under
    # a steady load around pool_size connections were opened and closed all the time (a new
    # server process each, without its prepared statements); with 100 labelers 15 + 0 served
    # 266-310 submissions/s where 10 + 5 served 170-194 (issue 14)
    db_pool_size: int = Field(default=15, ge=1, le=1000)
    db_max_overflow: int = Field(default=0, ge=0, le=1000)
    # a request waits this long for a free connection, then answers 503 with Retry-After
    db_pool_timeout_s: float = Field(default=10.0, gt=0)
    # a client (a token or browser session that has worked, else an address; app.clients)
    # with more requests than this in at once in a web process waits for places at the
    # database gate behind every other client's, but for one place in five
    # (app.middleware.FairGate)
    fair_share_requests: int = Field(default=8, ge=1)
    # the Retry-After (seconds) of a 503 when the database is saturated
    db_retry_after_s: int = Field(default=2, ge=1, le=3600)
    # behind PgBouncer in transaction mode: no server-side prepared statements (psycopg's
    # automatic preparation is off), and PgBouncer's pool is the real limit
    db_pgbouncer: bool = False
    # SQLite: this process's writers take turns on one connection, queued in its pool before
    # SQLite's own lock (see app.db.make_engine), and the labeling hot path runs on the event
    # loop (app.db.on_the_loop); `prefloop serve --workers N` turns it off
    # for N > 1, where one process handing the lock to its own next writer starved the others
    sqlite_writer_queue: bool = True
    # empty: the broker's URL for Redis, the SQLAlchemy backend on the database otherwise
    result_backend: str = ""
    # empty: generated once and kept in data_dir/secret_key; at least 32 bytes, and never the
    # placeholder of .env.example (a server refuses to start with either)
    secret_key: str = ""

    session_max_age_s: int = 14 * 24 * 3600
    # secure cookies need HTTPS; turn on behind TLS
    cookie_secure: bool = False

    # login throttling (services/login_throttle.py): failures allowed per account and client
    # address (and four times as many per address) before each further attempt waits a delay
    # that doubles from login_base_delay_s up to login_max_delay_s; failures are forgotten
    # login_window_s after the last one
    login_max_failures: int = Field(default=5, ge=1)
    login_window_s: int = Field(default=900, ge=1)
    login_base_delay_s: float = Field(default=2.0, gt=0)
    login_max_delay_s: float = Field(default=900.0, gt=0)
    # reverse proxies (addresses or networks) whose X-Forwarded-For names the client; empty:
    # the header is ignored and the TCP peer is the client
    trusted_proxies: Annotated[tuple[str, ...], NoDecode] = ()
    # larger request bodies are refused with 413 before they are read (default 32 MiB: 1,000
    # prompts of the maximal length in one ingest call); only the bulk routes take that much
    # (app.middleware.body.BULK_BODY_PATHS)
    max_request_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    # every other route's limit (a submission, a job, a form): parsing JSON holds the web
    # process, and 28 MB of tiny values held it 11 s for a labeler's submission
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # a JSON body larger than 64 KiB holding more values than this is refused (413) before it
    # is parsed: parsing holds the web process, and 32 MiB of [[1],[1],...] held it 3.5 s.
    # 1,000 prompts with 500 metadata values each, or 9 systems of 10,000 outputs, fit
    max_json_values: int = Field(default=500_000, ge=1000)
    # a request body of up to 64 KiB must arrive in full within this many seconds, and a larger
    # one may pause no longer than this between two pieces; else 408 and the connection is
    # closed. No place at the database gate, no connection is held while a body arrives
    body_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    # a request's headers must arrive in full within this many seconds of the connection (or,
    # on a connection kept alive, of the request's first byte); else 408 and the connection is
    # closed (app.http_protocol: a client trickling headers held a connection for ever)
    header_timeout_s: float = Field(default=15.0, gt=0, le=3600)
    # a request line and headers larger than this get 431 and the connection is closed (the
    # server held 400 MB of one connection's header lines before)
    max_header_bytes: int = Field(default=64 * 1024, ge=4096)
    # a client that takes no part of a response for this long is cut off (connection closed),
    # so that one that stops reading a download holds no place at the database gate
    send_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    # exports streamed at once per web process (each holds a database connection while its
    # client reads); more answer 503 with Retry-After, so exports never hold every place
    export_streams: int = Field(default=4, ge=1, le=1000)
    # serve /docs and /openapi.json to anyone (true) or only to signed-in users (false)
    public_api_docs: bool = False

    # curation
    dedup_prefix_chars: int = Field(default=60, ge=8)
    prompts_per_user_cap: int = Field(default=200, ge=1)
    prompt_max_chars: int = Field(default=20_000, ge=1)
    # train / val / test shares of user IDs: "0.8,0.1,0.1" or a JSON list in the environment
    split_ratios: Annotated[tuple[float, float, float], NoDecode] = (0.8, 0.1, 0.1)
    # what happens to PII found in a scanned prompt: "redact" or "drop"
    pii_policy: str = "redact"
    # splits whose prompts are scanned for PII (comma separated in the environment); every
    # split labelers work on must be in it (see _labeled_splits_are_scanned)
    pii_splits: Annotated[tuple[str, ...], NoDecode] = ("train", "val", "test")
    # PII scanning runs in a pool of this many processes (0: one per core)
    pii_processes: int = Field(default=0, ge=0, le=256)
    # a text whose scan takes more CPU seconds is rejected with the reason (never stored
    # unscanned)
    pii_scan_deadline_s: float = Field(default=1.5, gt=0)
    # spaCy model used to detect person names; empty: the first installed en_core_web_*,
    # "none": never (structured PII is found by pattern recognizers without any model)
    pii_ner_model: str = ""

    # the admin pages' whole-table figures (data-set sizes, curation counts): fresh on every
    # view while they take under 0.25 s; slower ones (seconds of scans at a million prompts)
    # are recomputed in the background at most this often per web process and shown with
    # their time (see app/services/admin_figures.py); 0: always in the request
    admin_figures_ttl_s: int = Field(default=60, ge=0)

    # labeler statistics: the figures that need each ranking's entries (speed, position bias,
    # contradictions, agreement ...) come from the period's newest this many rankings; counts
    # and gold accuracy cover the whole period (app/services/labeler_stats.py)
    quality_window_rankings: int = Field(default=20_000, ge=1)

    # labeling
    task_lock_s: int = Field(default=30 * 60, ge=10)
    # share of new tasks (0..1, chosen deterministically by prompt id) that need
    # `agreement_overlap` distinct labelers instead of 1, to measure inter-annotator agreement
    agreement_share: float = Field(default=0.0, ge=0.0, le=1.0)
    agreement_overlap: int = Field(default=2, ge=2, le=20)
    # adaptive overlap: a ranking task whose labelers agree less than this (pairwise agreement,
    # docs/quality.md) gets one more labeler, up to `adaptive_overlap_max` labelers in all.
    # These and the two above are the defaults; researchers change them on /admin/quality.
    adaptive_agreement_min: float = Field(default=0.5, ge=0.0, le=1.0)
    adaptive_overlap_max: int = Field(default=5, ge=1, le=20)
    # splits whose accepted prompts get a demonstration task (the SFT data set); comma
    # separated in the environment
    demonstration_splits: Annotated[tuple[str, ...], NoDecode] = ("train", "val")
    demonstration_max_chars: int = Field(default=20_000, ge=1)
    # a skip hands the task to another labeler; after this many skips it is closed as unclear
    task_max_skips: int = Field(default=3, ge=1)
    # share of the ranking tasks a labeler is served that are gold tasks (a reference order
    # they are measured against), drawn at random so gold cannot be told apart
    gold_rate: float = Field(default=0.05, ge=0.0, le=1.0)
    # new labelers start in screening: they receive only the screening set until a
    # researcher approves or rejects them
    screening: bool = False
    # every output of every ranking needs a 1-7 Likert score (evaluation tasks always do)
    likert_required: bool = False

    # jobs
    artifacts_dir: Path | None = None
    worker_heartbeat_s: float = 5.0
    job_heartbeat_timeout_s: float = 60.0
    # prepended to the Celery queue names and Redis keys, so deployments (or test runs) can
    # share one Redis without taking each other's jobs
    queue_prefix: str = ""
    # load the demo data set and labelers on the first start of the embedded default
    demo_data: bool = True
    # directories under which a job may load a local base model; empty: the artifacts dir
    # and the trainer's cache (PREFLOOP_TRAINER_CACHE, else ~/.cache/prefloop)
    model_roots: Annotated[tuple[Path, ...], NoDecode] = ()
    # accept Hugging Face hub IDs as base models (the worker downloads them)
    allow_hub_models: bool = False
    # an Accelerate config file (DDP/FSDP/DeepSpeed, multi-node) for jobs with num_gpus > 1;
    # empty: `accelerate launch --multi_gpu --num_processes <num_gpus>` on this machine
    accelerate_config: str = ""

    @field_validator(
        "split_ratios",
        "pii_splits",
        "demonstration_splits",
        "trusted_proxies",
        "model_roots",
        mode="before",
    )
    @classmethod
    def _list_from_env(cls, value: object) -> object:
        """Lists come from the environment as "a,b,c" or as a JSON list."""
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("["):
            return tuple(json.loads(text))
        return tuple(part.strip() for part in text.split(",") if part.strip())

    @field_validator("pii_splits", "demonstration_splits")
    @classmethod
    def _known_splits(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - {"train", "val", "test"})
        if unknown:
            raise ValueError(f"unknown split(s) {unknown}; use train, val, test")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"trusted_proxies: {entry!r} is not an IP address or network"
                ) from None
        return value

    @field_validator("pii_policy")
    @classmethod
    def _known_policy(cls, value: str) -> str:
        if value not in {"redact", "drop"}:
            raise ValueError("pii_policy must be 'redact' or 'drop'")
        return value

    @model_validator(mode="after")
    def _labeled_splits_are_scanned(self) -> Settings:
        """Raw PII must never reach a labeler: every split that gets demonstration tasks is
        scanned."""
        unscanned = sorted(set(self.demonstration_splits) - set(self.pii_splits))
        if unscanned:
            raise ValueError(
                f"PREFLOOP_DEMONSTRATION_SPLITS includes {unscanned}, which "
                "PREFLOOP_PII_SPLITS does not scan: labelers would see raw PII; add them to "
                "PREFLOOP_PII_SPLITS"
            )
        return self

    @field_validator("split_ratios")
    @classmethod
    def _ratios_sum_to_one(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(r < 0 for r in value) or abs(sum(value) - 1.0) > 1e-6:
            raise ValueError("split_ratios must be three non-negative numbers summing to 1")
        return value

    # derived values -----------------------------------------------------------------------

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'prefloop.sqlite').resolve()}"

    @property
    def celery_broker_url(self) -> str:
        if self.broker_url:
            return self.broker_url
        return f"sqla+sqlite:///{(self.data_dir / 'broker.sqlite').resolve()}"

    @property
    def celery_result_backend(self) -> str:
        if self.result_backend:
            return self.result_backend
        if self.celery_broker_url.startswith(("redis://", "rediss://")):
            return self.celery_broker_url
        return "db+" + self.sqlalchemy_url.replace("+psycopg", "")

    @property
    def artifacts_path(self) -> Path:
        return self.artifacts_dir or self.data_dir / "artifacts"

    @property
    def is_embedded(self) -> bool:
        """True when running on the zero-config default (SQLite + SQL broker)."""
        return not self.database_url and not self.broker_url

    @property
    def trusted_proxy_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(entry, strict=False) for entry in self.trusted_proxies]

    @property
    def model_root_paths(self) -> list[Path]:
        """Where local base models may be read from (resolved, so ``..`` cannot escape)."""
        if self.model_roots:
            return [Path(root).expanduser().resolve() for root in self.model_roots]
        cache = os.environ.get("PREFLOOP_TRAINER_CACHE")
        trainer_cache = Path(cache) if cache else Path.home() / ".cache" / "prefloop"
        return [self.artifacts_path.resolve(), trainer_cache.expanduser().resolve()]

    def session_secret(self) -> str:
        """The configured secret, or one generated once and kept under the data dir.

        Raises ``InsecureSecretKey`` for a secret anyone could know or guess: shorter than 32
        bytes, or the placeholder shipped in ``.env.example``.
        """
        if self.secret_key:
            return check_secret_key(self.secret_key, "PREFLOOP_SECRET_KEY")
        path = self.data_dir / "secret_key"
        if path.exists():
            return check_secret_key(path.read_text().strip(), str(path))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        secret = secrets.token_urlsafe(48)
        # create exclusively so two processes starting together agree on one secret
        try:
            with path.open("x") as fh:
                fh.write(secret)
            path.chmod(0o600)
        except FileExistsError:
            return path.read_text().strip()
        return secret


# the value .env.example ships with: a deployment that copied the file unchanged signs its
# cookies with a public key, so anyone could forge an admin session
SECRET_KEY_PLACEHOLDER = "change-me-to-a-long-random-string"
SECRET_KEY_MIN_BYTES = 32


class InsecureSecretKey(ValueError):
    """The session secret is public or too short: the server must not start with it."""


def check_secret_key(secret: str, where: str) -> str:
    if secret == SECRET_KEY_PLACEHOLDER:
        raise InsecureSecretKey(
            f"{where} is the placeholder from .env.example; set a random value, e.g. "
            "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
        )
    if len(secret.encode()) < SECRET_KEY_MIN_BYTES:
        raise InsecureSecretKey(
            f"{where} is {len(secret.encode())} bytes; use at least {SECRET_KEY_MIN_BYTES} "
            "random bytes, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
        )
    return secret


@lru_cache
def get_settings() -> Settings:
    return Settings()
