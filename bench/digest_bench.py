"""The managers' figures at scale: one day's digest (with its 14-day trend and 7-day baseline), first with
no day logged before it and then in steady state (the 13 previous days in the digest log), and a 30-day
/report over a million contacts: time and peak memory of the process that builds them.

    .venv/bin/python bench/digest_bench.py [--contacts 1000000]
    .venv/bin/python bench/digest_bench.py --measure postgresql://postgres@127.0.0.1:5432/bench_digest digest

Data: the synthetic contacts of bench/export_bench.py (50 promoters, 20 stores, 28 days, 80% approved) in a
fresh SQLite database, plus one review per contact written 30 minutes after it; the figures go through the
application's own code (services/digest.py, services/reports.py). Each measurement runs in its own
process, so its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.export_bench import seed as seed_contacts

DAY = dt.date(2026, 11, 14)  # inside the 28 days the contacts span


def seed(db: Path, contacts: int, *, analyze: bool = True) -> None:
    seed_contacts(db, contacts)
    con = sqlite3.connect(db)
    con.execute(
        "INSERT INTO user_account (id, telegram_id, first_name, is_blocked, created_at, updated_at)"
        " VALUES (900, 900, 'Reviewer', 0, '2026-11-01', '2026-11-01')"
    )
    con.execute(
        "INSERT INTO assignment (id, contact_id, reviewer_id, kind, status, attempt, draft_marks, assigned_at,"
        " created_at, updated_at)"
        " VALUES (1, 1, 900, 'primary', 'done', 1, '{}', '2026-11-01', '2026-11-01', '2026-11-01')"
    )
    con.execute(
        "INSERT INTO review (assignment_id, contact_id, reviewer_id, marks, score, verdict, created_at,"
        " updated_at) SELECT 1, id, 900, '{}', score, final_verdict,"
        " datetime(submitted_at, '+30 minutes'), submitted_at FROM contact"
    )
    con.commit()
    if analyze:  # what the nightly housekeeping job (and its run at start-up) does: planner statistics
        con.execute("ANALYZE")
        con.commit()
    con.close()


async def measure(db: str, what: str) -> dict[str, object]:
    """`db`: a SQLite file, or a PostgreSQL URL (a copy made with bench/pg_copy.py)."""
    from infra.db import create_engine
    from models import Project
    from services.digest import build_digest
    from services.reports import build_report
    from services.unit_of_work import create_session_factory

    url = db.replace("postgresql://", "postgresql+asyncpg://") if "://" in db else f"sqlite+aiosqlite:///{db}"
    engine = create_engine(url)
    async with create_session_factory(engine)() as session:
        project = await session.get(Project, 1)
        assert project is not None
        started = time.perf_counter()
        if what == "log":  # the previous mornings: each day's digest built and logged, as the job does
            from services.digest import claim_day

            for back in range(13, 0, -1):
                await claim_day(
                    session, await build_digest(session, project, DAY - dt.timedelta(days=back)), []
                )
            await session.commit()
            result = {"days_logged": 13}
        elif what == "digest":
            digest = await build_digest(session, project, DAY)
            result: dict[str, object] = {
                "day_contacts": digest.today.received,
                "reviewed": digest.today.reviewed,
            }
        else:
            report = await build_report(session, project, DAY - dt.timedelta(days=29), DAY)
            result = {"contacts": report.figures.received, "promoters": len(report.promoters)}
        result["seconds"] = round(time.perf_counter() - started, 2)
    await engine.dispose()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--measure", nargs=2, metavar=("DB", "WHAT"))
    parser.add_argument("--no-analyze", action="store_true", help="leave SQLite without planner statistics")
    args = parser.parse_args()
    if args.measure:
        result = asyncio.run(measure(args.measure[0], args.measure[1]))
        result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        print(json.dumps(result))
        return
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "bench.db"
        started = time.perf_counter()
        seed(db, args.contacts, analyze=not args.no_analyze)
        print(
            f"seeded {args.contacts} contacts and reviews in {time.perf_counter() - started:.0f} s",
            flush=True,
        )
        # A first digest with nothing logged before it, the 13 previous mornings' digests logged, then the
        # steady state: a digest whose previous days are in the digest log.
        for what in ("digest", "report", "log", "digest"):
            result = subprocess.run(
                [sys.executable, __file__, "--measure", str(db), what],
                capture_output=True,
                text=True,
                check=True,
            )
            print(f"{what:7} {result.stdout.strip()}", flush=True)


if __name__ == "__main__":
    main()
