"""Exports at scale: a million contacts streamed to XLSX and CSV, time and peak memory of the exporting
process (each format in its own subprocess, so the figure is the export's alone).

    .venv/bin/python bench/export_bench.py [--contacts 1000000]

Data: synthetic contacts in a fresh SQLite database (50 promoters, 20 stores, verdicts in the usual
proportions), written straight with sqlite3 for speed; the export goes through the application's own
code (services/exports.py) and reads them back through SQLAlchemy.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def seed(db: Path, contacts: int) -> None:
    from bot.migrate import upgrade

    upgrade(f"sqlite+aiosqlite:///{db}")
    con = sqlite3.connect(db)
    now = dt.datetime(2026, 11, 15, 12, 0)
    con.execute(
        "INSERT INTO organisation (id, name, created_at, updated_at) VALUES (1, 'Bench', ?, ?)", (now, now)
    )
    con.execute(
        "INSERT INTO project (id, organisation_id, name, is_active, timezone, digest_time, rereview_time, scorecard,"
        " form_schema, review_sla_minutes, max_open_cards, sla_expiries_before_alert, analysis_wait_minutes,"
        " calibration_share, dispute_window_hours, min_audio_seconds, max_audio_seconds, nps_scale,"
        " voice_thresholds, retention_days, created_at, updated_at)"
        " VALUES (1, 1, 'Bench', 1, 'UTC', '09:00:00', '10:00:00', '{}', '{}', 15, 3, 3, 10, 0.05, 48, 10, 1800,"
        " '0-10', '{}', 365, ?, ?)",
        (now, now),
    )
    con.executemany(
        "INSERT INTO user_account (id, telegram_id, first_name, is_blocked, created_at, updated_at)"
        " VALUES (?, ?, ?, 0, ?, ?)",
        [(i, 10_000 + i, f"Promoter {i}", now, now) for i in range(1, 51)],
    )
    rng = random.Random(7)
    verdicts = ["approve"] * 8 + ["reject", "fraud"]
    batch = []
    for i in range(1, contacts + 1):
        verdict = rng.choice(verdicts)
        submitted = now - dt.timedelta(seconds=rng.randrange(0, 28 * 86400))
        answers = json.dumps({"store": f"Store {rng.randrange(1, 21)}", "product": "coffee"})
        batch.append(
            (
                i,
                1,
                rng.randrange(1, 51),
                answers,
                "final",
                0,
                0,
                80.0,
                verdict,
                submitted,
                submitted,
                submitted,
            )
        )
        if len(batch) == 50_000:
            con.executemany(
                "INSERT INTO contact (id, project_id, promoter_id, form_answers, status, priority, calibration,"
                " score, final_verdict, submitted_at, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                batch,
            )
            batch = []
    if batch:
        con.executemany(
            "INSERT INTO contact (id, project_id, promoter_id, form_answers, status, priority, calibration,"
            " score, final_verdict, submitted_at, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            batch,
        )
    con.commit()
    con.close()


def _url(db: str) -> str:
    return db if "://" in db else f"sqlite+aiosqlite:///{db}"


START, END = dt.date(2026, 10, 1), dt.date(2026, 11, 30)
LAST_DAY = dt.date(2026, 11, 15)  # the seeded contacts end here: "today" of the steady state


async def roll_up(db: str, *, leave_last_day: bool) -> int:
    """The scheduled roll-up of the whole period; with leave_last_day, the last day is then marked stale,
    as "today" always is in a running service, so billing counts that one day from the contacts."""
    from infra.db import create_engine
    from services import billing
    from services.unit_of_work import create_database

    database = create_database(create_engine(_url(db)))
    days = await billing.refresh(database, 1, START, END)
    if leave_last_day:
        async with database.sessions() as session, session.begin():
            await billing.mark_stale(session, 1, [LAST_DAY])
    await database.close()
    return days


async def export(db: str, out: Path, kind: str) -> int:
    from infra import db as database
    from infra.db import create_engine
    from models import Project
    from services import exports
    from services.unit_of_work import create_session_factory

    engine = create_engine(_url(db))
    sessions = create_session_factory(engine)
    async with sessions() as session:
        project = await session.get(Project, 1)
        assert project is not None
    billing = kind == "billing"
    columns = exports.BILLING_COLUMNS if billing else exports.CONTACT_COLUMNS
    sink: exports.Sink = (
        exports.XlsxSink(out, kind, columns, 4 if billing else None)
        if out.suffix == ".xlsx"
        else exports.CsvSink(out, columns)
    )

    async def progress(n: int) -> None:
        print(f"  {n} rows", file=sys.stderr, flush=True)

    async with database.reader(engine) as connection:
        rows = (exports.billing_rows if billing else exports.contact_rows)(connection, project, START, END)
        count = await exports.export(rows, sink, progress)
    await engine.dispose()
    return count


def _measure(args: list[str]) -> str:
    result = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=True)
    return result.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--export-only", nargs=3, metavar=("DB", "OUT", "KIND"))
    parser.add_argument(
        "--roll-up-only", metavar="DB", help="roll the period up (time it), last day left stale"
    )
    parser.add_argument(
        "--keep", type=Path, help="seed into this SQLite file and keep it (for bench/pg_copy.py)"
    )
    parser.add_argument("--database", help="measure billing on this existing database (file or URL)")
    args = parser.parse_args()
    if args.roll_up_only:
        started = time.perf_counter()
        days = asyncio.run(roll_up(args.roll_up_only, leave_last_day=True))
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            json.dumps(
                {
                    "days": days,
                    "seconds": round(time.perf_counter() - started, 1),
                    "peak_rss_mb": round(peak_mb),
                }
            )
        )
        return
    if args.database:
        billing_figures(args.database, Path(tempfile.mkdtemp()))
        return
    if args.export_only:
        db, out, kind = args.export_only[0], Path(args.export_only[1]), args.export_only[2]
        started = time.perf_counter()
        count = asyncio.run(export(db, out, kind))
        seconds = time.perf_counter() - started
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            json.dumps(
                {
                    "rows": count,
                    "seconds": round(seconds, 1),
                    "peak_rss_mb": round(peak_mb),
                    "file_mb": round(out.stat().st_size / 2**20, 1),
                }
            )
        )
        return
    with tempfile.TemporaryDirectory() as folder:
        db = args.keep or Path(folder) / "bench.db"
        started = time.perf_counter()
        seed(db, args.contacts)
        print(f"seeded {args.contacts} contacts in {time.perf_counter() - started:.0f} s", flush=True)
        for kind, name in (("contacts", "contacts.xlsx"), ("contacts", "contacts.csv")):
            out = Path(folder) / name
            print(
                f"{kind:9} {out.suffix:6} {_measure(['--export-only', str(db), str(out), kind])}", flush=True
            )
        billing_figures(str(db), Path(folder))


def billing_figures(db: str, folder: Path) -> None:
    """Billing before any roll-up, the roll-up itself, then billing in steady state (all days rolled up but
    the last one, which is counted from the contacts, as "today" is)."""
    for name in ("billing.xlsx", "billing.csv"):
        out = folder / name
        print(
            f"billing, nothing rolled up {out.suffix:6} {_measure(['--export-only', db, str(out), 'billing'])}"
        )
    print(f"roll-up of the period         {_measure(['--roll-up-only', db])}", flush=True)
    for name in ("billing.xlsx", "billing.csv"):
        out = folder / name
        print(
            f"billing, steady state      {out.suffix:6} {_measure(['--export-only', db, str(out), 'billing'])}"
        )


if __name__ == "__main__":
    main()
