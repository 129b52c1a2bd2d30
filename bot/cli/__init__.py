"""`fieldcheck` command line: run the bot (polling or webhook), migrate, sandbox, forget; `admin`, `report`,
`voice` and `speech` live in their own modules."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from bot.cli.admin import admin_app
from bot.cli.common import load_settings, run_admin
from bot.cli.report import report_app
from bot.cli.speech import speech_app
from bot.cli.voice import voice_app
from bot.cli.web import web as web_command
from bot.logs import setup_logging
from infra.settings import Settings
from infra.storage import create_audio_store
from services import health as health_service
from services.privacy import forget_person, forget_redis_states

app = typer.Typer(
    help="Fieldcheck: review of promoters' customer contacts through Telegram.",
    no_args_is_help=False,
    add_completion=False,
)
app.add_typer(admin_app, name="admin")
app.add_typer(voice_app, name="voice")
app.add_typer(report_app, name="report")
app.add_typer(speech_app, name="speech")
app.command("web")(web_command)


@app.callback(invoke_without_command=True)
def main_callback(ctx: typer.Context) -> None:
    """With no command: `run`."""
    if ctx.invoked_subcommand is None:
        run()


@app.command()
def run() -> None:
    """Run the bot with long polling; without BOT_TOKEN, run the offline sandbox instead."""
    settings = load_settings()
    if settings.bot_token is None:
        typer.echo("BOT_TOKEN is not set: starting the offline sandbox (see README).", err=True)
        sandbox()
        return
    from bot.app import run_polling  # noqa: PLC0415  keeps the CLI's start fast

    asyncio.run(run_polling(settings))


@app.command()
def health() -> None:
    """Database reachable, outbox and inbox not stuck: prints JSON; exit status 1 when something is wrong."""
    from infra.db import create_engine  # noqa: PLC0415  keeps the CLI's start fast
    from services.unit_of_work import create_database  # noqa: PLC0415  keeps the CLI's start fast

    settings = load_settings()

    async def go() -> dict[str, Any]:
        # The command's Database as every process makes one, but not run_database's: no migration, which
        # would fail on the unreachable database this command is there to report.
        db = create_database(create_engine(settings.database_url))
        try:
            async with db.sessions() as session:
                return await health_service.report(session)
        except Exception as exc:
            return {"ok": False, "problems": ["database unreachable"], "database": type(exc).__name__}
        finally:
            await db.close()

    body = asyncio.run(go())
    typer.echo(json.dumps(body, indent=2))
    raise typer.Exit(0 if body["ok"] else 1)


@app.command()
def webhook() -> None:
    """Run the bot behind a webhook (WEBHOOK_BASE_URL, WEBHOOK_SECRET)."""
    from bot.app import run_webhook  # noqa: PLC0415  keeps the CLI's start fast

    asyncio.run(run_webhook(load_settings()))


@app.command()
def migrate(
    revision: Annotated[str, typer.Argument(help="target revision")] = "head",
    down: Annotated[bool, typer.Option("--down", help="downgrade to REVISION instead")] = False,
) -> None:
    """Bring the database schema to a revision (default: the newest)."""
    from bot import migrate as migrations  # noqa: PLC0415  keeps the CLI's start fast

    settings = load_settings()
    if down:
        migrations.downgrade(settings.database_url, revision)
    else:
        migrations.upgrade(settings.database_url, revision)
    typer.echo(f"database at {'downgraded to' if down else 'upgraded to'} {revision}")


@app.command()
def sandbox(
    out: Annotated[
        Path | None, typer.Option(help="where the sandbox keeps its database and artefacts")
    ] = None,
    serve: Annotated[
        bool, typer.Option("--serve", help="keep serving the web console afterwards, until Ctrl-C")
    ] = False,
) -> None:
    """Offline demo: Bot API stand-in, bot and scheduler on SQLite, scripted users; prints transcripts, and
    the web console's address with a one-time sign-in link for the sandbox's manager."""
    from sandbox.demo import fresh_dir, run_sandbox  # noqa: PLC0415  keeps the CLI's start fast

    settings = Settings()
    out_dir = out or settings.sandbox_dir
    fresh_dir(out_dir)
    # The terminal shows the transcript and warnings; the whole log is kept beside the other artefacts.
    setup_logging(
        settings.log_level, settings.log_format, console_level="WARNING", file=out_dir / "fieldcheck.log"
    )
    result = asyncio.run(run_sandbox(out_dir, wipe=False))
    typer.echo(result.transcript)
    typer.echo("\nWhat happened:")
    for note in result.notes:
        typer.echo(f"- {note}")
    if result.console_address:
        typer.echo(f"\nWeb console (served during the run): {result.console_address}")
        if result.console_link:
            typer.echo(f"Sign in as the sandbox's manager (one-time link): {result.console_link}")
        if result.screenshot is None:
            typer.echo(
                "No screenshot of the dashboard (no chromium or Playwright, or it failed: see the log)"
            )
    typer.echo(f"\nArtefacts (database, files, transcript.txt, fieldcheck.log): {out_dir}")
    if serve and result.console_address:
        _serve_sandbox_console(out_dir, result.console_address)
    elif result.console_address:
        typer.echo("To open the console now: `fieldcheck sandbox --serve` (plays again, then keeps serving)")


def _serve_sandbox_console(out_dir: Path, address: str) -> None:
    """The console again on the same address, over the finished sandbox's database, until Ctrl-C."""
    from sandbox.demo import sandbox_settings  # noqa: PLC0415  keeps the CLI's start fast
    from web.app import serve as serve_console  # noqa: PLC0415  keeps the CLI's start fast

    where = urlsplit(address)
    settings = sandbox_settings(out_dir).model_copy(
        update={"web_host": where.hostname or "127.0.0.1", "web_port": where.port or 8090}
    )
    settings.configure_data_keys()
    typer.echo(f"Serving the web console at {address} until Ctrl-C")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_console(settings))


@app.command()
def forget(
    telegram_id: int,
    yes: Annotated[bool, typer.Option("--yes", help="erase without asking")] = False,
) -> None:
    """Erase one person on request (a customer, a promoter, any member): recordings, voiceprints, personal
    answers, name and Telegram id; their contacts stay, anonymous, for billing. Prints what was erased."""
    if not yes:
        typer.confirm(
            f"Erase everything personal about Telegram id {telegram_id}? This cannot be undone", abort=True
        )
    settings = load_settings()

    async def go(session: AsyncSession) -> str:
        erased = await forget_person(session, create_audio_store(settings), telegram_id)
        if settings.redis_url:
            erased.conversation_states += await forget_redis_states(settings.redis_url, telegram_id)
        return "\n".join(
            [f"erased for Telegram id {telegram_id}:", *(f"  {line}" for line in erased.lines())]
        )

    typer.echo(run_admin(go))


def main() -> None:
    app()
