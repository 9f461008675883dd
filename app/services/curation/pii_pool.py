"""PII scanning off the request thread: a pool of processes sized to the cores.

``scan_texts(texts) -> results`` is the one entry point: a batch call, in input order, each
result a ``PiiScan`` or a ``ScanFailure`` (with the reason the text could not be scanned; its
prompt must be rejected, never stored unscanned). The texts are cut into small batches sent to
the worker processes; one call keeps at most one batch per process in flight, so a customer's
1,000-prompt ingest leaves room in the queue for everyone else's.

Why processes: a scan is pure Python (Presidio, spaCy, phonenumbers) and holds the interpreter;
scanning in the web process made every other request, ``/healthz`` included, wait behind it.

Bounds: each text has a deadline (``PREFLOOP_PII_SCAN_DEADLINE_S``) checked between the
windows the filter analyses (``pii.PiiFilter.find``); and a batch that does not come back in
time at all (a stuck worker) fails its texts and the pool is replaced.

``PREFLOOP_PII_PROCESSES``: the pool's size (0: one per core). In a daemonic process (a Celery
prefork child), which may not start children, texts are scanned in the calling process.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.config import get_settings
from app.services.curation.pii_scan import PiiScan, ScanTimeout, installed_ner_model

if TYPE_CHECKING:
    from app.services.curation.pii import PiiFilter

log = logging.getLogger(__name__)

BATCH = 16  # at most this many texts per task sent to a worker process
START_ALLOWANCE_S = 120.0  # a fresh worker imports Presidio and builds its registry first


@dataclass(frozen=True)
class ScanFailure:
    """A text that could not be scanned; ``reason`` is shown to the submitter."""

    reason: str

    @property
    def found(self) -> bool:
        return False


ScanResult = PiiScan | ScanFailure

# the worker side ---------------------------------------------------------------------------

_filters: dict[str | None, PiiFilter] = {}


def _filter(ner_model: str | None) -> PiiFilter:
    # imported here: Presidio and spaCy load in the scanner processes, not the web process
    from app.services.curation.pii import PiiFilter

    if ner_model not in _filters:
        _filters[ner_model] = PiiFilter(ner_model=ner_model)
    return _filters[ner_model]


def scan_batch(texts: Sequence[str], ner_model: str | None, deadline_s: float) -> list[ScanResult]:
    """Scan each text with its own deadline (runs in a worker process, or inline)."""
    pii_filter = _filter(ner_model)
    results: list[ScanResult] = []
    for text in texts:
        try:
            results.append(pii_filter.scan(text, deadline=time.process_time() + deadline_s))
        except ScanTimeout:
            results.append(
                ScanFailure(
                    f"the PII scan of this text did not finish within {deadline_s:g} s of CPU "
                    "(very long runs of digits or punctuation); the prompt was not stored"
                )
            )
    return results


OWNER_CHECK_S = 1.0  # how often a scanner process looks whether its owner still runs


def _owner_gone(owner: int) -> bool:
    """True once the process that started the pool has ended (or is a zombie, dead but not
    yet reaped by its own parent)."""
    try:
        os.kill(owner, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # a process of another user took the number: ours is gone
        return True
    try:
        with open(f"/proc/{owner}/stat", "rb") as stat:
            return stat.read().rpartition(b")")[2].split()[0] == b"Z"
    except OSError:  # no /proc (macOS): the kill test above is all there is
        return False


def _exit_with_owner(owner: int) -> None:
    while not _owner_gone(owner):
        time.sleep(OWNER_CHECK_S)
    # the owner was killed (SIGKILL, the OOM killer) before it could shut the pool down: this
    # process would wait on its queue forever, holding its memory and the fork server
    os._exit(0)


def _warm(ner_model: str | None, owner: int | None = None) -> None:
    if owner is not None:
        threading.Thread(target=_exit_with_owner, args=(owner,), daemon=True).start()
    _filter(ner_model).scan("warm up")


# the caller's side -------------------------------------------------------------------------

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_pool_key: tuple[int, str | None] | None = None


def pool_size() -> int:
    configured = get_settings().pii_processes
    return configured if configured > 0 else (os.cpu_count() or 1)


def _can_fork() -> bool:
    return not multiprocessing.current_process().daemon


def _executor(size: int, ner_model: str | None) -> ProcessPoolExecutor:
    global _pool, _pool_key
    with _lock:
        broken = _pool is not None and getattr(_pool, "_broken", False)
        if _pool is None or _pool_key != (size, ner_model) or broken:
            if _pool is not None:
                _pool.shutdown(wait=False, cancel_futures=True)
            # forkserver: workers start from a clean process, not a fork of a threaded server;
            # the fork server imports the scanner (Presidio, spaCy and what they import: 4 s of
            # CPU) once, and each worker is a fork of it instead of importing it again
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload([__name__, "app.services.curation.pii"])
            _pool = ProcessPoolExecutor(
                max_workers=size,
                mp_context=context,
                initializer=_warm,
                initargs=(ner_model, os.getpid()),
            )
            _pool_key = (size, ner_model)
        return _pool


def shutdown_pool() -> None:
    """Stop the worker processes (tests, and when a worker is stuck)."""
    global _pool, _pool_key
    with _lock:
        pool, _pool, _pool_key = _pool, None, None
    if pool is None:
        return
    processes = list(getattr(pool, "_processes", {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:  # a stuck scan never returns on its own
        if process.is_alive():
            process.terminate()


def warm_pool() -> None:
    """Start every worker process (each loads Presidio) before the first real scan."""
    try:
        scan_texts(["warm up"] * pool_size())
    except Exception:  # a server must start even if the scanner cannot; ingest will say so
        log.exception("could not start the PII scanner's processes")


def scan_texts(texts: Sequence[str]) -> list[ScanResult]:
    """Scan ``texts`` for PII; one result per text, in input order."""
    if not texts:
        return []
    settings = get_settings()
    ner_model = installed_ner_model()
    deadline_s = settings.pii_scan_deadline_s
    if not _can_fork():
        return scan_batch(texts, ner_model, deadline_s)
    size = pool_size()
    pool = _executor(size, ner_model)
    # small calls are spread over every process (one long text must not wait behind another)
    per_batch = max(1, min(BATCH, -(-len(texts) // size)))
    batches = [list(texts[i : i + per_batch]) for i in range(0, len(texts), per_batch)]
    results: list[list[ScanResult] | None] = [None] * len(batches)
    in_flight: dict[int, tuple[Future[list[ScanResult]], float]] = {}
    next_batch = 0
    while next_batch < len(batches) or in_flight:
        while next_batch < len(batches) and len(in_flight) < size:
            batch = batches[next_batch]
            future = pool.submit(scan_batch, batch, ner_model, deadline_s)
            # the time this batch may take before its worker is deemed stuck
            limit = time.monotonic() + START_ALLOWANCE_S + deadline_s * 2 * len(batch)
            in_flight[next_batch] = (future, limit)
            next_batch += 1
        index = min(in_flight)  # oldest first: results come back in order anyway
        future, limit = in_flight.pop(index)
        try:
            results[index] = future.result(timeout=max(limit - time.monotonic(), 0.01))
        except (FutureTimeout, Exception) as exc:  # a stuck or crashed worker
            log.error("PII scan batch failed (%s); replacing the pool", type(exc).__name__)
            shutdown_pool()
            failure = ScanFailure("the PII scanner failed on this text; the prompt was not stored")
            for pending_index, (pending, _) in in_flight.items():
                pending.cancel()
                results[pending_index] = [failure] * len(batches[pending_index])
            in_flight.clear()
            results[index] = [failure] * len(batches[index])
            for rest in range(next_batch, len(batches)):
                results[rest] = [failure] * len(batches[rest])
            next_batch = len(batches)
    return [result for batch_results in results for result in batch_results or []]
