"""prefloop behind PgBouncer in transaction mode (``PREFLOOP_DB_PGBOUNCER=true``): a server
connection serves any transaction, so nothing may rely on session state such as server-side
prepared statements. Labelers loop next-task and submission from several threads through a
PgBouncer started here with fewer server connections than clients."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from tests.conftest import TEST_PASSWORD, _reset_caches, configure_env, truncate_all
from tests.labeling_support import make_prompt, make_ranking_task

PGBOUNCER = shutil.which("pgbouncer") or (
    "/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None
)
pytestmark = pytest.mark.skipif(
    PGBOUNCER is None, reason="pgbouncer is not installed (.ci/run installs it)"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def pgbouncer_url(pg_url: str) -> Iterator[str]:
    url = make_url(pg_url)
    port = _free_port()
    # PgBouncer refuses to run as root: as root it runs as postgres, which must reach these
    # files (pytest's own temporary directories are private to this user)
    work = Path(tempfile.mkdtemp(prefix="prefloop-pgbouncer-"))
    work.chmod(0o777)
    (work / "users.txt").write_text(f'"{url.username}" ""\n')
    (work / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"{url.database} = host={url.host} port={url.port or 5432} dbname={url.database}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\n"
        f"unix_socket_dir = {work}\n"
        f"auth_type = trust\nauth_file = {work / 'users.txt'}\n"
        "pool_mode = transaction\ndefault_pool_size = 2\nmax_client_conn = 200\n"
        f"logfile = {work / 'pgbouncer.log'}\n"
    )
    for f in work.iterdir():
        f.chmod(0o666)
    assert PGBOUNCER is not None
    cmd = [PGBOUNCER, str(work / "pgbouncer.ini")]
    if os.geteuid() == 0:
        cmd[1:1] = ["-u", "postgres"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                out = proc.stdout.read().decode() if proc.stdout else ""
                pytest.fail(f"pgbouncer did not start: {out}")
            time.sleep(0.1)
    try:
        yield url.set(port=port).render_as_string(hide_password=False)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def bouncer_env(
    pgbouncer_url: str, pg_url: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    configure_env(monkeypatch, data_dir, pgbouncer_url, db_pgbouncer="true", gold_rate="0")
    yield pgbouncer_url
    _reset_caches()
    truncate_all(pg_url)


def _labeler_token(n: int) -> str:
    from app.db import get_sessionmaker
    from app.services.accounts import create_token, create_user

    with get_sessionmaker()() as s:
        create_user(s, f"bouncer-labeler-{n}", TEST_PASSWORD, "labeler")
        s.commit()
        _, secret = create_token(s, f"bouncer-labeler-{n}", "test", None)
        s.commit()
        return secret


def test_labelers_work_through_pgbouncer_in_transaction_mode(bouncer_env: str) -> None:
    from app.db import get_sessionmaker
    from app.main import create_app
    from app.models import Ranking, Task

    tasks = 24
    for _ in range(tasks):
        make_ranking_task(make_prompt(), k=4, overlap=1)
    app = create_app()

    def labeler_loop(n: int) -> int:
        client = TestClient(app)
        client.headers["Authorization"] = f"Bearer {_labeler_token(n)}"
        done = 0
        while True:
            r = client.get("/api/v1/tasks/next", params={"kind": "ranking"})
            if r.status_code == 204:
                return done
            assert r.status_code == 200, r.text
            task = r.json()
            shown = [c["completion_id"] for c in task["completions"]]
            r = client.post(
                f"/api/v1/tasks/{task['task_id']}/submission",
                json={"ranking": [[c] for c in reversed(shown)]},
            )
            assert r.status_code == 200, r.text
            done += 1

    with ThreadPoolExecutor(4) as pool:
        submitted = sum(pool.map(labeler_loop, range(4)))

    assert submitted == tasks
    with get_sessionmaker()() as s:
        assert s.scalar(select(func.count()).select_from(Ranking)) == tasks
        assert s.scalar(select(func.count()).select_from(Task).where(Task.status != "done")) == 0
