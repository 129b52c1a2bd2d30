"""Dispatch benchmark: 10,000 queued contacts, 30 reviewers on shift.

Measures (1) planning one dispatch round and writing the cards to the outbox, and (2) sending through the
Bot API stand-in over HTTP with the production rate limiter, checking the limits held. Sending all 20,000
messages (voice + card each) at Telegram's ~30 msg/s takes over 11 minutes, so the send phase runs for a
fixed window and the total is extrapolated from the measured rate.

    .venv/bin/python bench/dispatch_bench.py [--contacts 10000] [--reviewers 30] [--send-seconds 20]
                                             [--database-url postgresql+asyncpg://...]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.utils.i18n import I18n
from sqlalchemy import func, insert, select

from bot.migrate import upgrade
from infra.db import create_engine
from jobs.outbox import OutboxSender
from models import (
    Audio,
    AudioKind,
    Contact,
    ContactStatus,
    Membership,
    Organisation,
    OutboxMessage,
    Project,
    Role,
    User,
)
from models.base import utcnow
from services.review import assign_queued
from services.unit_of_work import create_database
from telegram_standin import StandIn
from telegram_ui.cards import enqueue_card
from telegram_ui.i18n import create_i18n

TOKEN = "777:bench"


async def seed(session_factory, contacts: int, reviewers: int, file_id: str, capacity: int | None) -> int:  # type: ignore[no-untyped-def]
    now = utcnow()
    async with session_factory() as session, session.begin():
        org = Organisation(name="Bench")
        session.add(org)
        await session.flush()
        capacity = capacity or -(-contacts // reviewers)  # default: every contact fits in one round
        project = Project(organisation_id=org.id, name="Bench", max_open_cards=capacity)
        session.add(project)
        users = [User(telegram_id=10_000 + i, first_name=f"R{i}", locale="en") for i in range(reviewers + 1)]
        session.add_all(users)
        await session.flush()
        promoter = users[-1]
        session.add_all(
            Membership(user_id=u.id, project_id=project.id, role=Role.REVIEWER, on_shift=True)
            for u in users[:-1]
        )
        rows = [
            {
                "project_id": project.id,
                "promoter_id": promoter.id,
                "form_answers": {"product": "tea"},
                "status": ContactStatus.QUEUED,
                "priority": (7 if n % 50 == 0 else 0),
                "calibration": False,
                "submitted_at": now,
                "queued_at": now - dt.timedelta(seconds=contacts - n),
                "created_at": now,
                "updated_at": now,
            }
            for n in range(contacts)
        ]
        await session.execute(insert(Contact), rows)
        ids = list(await session.scalars(select(Contact.id).order_by(Contact.id)))
        await session.execute(
            insert(Audio),
            [
                {
                    "contact_id": cid,
                    "owner_id": promoter.id,
                    "kind": AudioKind.DIALOGUE,
                    "storage_key": f"k{cid}",
                    "sha256": f"{cid:064d}",
                    "duration_seconds": 60.0,
                    "size_bytes": 1000,
                    "telegram_file_id": file_id,
                    "created_at": now,
                    "updated_at": now,
                }
                for cid in ids
            ],
        )
        return project.id


async def main(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="fc-bench-"))
    url = args.database_url or f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
    await asyncio.to_thread(upgrade, url)
    db = create_database(create_engine(url))
    engine, sessions = db.writer, db.sessions
    i18n: I18n = create_i18n("en")
    async with StandIn(files_dir=workdir / "tg") as tg:
        voice = workdir / "v.ogg"
        voice.write_bytes(b"OggS" + bytes(2000))
        file_id = tg.upload(voice)
        for i in range(args.reviewers):
            tg.user(10_000 + i, f"R{i}", token=TOKEN, language_code="en")
        project_id = await seed(sessions, args.contacts, args.reviewers, file_id, args.capacity)

        started = time.perf_counter()
        async with sessions() as session, session.begin():
            project = await session.get(Project, project_id)
            assert project is not None
            assignments = await assign_queued(session, project)
        planned = time.perf_counter()
        async with sessions() as session, session.begin():
            for assignment in assignments:
                await enqueue_card(session, i18n, assignment)
        enqueued = time.perf_counter()
        async with sessions() as session:
            queued_messages = int(await session.scalar(select(func.count()).select_from(OutboxMessage)) or 0)
        print(f"database: {engine.dialect.name}; contacts {args.contacts}, reviewers {args.reviewers}")
        print(
            f"plan one round (assign {len(assignments)} of {args.contacts} queued): {planned - started:.2f} s"
        )
        print(f"write {queued_messages} outbox messages (cards + voices): {enqueued - planned:.2f} s")

        bot = Bot(TOKEN, session=AiohttpSession(api=tg.api_server))
        sender = OutboxSender(bot, db)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.call_later(args.send_seconds, stop.set)
        send_start = time.monotonic()
        await sender.drain(stop)
        elapsed = time.monotonic() - send_start
        await bot.session.close()

        times = [
            (t, chat) for t, method, chat in tg.world.call_times if method in ("sendMessage", "sendVoice")
        ]
        per_second: dict[int, int] = defaultdict(int)
        per_chat_gap: dict[str, float] = {}
        last: dict[str, float] = {}
        for t, chat in times:
            per_second[int(t - send_start)] += 1
            if chat in last:
                gap = t - last[chat]
                per_chat_gap[chat] = min(per_chat_gap.get(chat, gap), gap)
            last[chat] = t
        rate = sender.sent / elapsed if elapsed else 0.0
        print(
            f"sent {sender.sent} messages in {elapsed:.1f} s: {rate:.1f} msg/s "
            f"(limit 30/s overall, 1/s per chat: at most {min(30, args.reviewers)}/s here)"
        )
        print(
            f"busiest second: {max(per_second.values()) if per_second else 0} messages; "
            f"shortest gap in one chat: {min(per_chat_gap.values()) if per_chat_gap else 0:.3f} s"
        )
        if rate:
            print(
                f"projected time to send all {queued_messages}: {queued_messages / rate / 60:.1f} min "
                f"(floor at 30 msg/s: {queued_messages / 30 / 60:.1f} min)"
            )
    await engine.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--contacts", type=int, default=10_000)
    parser.add_argument("--reviewers", type=int, default=30)
    parser.add_argument("--send-seconds", type=float, default=20.0)
    parser.add_argument("--database-url", default=None)
    parser.add_argument(
        "--capacity", type=int, default=None, help="open cards per reviewer (default: all fit)"
    )
    asyncio.run(main(parser.parse_args()))
