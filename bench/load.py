"""Intake under load: N promoters filling the form and sending voice notes through the Bot API stand-in to
one real bot process (`python -m bot run`, its scheduler and outbox included) for a while.

    .venv/bin/python bench/load.py [--promoters 200] [--rate 20] [--seconds 180] [--database sqlite|postgres]

Each promoter joins by invite, then starts contacts at random times so that together they send `--rate`
voice notes a second: the form (five questions and a phone number, seven updates), then a distinct
12-second voice note. Reported: voice notes through per second, time from the voice note to its receipt
(p50/p99), time from a form answer to the next question while uploads run (p99), errors in the bot's log
("database is locked" among them), contacts counted in the database against voice notes sent, and the bot
process's peak RSS. The driver (the stand-in and the scripted promoters) runs in this process, beside the
bot, on the same 2 cores: the figures are for the machine as a whole. No reviewers rate during the run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TOKEN = "123456:load-token"


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(args: argparse.Namespace) -> None:
    from sqlalchemy import func, select

    from bot import demo_audio
    from bot.config import PROJECT_ROOT
    from bot.migrate import upgrade_async
    from models import Contact, Role
    from services import invites, projects
    from services.db import create_engine, create_session_factory
    from telegram_standin import StandIn
    from telegram_standin.driver import UserClient, message_text

    work = Path(tempfile.mkdtemp(prefix="fieldcheck-load-"))
    if args.database == "postgres":
        import asyncpg

        name = f"load_{os.getpid()}"
        admin = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
        url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    else:
        url = f"sqlite+aiosqlite:///{work / 'load.db'}"
    await upgrade_async(url)
    engine = create_engine(url)
    sessions = create_session_factory(engine)
    async with sessions() as session, session.begin():
        project = await projects.create_project(session, "Load", "Tasting", survey_enabled=False)
        invite = await invites.create_invite(session, project.id, Role.PROMOTER, max_uses=args.promoters)
    base = work / "note.ogg"
    await asyncio.to_thread(demo_audio.speech, base)
    note = base.read_bytes()

    async with StandIn(files_dir=work / "telegram") as tg:
        env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "ADMIN_IDS"}}
        env.update(
            BOT_TOKEN=TOKEN,
            TELEGRAM_API_URL=tg.base_url,
            DATABASE_URL=url,
            STORAGE_ROOT=str(work / "audio"),
            MIGRATE_ON_START="false",
            THROTTLE_RATE_PER_SECOND="50",
            THROTTLE_BURST="50",
            PYTHONPATH=str(PROJECT_ROOT),
            LOG_LEVEL="INFO",
            LOG_FORMAT="json",
        )
        log_path = work / "bot.log"
        with log_path.open("wb") as log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", "run", env=env, cwd=str(PROJECT_ROOT), stdout=log, stderr=log
            )
            await tg.wait_until(lambda: len(tg.calls("setMyCommands")) >= 2, 60)
            people: list[UserClient] = []
            for n in range(args.promoters):
                person = tg.user(100_000 + n, f"P{n}", token=TOKEN, language_code="en")
                await person.send_command("start", f"inv_{invite.code}")
                people.append(person)
            for person in people:
                await person.expect("voice note of yourself", 60)
            print(f"{args.promoters} promoters joined", flush=True)

            receipts: list[float] = []
            done_at: list[float] = []
            reasons: dict[str, int] = {}
            steps: list[float] = []
            sent = failures = 0
            stop_at = time.monotonic() + args.seconds
            interval = args.promoters / args.rate  # seconds between one promoter's contacts

            async def step(person: UserClient, action: object, expect: str) -> None:
                started = time.monotonic()
                await action  # type: ignore[misc]
                try:
                    await person.wait_last(expect, 60)
                except AssertionError as exc:
                    raise AssertionError(
                        f"waiting for {expect!r}: {message_text(person.last())[:60]!r}"
                    ) from exc
                steps.append(time.monotonic() - started)

            async def promoter(person: UserClient) -> None:
                nonlocal sent, failures
                await asyncio.sleep(random.uniform(0, interval))
                while time.monotonic() < stop_at:
                    began = time.monotonic()
                    try:
                        await step(person, person.send_text("➕ New contact"), "1/5")
                        await step(person, person.press(person.last(), "Coffee"), "2/5")
                        await step(person, person.press(person.last(), "25–45"), "3/5")
                        await step(person, person.press(person.last(), "Yes"), "4/5")
                        await step(person, person.send_text("2"), "5/5")
                        await step(
                            person,
                            person.press(person.last(), "Yes, the customer agreed"),
                            "Type the customer",
                        )
                        await step(person, person.send_text("+7 912 345-67-89"), "Now send the recording")
                        path = work / f"{person.id}-{sent}.ogg"
                        path.write_bytes(note + random.randbytes(16))
                        started = time.monotonic()
                        sent += 1
                        await person.send_voice(path)
                        await person.expect("received", 60)
                        receipts.append(time.monotonic() - started)
                        done_at.append(time.monotonic())
                    except AssertionError as exc:
                        failures += 1
                        reasons[str(exc)[:80]] = reasons.get(str(exc)[:80], 0) + 1
                    await asyncio.sleep(max(0.0, interval - (time.monotonic() - began)))

            started = time.monotonic()
            await asyncio.gather(*(promoter(p) for p in people))
            elapsed = (max(done_at) if done_at else time.monotonic()) - started
            status = Path(f"/proc/{proc.pid}/status").read_text()
            peak_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))
            proc.terminate()
            await proc.wait()
    async with sessions() as session:
        contacts = int(await session.scalar(select(func.count()).select_from(Contact)) or 0)
    await engine.dispose()
    text = log_path.read_text(errors="replace")
    errors = text.count('"level": "error"') + text.count("Traceback")
    locked = text.count("database is locked")
    print(
        f"database {args.database}, {args.promoters} promoters, target {args.rate}/s, {args.seconds} s\n"
        f"voice notes: {sent} sent, {len(receipts)} receipts, {contacts} contacts in the database, "
        f"{failures} not completed {reasons or ''}\n"
        f"throughput: {len(receipts) / elapsed:.1f} voice notes/s\n"
        f"voice note -> receipt: p50 {statistics.median(receipts) if receipts else float('nan'):.2f} s, "
        f"p99 {pct(receipts, 0.99):.2f} s\n"
        f"form answer -> next question while uploads run: p50 {pct(steps, 0.5) * 1000:.0f} ms, "
        f"p99 {pct(steps, 0.99) * 1000:.0f} ms\n"
        f"errors in the bot log: {errors}, 'database is locked': {locked}\n"
        f"bot process peak RSS: {peak_kb / 1024:.0f} MB",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--promoters", type=int, default=200)
    parser.add_argument(
        "--rate", type=float, default=20.0, help="voice notes a second, all promoters together"
    )
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
