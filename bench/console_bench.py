"""The web console's queries at scale (issue #26): p50/p95 of the contacts page with each filter, the
dashboard, the reviewers page and a contact, on SQLite and on PostgreSQL.

    .venv/bin/python bench/console_bench.py [--contacts 1000000] [--runs 30] [--backend sqlite|postgres|both]
        [--pg-url postgresql://postgres@127.0.0.1:5432/bench_console] [--only dashboard,client]
        [--reuse FILE] [--no-rollup] [--live-too]

Data: synthetic, written straight with sqlite3 (bulk inserts) into a fresh database brought up by Alembic,
then copied into PostgreSQL by bench/pg_copy.py (COPY): 10 projects, 1,000 promoters, 50 reviewers,
contacts spread over the last 365 days, 85% with a verdict (80% approved, 12% rejected, 8% fraud) and
its review (a rejection's with a comment), 3% with a voice flag, 10% with a customer's answer, 1% disputed,
200 stores. The queries are the
application's own (services/console.py), run as the pages run them, as a manager of one project and as
the global admin; each case is timed `--runs` times after one warm-up.

Before measuring, the dashboard's roll-up is built on each engine as the scheduler builds it
(jobs.housekeeping.roll_up_dashboard: the last 92 closed days of every project), and its time printed;
`--no-rollup` skips it (every day then reads the contacts, as before the roll-up), and `--live-too` times
each dashboard case a second time with the roll-up ignored (`console.dashboard(rollup=False)`), for a
before/after under the same load. `--reuse FILE` measures an SQLite file kept by `--keep` instead of
seeding anew (migrated to the current schema first).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

PROJECTS, PROMOTERS, REVIEWERS, STORES = 10, 1000, 50, 200
FMT = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy writes a DateTime on SQLite
COMMENTS = ("No offer to buy", "Presentation too short", "No greeting", "The coffee was cold", "Rude")


def seed(db: Path, contacts: int, now: dt.datetime) -> None:
    from bot.migrate import upgrade

    upgrade(f"sqlite+aiosqlite:///{db}")
    con = sqlite3.connect(db)
    _seed_people(con, now.strftime(FMT))
    _seed_contacts(con, contacts, now)


def _seed_people(con: sqlite3.Connection, ts: str) -> None:
    """The organisation, its ten projects, their promoters, reviewers and one manager each."""
    con.execute(
        "INSERT INTO organisation (id, name, created_at, updated_at) VALUES (1, 'Bench', ?, ?)", (ts, ts)
    )
    con.executemany(
        "INSERT INTO project (id, organisation_id, name, is_active, timezone, digest_time, rereview_time, scorecard,"
        " form_schema, review_sla_minutes, max_open_cards, sla_expiries_before_alert, analysis_wait_minutes,"
        " calibration_share, dispute_window_hours, min_audio_seconds, max_audio_seconds, nps_scale,"
        " voice_thresholds, retention_days, created_at, updated_at, muted_alerts, rejections_before_alert,"
        " backlog_alert_size, idle_alert_minutes, survey_enabled, survey_ttl_hours, survey_cooldown_days,"
        " survey_thank_on_resolve, survey_question, client_survey_months, client_survey_time, speech_settings)"
        " VALUES (?, 1, ?, 1, 'Europe/Moscow', '09:00:00.000000', '10:00:00.000000', '{}', '{}', 15, 3, 3, 10,"
        " 0.05, 48, 10, 1800, '0-10', '{}', 365, ?, ?, '[]', 5, 200, 60, 1, 72, 30, 1, '{}', 0,"
        " '11:00:00.000000', '{}')",
        [(p, f"Project {p}", ts, ts) for p in range(1, PROJECTS + 1)],
    )
    people = PROMOTERS + REVIEWERS + PROJECTS
    con.executemany(
        "INSERT INTO user_account (id, telegram_id, first_name, is_blocked, created_at, updated_at)"
        " VALUES (?, ?, ?, 0, ?, ?)",
        [(i, 100_000 + i, f"Person {i}", ts, ts) for i in range(1, people + 1)],
    )
    members = [(i, i % PROJECTS + 1, "promoter") for i in range(1, PROMOTERS + 1)]
    members += [(PROMOTERS + j, j % PROJECTS + 1, "reviewer") for j in range(1, REVIEWERS + 1)]
    members += [(PROMOTERS + REVIEWERS + k, k, "manager") for k in range(1, PROJECTS + 1)]
    con.executemany(
        "INSERT INTO membership (user_id, project_id, role, is_active, on_shift, is_senior, created_at, updated_at)"
        " VALUES (?, ?, ?, 1, 1, 0, ?, ?)",
        [(*m, ts, ts) for m in members],
    )


def _seed_contacts(con: sqlite3.Connection, contacts: int, now: dt.datetime) -> None:
    """The contacts with their reviews, flags, customers' answers, and a thousand alerts."""
    ts = now.strftime(FMT)
    rng = random.Random(26)
    started = time.perf_counter()
    contact_rows, assignment_rows, review_rows, flag_rows, survey_rows, answer_rows = [], [], [], [], [], []
    dispute_rows: list[tuple[Any, ...]] = []

    def flush() -> None:
        con.executemany(
            "INSERT INTO contact (id, project_id, promoter_id, form_answers, status, priority, calibration, score,"
            " final_verdict, submitted_at, queued_at, reviewed_at, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?)",
            contact_rows,
        )
        con.executemany(
            "INSERT INTO assignment (id, contact_id, reviewer_id, kind, status, attempt, assigned_at, closed_at,"
            " draft_marks, created_at, updated_at) VALUES (?, ?, ?, 'primary', 'done', 1, ?, ?, '{}', ?, ?)",
            assignment_rows,
        )
        con.executemany(
            "INSERT INTO review (assignment_id, contact_id, reviewer_id, marks, score, verdict, comment,"
            " created_at, updated_at) VALUES (?, ?, ?, '{}', ?, ?, ?, ?, ?)",
            review_rows,
        )
        con.executemany(
            "INSERT INTO dispute (contact_id, promoter_id, reason, status, created_at, updated_at)"
            " VALUES (?, ?, 'the customer was real', 'open', ?, ?)",
            dispute_rows,
        )
        con.executemany(
            "INSERT INTO voice_flag (contact_id, kind, score, matched_contact_ids, details, alerted, created_at,"
            " updated_at) VALUES (?, ?, 0.9, '[]', '{}', 0, ?, ?)",
            flag_rows,
        )
        con.executemany(
            "INSERT INTO nps_survey (id, contact_id, project_id, token, scale, status, answered_at, created_at,"
            " updated_at) VALUES (?, ?, ?, ?, '0-10', 'answered', ?, ?, ?)",
            survey_rows,
        )
        con.executemany(
            "INSERT INTO nps_answer (survey_id, score, category, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
            answer_rows,
        )
        for batch in (
            contact_rows,
            assignment_rows,
            review_rows,
            flag_rows,
            survey_rows,
            answer_rows,
            dispute_rows,
        ):
            batch.clear()

    flags = ("no_customer", "customer_is_promoter", "repeated_customer", "duplicate_recording", "low_speech")
    for cid in range(1, contacts + 1):
        promoter = rng.randrange(1, PROMOTERS + 1)
        project = promoter % PROJECTS + 1
        submitted = now - dt.timedelta(seconds=rng.randrange(0, 365 * 86400))
        s = submitted.strftime(FMT)
        answers = json.dumps({"store": f"Store {rng.randrange(1, STORES + 1)}", "product": "coffee"})
        reviewed = rng.random() < 0.85
        verdict = rng.choices(("approve", "reject", "fraud"), (80, 12, 8))[0] if reviewed else None
        score = {"approve": 90.0, "reject": 40.0, "fraud": 0.0}[verdict] if verdict else None
        done = (submitted + dt.timedelta(minutes=rng.randrange(2, 40))).strftime(FMT)
        contact_rows.append(
            (
                cid,
                project,
                promoter,
                answers,
                "final" if reviewed else "queued",
                int(rng.random() < 0.05),
                score,
                verdict,
                s,
                s,
                done if reviewed else None,
                s,
                s,
            )
        )
        if reviewed:
            reviewer = PROMOTERS + 1 + (project - 1) + PROJECTS * rng.randrange(0, REVIEWERS // PROJECTS)
            assignment_rows.append((cid, cid, reviewer, s, done, s, done))
            comment = rng.choice(COMMENTS) if verdict == "reject" else None
            review_rows.append((cid, cid, reviewer, score, verdict, comment, done, done))
            if rng.random() < 0.01:
                dispute_rows.append((cid, promoter, done, done))
        if rng.random() < 0.03:
            flag_rows.append((cid, rng.choice(flags), s, s))
        if rng.random() < 0.10:
            nps = rng.randrange(0, 11)
            category = "promoter" if nps >= 9 else "passive" if nps >= 7 else "detractor"
            survey_rows.append((cid, cid, project, f"t{cid}", done, s, done))
            answer_rows.append((cid, nps, category, done, done))
        if cid % 50_000 == 0:
            flush()
    flush()
    con.executemany(
        "INSERT INTO manager_alert (project_id, kind, status, details, created_at, updated_at)"
        " VALUES (?, 'fraud', ?, '{}', ?, ?)",
        [(p % PROJECTS + 1, "resolved" if p % 3 else "open", ts, ts) for p in range(1, 1001)],
    )
    con.commit()
    con.execute("ANALYZE")
    con.close()
    print(f"seeded {contacts:,} contacts in {time.perf_counter() - started:.0f} s", flush=True)


def cases(today: dt.date) -> list[tuple[str, str, dict[str, Any]]]:
    """(name, who, what): `who` is "manager" (project 1) or "admin" (all ten)."""
    week, month = today - dt.timedelta(days=6), today - dt.timedelta(days=29)
    return [
        ("contacts: 7 days", "manager", {"start": week}),
        ("contacts: 30 days, verdict fraud", "manager", {"start": month, "verdict": "fraud"}),
        ("contacts: 30 days, store", "manager", {"start": month, "store": "Store 17"}),
        ("contacts: 30 days, promoter", "manager", {"start": month, "promoter_id": 11}),
        ("contacts: 30 days, reviewer", "manager", {"start": month, "reviewer_id": PROMOTERS + 10}),
        ("contacts: 30 days, any flag", "manager", {"start": month, "flag": "any"}),
        ("contacts: 30 days, no verdict yet", "manager", {"start": month, "verdict": "none"}),
        ("contacts: 30 days, lowest score", "manager", {"start": month, "sort": "score"}),
        ("contacts: 30 days, disputed", "manager", {"start": month, "dispute": "yes"}),
        ("contacts: 30 days, NPS detractor", "manager", {"start": month, "nps": "detractor"}),
        ("contacts: 30 days, no NPS answer", "manager", {"start": month, "nps": "none"}),
        ("contacts: 30 days, text 'cold'", "manager", {"start": month, "text": "cold"}),
        ("contacts: 30 days, text found nowhere", "manager", {"start": month, "text": "nowhere said"}),
        ("contacts: 30 days, page 20", "manager", {"start": month, "page": 20}),
        ("contacts: 30 days, decided automatically", "manager", {"start": month, "routed": "automatic"}),
        ("contacts: 30 days, decided by people", "manager", {"start": month, "routed": "person"}),
        (
            "contacts: 365 days, store + fraud",
            "manager",
            {"start": today - dt.timedelta(days=364), "store": "Store 17", "verdict": "fraud"},
        ),
        ("contacts: admin, 7 days, all projects", "admin", {"start": week}),
        ("contacts: admin, 30 days, any flag", "admin", {"start": month, "flag": "any"}),
        ("dashboard: 14 days", "manager", {"dashboard": 14}),
        ("dashboard: 30 days", "manager", {"dashboard": 30}),
        ("dashboard: 90 days", "manager", {"dashboard": 90}),
        ("dashboard: admin, 14 days", "admin", {"dashboard": 14}),
        ("dashboard: admin, 90 days", "admin", {"dashboard": 90}),
        ("client page: 6 months", "manager", {"client": 6}),
        ("client page: admin, 12 months", "admin", {"client": 12}),
        ("reviewers: 30 days", "manager", {"reviewers": 30}),
        ("a contact", "manager", {"contact": True}),
    ]


async def roll_up(url: str, now: dt.datetime) -> None:
    """Build the dashboard's roll-up as the scheduled job does, and say how long it took."""
    from infra.db import create_engine
    from jobs import housekeeping
    from services.unit_of_work import create_database

    engine = create_engine(url)
    started = time.perf_counter()
    try:
        days = await housekeeping.roll_up_dashboard(create_database(engine), now=now)
    finally:
        await engine.dispose()
    print(
        f"rolled up {days} project-days for the dashboard in {time.perf_counter() - started:.0f} s",
        flush=True,
    )


async def measure(
    url: str, runs: int, now: dt.datetime, only: list[str] | None = None, *, live_too: bool = False
) -> list[tuple[str, float, float]]:
    from sqlalchemy import select

    from infra.db import create_engine, read_session
    from models import Contact
    from services import console

    engine = create_engine(url)
    today = now.date()
    results = []
    try:
        async with read_session(engine) as db:
            manager = await console.viewer_for(db, 100_000 + PROMOTERS + REVIEWERS + 1, [])
            admin = await console.viewer_for(db, 100_000 + 1, [100_000 + 1])
            sample = await db.scalar(select(Contact.id).where(Contact.project_id == 1).limit(1))
        assert manager is not None and admin is not None and sample is not None
        chosen = []
        for name, who, what in cases(today):
            if only and not any(part in name for part in only):
                continue
            chosen.append((name, who, what))
            if live_too and "dashboard" in what:
                chosen.append((f"{name} (live)", who, {**what, "rollup": False}))
        for name, who, what in chosen:
            viewer = manager if who == "manager" else admin

            def call(db: Any, viewer: console.Viewer = viewer, what: dict[str, Any] = what) -> Awaitable[Any]:
                if "dashboard" in what:
                    return console.dashboard(
                        db, viewer, today, days=what["dashboard"], rollup=what.get("rollup", True)
                    )
                if "client" in what:
                    return console.client_view(db, viewer, now, months=what["client"])
                if "reviewers" in what:
                    return console.reviewer_lines(db, viewer, today, days=what["reviewers"])
                if "contact" in what:
                    return console.contact_detail(db, viewer, sample)
                return console.contact_page(db, viewer, console.ContactFilter(end=today, **what))

            results.append((name, *await _time(engine, call, runs)))
            print(f"  {name:45s} p50 {results[-1][1]:7.1f} ms  p95 {results[-1][2]:7.1f} ms", flush=True)
    finally:
        await engine.dispose()
    return results


async def _time(engine: Any, call: Callable[[Any], Awaitable[Any]], runs: int) -> tuple[float, float]:
    from infra.db import read_session

    timings = []
    for n in range(runs + 1):
        async with read_session(engine) as db:  # a fresh read per request, as the pages do
            started = time.perf_counter()
            await call(db)
            if n:  # the first run warms the caches
                timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    return statistics.median(timings), timings[min(len(timings) - 1, int(0.95 * len(timings)))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/bench_console")
    parser.add_argument("--keep", type=Path, help="keep the SQLite database here")
    parser.add_argument("--only", help="comma-separated parts of case names: run only those cases")
    parser.add_argument("--reuse", type=Path, help="measure this SQLite file (kept by --keep), no seeding")
    parser.add_argument("--no-rollup", action="store_true", help="do not build the dashboard's roll-up")
    parser.add_argument("--live-too", action="store_true", help="time the dashboard without the roll-up too")
    args = parser.parse_args()
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    only = args.only.split(",") if args.only else None
    with tempfile.TemporaryDirectory() as folder:
        db = args.reuse or args.keep or Path(folder) / "console_bench.db"
        if args.reuse:
            from bot.migrate import upgrade

            upgrade(f"sqlite+aiosqlite:///{db}")
        else:
            seed(db, args.contacts, now)
        aware = now.replace(tzinfo=dt.UTC)
        if args.backend in ("sqlite", "both"):
            url = f"sqlite+aiosqlite:///{db}"
            if not args.no_rollup:
                asyncio.run(roll_up(url, aware))
            print(f"SQLite, {args.contacts:,} contacts:", flush=True)
            asyncio.run(measure(url, args.runs, aware, only, live_too=args.live_too))
        if args.backend in ("postgres", "both"):
            import pg_copy

            pg_copy.TABLES = (  # type: ignore[attr-defined]
                "organisation",
                "project",
                "user_account",
                "membership",
                "contact",
                "assignment",
                "review",
                "voice_flag",
                "nps_survey",
                "nps_answer",
                "dispute",
                "manager_alert",
            )
            asyncio.run(pg_copy.copy(db, args.pg_url))
            url = args.pg_url.replace("postgresql://", "postgresql+asyncpg://", 1)
            if not args.no_rollup:
                asyncio.run(roll_up(url, aware))
            print(f"PostgreSQL, {args.contacts:,} contacts:", flush=True)
            asyncio.run(measure(url, args.runs, aware, only, live_too=args.live_too))


if __name__ == "__main__":
    main()
