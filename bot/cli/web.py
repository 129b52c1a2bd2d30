"""`fieldcheck web`: the managers' web console (web/), served on its own."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated

import typer

from bot.cli.common import load_settings


def web(
    host: Annotated[str | None, typer.Option(help="listen here instead of WEB_HOST")] = None,
    port: Annotated[int | None, typer.Option(help="listen here instead of WEB_PORT")] = None,
    migrate: Annotated[bool, typer.Option(help="bring the schema up to date first")] = True,
) -> None:
    """Serve the web console (Contacts, a contact, Dashboard, Reviewers, Alerts) at /console/; open it from
    the bot (/console gives a one-time link, or the Mini App button when WEB_PUBLIC_URL is https)."""
    from bot.migrate import upgrade  # noqa: PLC0415  keeps the CLI's start fast
    from web.app import serve  # noqa: PLC0415  keeps the CLI's start fast

    settings = load_settings()
    if settings.bot_token is None:
        typer.echo("error: BOT_TOKEN is needed: the console checks Telegram's signatures with it", err=True)
        raise typer.Exit(2)
    changes = {k: v for k, v in {"web_host": host, "web_port": port}.items() if v is not None}
    settings = settings.model_copy(update=changes)
    if migrate:
        upgrade(settings.database_url)
    settings.configure_data_keys()

    def ready(address: str) -> None:
        typer.echo(f"console at {address}", err=True)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings, ready=ready))
