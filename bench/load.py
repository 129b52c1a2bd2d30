"""Intake under load: N promoters filling the form and sending voice notes through the Bot API stand-in to
one real bot process (`python -m bot run`, its scheduler and outbox included) for a while.

    .venv/bin/python bench/load.py [--promoters 200] [--rate 20] [--seconds 180] [--database sqlite|postgres]
    .venv/bin/python bench/load.py --database postgres --processes 2 --redis --voice-workers 2 --promoters 500

With --processes N (PostgreSQL), N bot processes run in webhook mode behind a round-robin proxy in this
process (as behind a load balancer), the stand-in pushing updates over up to 40 connections, one queue per
chat (as Telegram does); one of them leads (scheduler and outbox). --redis keeps conversations in Redis;
--voice-workers M starts M `voice worker` processes and reports the analysis backlog and how fast it drains.

Each promoter joins by invite, then starts contacts at random times so that together they send `--rate`
voice notes a second: the form (five questions and a phone number, seven updates), then a distinct
12-second voice note. Reported: voice notes through per second, time from the voice note to its receipt
(p50/p99), time from a form answer to the next question while uploads run (p50/p99), errors in the bot's
log ("database is locked" among them), contacts counted in the database against voice notes sent, the
bot process's peak RSS, the CPU time of the bot and of the driver (per voice note, for the bot), and the
most messages sent or edited in any one second (Telegram answers 429 above about 30 a second per bot; the
bot's send budget, bot/send_budget.py, keeps it at 28, divided among --processes). The
driver (the stand-in and the scripted promoters) runs in this process, beside the bot, on the same 2 cores:
the figures are for the machine as a whole. No reviewers rate during the run.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.send_budget import DEFAULT_PER_SECOND, counts_as_message

TOKEN = "123456:load-token"
FORM = (  # (what the promoter does, what the bot shows next)
    ("text", "➕ New contact", "1/5"),
    ("press", "Coffee", "2/5"),
    ("press", "25–45", "3/5"),
    ("press", "Yes", "4/5"),
    ("text", "2", "5/5"),
    ("press", "Yes, the customer agreed", "Type the customer"),
    ("text", "+7 912 345-67-89", "Now send the recording"),
)


SECRET = "load-webhook-secret"


async def start_proxy(ports: list[int]) -> tuple[Any, int]:
    """Round-robin HTTP proxy to the bot processes' webhook servers (what a load balancer does)."""
    import itertools

    import aiohttp
    from aiohttp import web

    client = aiohttp.ClientSession()
    turn = itertools.cycle(ports)

    async def forward(request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower().startswith("x-telegram")}
        headers["Content-Type"] = "application/json"
        for _ in ports:  # a backend that is down is skipped, as a balancer's health check would
            port = next(turn)
            try:
                async with client.post(
                    f"http://127.0.0.1:{port}{request.path}", data=body, headers=headers
                ) as r:
                    return web.Response(status=r.status, body=await r.read())
            except aiohttp.ClientError:
                continue
        return web.Response(status=502)

    app = web.Application()
    app.router.add_post("/{path:.*}", forward)
    app.on_cleanup.append(lambda _app: client.close())
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


def peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM")) / 1024


def cpu_seconds(pid: int | None = None) -> float:
    """User plus system CPU time of a process so far (this one when pid is None), its finished child
    processes included (an ffmpeg it ran), from /proc."""
    fields = Path(f"/proc/{pid or 'self'}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def send_rate(calls: list[tuple[float, str, str]], prefixes: tuple[str, ...]) -> tuple[int, float]:
    """(most calls in any one second, shortest gap between two calls to one chat) for these methods."""
    sends = sorted((t, chat) for t, method, chat in calls if method.startswith(prefixes) and chat)
    busiest, start = 0, 0
    for end in range(len(sends)):
        while sends[end][0] - sends[start][0] >= 1.0:
            start += 1
        busiest = max(busiest, end - start + 1)
    last: dict[str, float] = {}
    gap = float("inf")
    for t, chat in sends:
        if chat in last:
            gap = min(gap, t - last[chat])
        last[chat] = t
    return busiest, gap


def message_rates(calls: list[tuple[float, str, str]]) -> tuple[int, int, float]:
    """From the stand-in's call log: the most messages sent or edited in any one second (what Telegram's
    ~30 a second per bot counts, bot/send_budget.py: answers and outbox together), the most new messages
    in any one second, and the shortest gap between two new messages to one chat."""
    messages = [call for call in calls if counts_as_message(call[1])]  # not sendChatAction
    busiest, gap = send_rate(messages, ("send",))
    return send_rate(messages, ("",))[0], busiest, gap


async def backlog(url: str) -> dict[str, int]:
    from sqlalchemy import func, select

    from infra.db import create_engine
    from models import AnalysisTask
    from services.unit_of_work import create_session_factory

    engine = create_engine(url)
    async with create_session_factory(engine)() as session:
        rows = await session.execute(select(AnalysisTask.state, func.count()).group_by(AnalysisTask.state))
        counts = {str(state.value if hasattr(state, "value") else state): int(n) for state, n in rows.all()}
    await engine.dispose()
    return counts


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Tally:
    receipts: list[float] = field(default_factory=list)  # seconds from voice note to receipt
    done_at: list[float] = field(default_factory=list)
    steps: list[float] = field(default_factory=list)  # seconds from a form answer to the next question
    sent: int = 0
    reasons: dict[str, int] = field(default_factory=dict)  # contacts not completed, by what was awaited


async def prepare(args: argparse.Namespace, work: Path) -> tuple[str, str]:
    """A fresh database with one project and an invite for everyone; returns (url, invite code)."""
    from bot.migrate import upgrade_async
    from infra.db import create_engine
    from models import Role
    from services import invites, projects
    from services.unit_of_work import create_session_factory

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
    async with create_session_factory(engine)() as session, session.begin():
        project = await projects.create_project(session, "Load", "Tasting", survey_enabled=False)
        invite = await invites.create_invite(session, project.id, Role.PROMOTER, max_uses=args.promoters)
    await engine.dispose()
    return url, invite.code


class Note(NamedTuple):
    data: bytes
    seconds: int  # probed once: the stand-in's driver would otherwise run ffprobe for every voice note


async def make_note(work: Path) -> Note:
    from sandbox import demo_audio
    from telegram_standin.driver import probe_duration

    await asyncio.to_thread(demo_audio.speech, work / "note.ogg")
    return Note((work / "note.ogg").read_bytes(), probe_duration(work / "note.ogg"))


async def promoter(person: Any, note: Note, work: Path, args: argparse.Namespace, tally: Tally) -> None:
    from telegram_standin.driver import message_text

    interval = args.promoters / args.rate  # seconds between one promoter's contacts
    stop_at = time.monotonic() + args.seconds
    await asyncio.sleep(random.uniform(0, interval))
    while time.monotonic() < stop_at:
        began = time.monotonic()
        awaited = ""
        try:
            for kind, what, awaited in FORM:
                started = time.monotonic()
                await (person.send_text(what) if kind == "text" else person.press(person.last(), what))
                await person.wait_last(awaited, 60)
                tally.steps.append(time.monotonic() - started)
            path = work / f"{person.id}-{tally.sent}.ogg"
            path.write_bytes(note.data + random.randbytes(16))  # a distinct file: not a resend
            awaited, started = "received", time.monotonic()
            tally.sent += 1
            await person.send_voice(path, duration=note.seconds)
            await person.skip_to("received", 60)
            tally.receipts.append(time.monotonic() - started)
            tally.done_at.append(time.monotonic())
        except AssertionError:
            reason = f"waiting for {awaited!r}, last: {message_text(person.last())[:50]!r}"
            tally.reasons[reason] = tally.reasons.get(reason, 0) + 1
        await asyncio.sleep(max(0.0, interval - (time.monotonic() - began)))


class Started(NamedTuple):
    procs: list[asyncio.subprocess.Process]
    workers: list[asyncio.subprocess.Process]
    logs: list[Any]
    proxy: Any


async def start_processes(args: argparse.Namespace, api_url: str, url: str, work: Path) -> Started:
    """The bot processes (polling, or webhook behind the proxy) and the voice workers."""
    from infra.settings import PROJECT_ROOT

    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "ADMIN_IDS"}}
    env.update(
        BOT_TOKEN=TOKEN,
        TELEGRAM_API_URL=api_url,
        DATABASE_URL=url,
        STORAGE_ROOT=str(work / "audio"),
        MIGRATE_ON_START="false",
        THROTTLE_RATE_PER_SECOND="50",
        THROTTLE_BURST="50",
        PYTHONPATH=str(PROJECT_ROOT),
        LOG_LEVEL="INFO",
        LOG_FORMAT="json",
        # one budget per bot, divided among its processes (docs/deploy.md)
        SEND_BUDGET_PER_SECOND=str(max(1, DEFAULT_PER_SECOND // args.processes)),
    )
    if args.redis:
        from redis.asyncio import Redis

        redis = Redis.from_url("redis://127.0.0.1:6379/11")
        await redis.flushdb()
        await redis.aclose()
        env["REDIS_URL"] = "redis://127.0.0.1:6379/11"
    logs: list[Any] = []

    async def spawn(name: str, *command: str, **extra_env: str) -> asyncio.subprocess.Process:
        """`python -m bot <command>` with the common environment, its output in <name>.log under work."""
        log = (work / f"{name}.log").open("wb")
        logs.append(log)
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            *command,
            env={**env, **extra_env},
            cwd=str(PROJECT_ROOT),
            stdout=log,
            stderr=log,
        )

    procs: list[asyncio.subprocess.Process] = []
    proxy = None
    if args.processes > 1:
        ports = [18_080 + n for n in range(args.processes)]
        proxy, proxy_port = await start_proxy(ports)
        for n, port in enumerate(ports):
            webhook = {
                "WEBHOOK_BASE_URL": f"http://127.0.0.1:{proxy_port}",
                "WEBHOOK_SECRET": SECRET,
                "WEBHOOK_PORT": str(port),
                "WEBHOOK_HOST": "127.0.0.1",
                "LEADER_ELECTION": "true",
            }
            procs.append(await spawn(f"bot{n}", "webhook", **webhook))
    else:
        procs.append(await spawn("bot0", "run"))
    workers = [await spawn(f"worker{n}", "voice", "worker") for n in range(args.voice_workers)]
    return Started(procs, workers, logs, proxy)


async def run(args: argparse.Namespace) -> None:
    from infra.db import create_engine
    from models import Contact
    from services.unit_of_work import create_session_factory
    from telegram_standin import StandIn

    work = Path(tempfile.mkdtemp(prefix="fieldcheck-load-"))
    url, code = await prepare(args, work)
    note = await make_note(work)
    tally = Tally()
    async with StandIn(files_dir=work / "telegram") as tg:
        procs, workers, logs, proxy = await start_processes(args, tg.base_url, url, work)
        await tg.wait_until(lambda: len(tg.calls("setMyCommands")) >= 2 * args.processes, 120)
        people = [
            tg.user(100_000 + n, f"P{n}", token=TOKEN, language_code="en") for n in range(args.promoters)
        ]
        for person in people:
            await person.send_command("start", f"inv_{code}")
        for person in people:
            await person.skip_to("voice note of yourself", 120)
        print(f"{args.promoters} promoters joined", flush=True)
        calls_before = len(tg.world.call_times)
        cpu_before = [cpu_seconds(p.pid) for p in procs], cpu_seconds()
        started = time.monotonic()
        await asyncio.gather(*(promoter(p, note, work, args, tally) for p in people))
        elapsed = (max(tally.done_at) if tally.done_at else time.monotonic()) - started
        wall = time.monotonic() - started
        bot_cpu = sum(cpu_seconds(p.pid) for p in procs) - sum(cpu_before[0])
        driver_cpu = cpu_seconds() - cpu_before[1]
        calls = tg.world.call_times[calls_before:]
        peak, busiest, gap = message_rates(calls)
        per_method: dict[str, int] = {}
        for _t, method, _chat in calls:
            per_method[method] = per_method.get(method, 0) + 1
        edits, _ = send_rate(calls, ("edit", "answerCallbackQuery"))  # answers to presses, in place
        drain = []
        if workers:
            for _ in range(int(args.drain_seconds // 10)):
                counts = await backlog(url)
                drain.append((round(time.monotonic() - started), counts))
                if not counts.get("pending") and not counts.get("running"):
                    break
                await asyncio.sleep(10)
        rss = [peak_rss_mb(p.pid) for p in procs]
        worker_rss = [peak_rss_mb(p.pid) for p in workers]
        for process in procs + workers:
            process.terminate()
        for process in procs + workers:
            await process.wait()
        if proxy is not None:
            await proxy.cleanup()
        for log in logs:
            log.close()
    engine = create_engine(url)
    async with create_session_factory(engine)() as session:
        contacts = int(await session.scalar(select(func.count()).select_from(Contact)) or 0)
    await engine.dispose()
    text = "".join(path.read_text(errors="replace") for path in sorted(work.glob("bot*.log")))
    errors = text.count('"level": "error"') + text.count("Traceback")
    r = tally.receipts
    print(
        f"database {args.database}, {args.promoters} promoters, target {args.rate}/s, {args.seconds} s\n"
        f"voice notes: {tally.sent} sent, {len(r)} receipts, {contacts} contacts in the database; "
        f"not completed: {sum(tally.reasons.values())} {tally.reasons or ''}\n"
        f"throughput: {len(r) / elapsed:.1f} voice notes/s\n"
        f"voice note -> receipt: p50 {statistics.median(r) if r else float('nan'):.2f} s, p99 {pct(r, 0.99):.2f} s\n"
        f"form answer -> next question: p50 {pct(tally.steps, 0.5) * 1000:.0f} ms, "
        f"p99 {pct(tally.steps, 0.99) * 1000:.0f} ms\n"
        f"CPU over {wall:.0f} s: bot {bot_cpu:.1f} s ({bot_cpu / wall:.0%} of a core), "
        f"{bot_cpu * 1000 / max(1, len(r)):.0f} ms per voice note (form included); "
        f"driver {driver_cpu:.1f} s ({driver_cpu / wall:.0%})\n"
        f"errors in the bot log: {errors}, "
        f"'database is locked': {text.count('database is locked')}\n"
        f"messages sent or edited (Telegram's limit, ~30/s): at most {peak} in any second "
        f"({'within' if peak < 30 else 'OVER'} the limit; budget {DEFAULT_PER_SECOND}/s per bot)\n"
        f"new messages: at most {busiest} in any second, shortest gap in one chat {gap:.3f} s; "
        f"edits and press answers: at most {edits} in any second\n"
        f"Bot API calls per voice note: {len(calls) / max(1, len(r)):.1f} ("
        + ", ".join(
            f"{m} {n / max(1, len(r)):.1f}" for m, n in sorted(per_method.items(), key=lambda kv: -kv[1])
        )
        + ")\n"
        f"bot processes ({args.processes}, {'webhook' if args.processes > 1 else 'polling'}"
        f"{', Redis' if args.redis else ''}) peak RSS: {', '.join(f'{r:.0f} MB' for r in rss)}"
        + (
            f"\nvoice workers ({len(workers)}) peak RSS: {', '.join(f'{r:.0f} MB' for r in worker_rss)}"
            if workers
            else ""
        )
        + "".join(f"\nanalysis backlog at {t} s: {c}" for t, c in drain),
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
    parser.add_argument("--processes", type=int, default=1, help="bot processes (webhook mode when > 1)")
    parser.add_argument("--redis", action="store_true", help="conversations in Redis")
    parser.add_argument("--voice-workers", type=int, default=0)
    parser.add_argument(
        "--worker-nice", type=int, default=10, help="voice workers' nice value (docs/deploy.md: Nice=10)"
    )
    parser.add_argument("--drain-seconds", type=float, default=300.0, help="how long to watch the backlog")
    args = parser.parse_args()
    if args.processes > 1 and args.database != "postgres":
        parser.error("several bot processes need PostgreSQL (SQLite stays one process)")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
