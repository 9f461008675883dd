"""The database work of each page that must stay fast at scale, one request at a time, on a
database kept by ``seed_scale.py --keep`` (median of three labelers' requests, rolled back).

    python benchmarks/scale_probe.py URL
    PYTHONPATH=/path/to/older/checkout python benchmarks/scale_probe.py URL   # before

Prints milliseconds for the labeler home's services, next-task, and the figures behind
/admin/overview and /admin/data (computed here, as the background refresh computes them).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from app.models import User
from app.services import queue
from app.services.intake_stats import data_overview
from app.services.labeler_work import labeler_counts
from app.services.loop_status import data_sets


def labeler_home(session: Session, user: User) -> None:
    if hasattr(queue, "ensure_demonstration_tasks") and not hasattr(queue, "WAITING_UP_TO"):
        queue.ensure_demonstration_tasks(session)  # what the home page did before issue 14
    queue.waiting_counts(session, user)
    labeler_counts(session, user)


PAGES: dict[str, Callable[[Session, User], object]] = {
    "labeler home": labeler_home,
    "next": lambda s, u: queue.assign_next_task(s, u, None),
    "/admin/overview figures": lambda s, u: data_sets(s),
    "/admin/data figures": lambda s, u: data_overview(s),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    args = parser.parse_args()
    engine = create_engine(args.url)
    for name, page in PAGES.items():
        times = []
        for labeler_id in (5, 6, 7):
            with Session(engine) as session:
                user = session.get_one(User, labeler_id)
                start = time.perf_counter()
                page(session, user)
                times.append((time.perf_counter() - start) * 1000)
                session.rollback()
        listed = ", ".join(f"{t:.0f}" for t in times)
        print(f"{name}: median {statistics.median(times):.0f} ms ({listed})")
    engine.dispose()


if __name__ == "__main__":
    main()
