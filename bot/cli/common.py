"""What the command line's parts share: settings from the environment, admin work in one transaction."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.logs import setup_logging
from infra.settings import Settings
from services.projects import ProjectError

if TYPE_CHECKING:
    from infra.db import Database

T = TypeVar("T")


def load_settings() -> Settings:
    try:
        settings = Settings()
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]).upper()
            typer.echo(f"error in the settings{f' ({where})' if where else ''}: {error['msg']}", err=True)
        raise typer.Exit(2) from exc
    setup_logging(settings.log_level, settings.log_format)
    return settings


FromOption = Annotated[str | None, typer.Option("--from", help="first local day, YYYY-MM-DD")]

ToOption = Annotated[str | None, typer.Option("--to", help="last local day, YYYY-MM-DD")]

FormatOption = Annotated[str, typer.Option("--format", help="xlsx or csv")]

# An existing file given on the command line (a form, a scorecard, a recording).
FileArgument = Annotated[Path, typer.Argument(exists=True, dir_okay=False)]

# The promoter's own voice for the analysis commands: their enrolment recording, the reference.
PromoterOption = Annotated[
    Path | None,
    typer.Option(exists=True, dir_okay=False, help="the promoter's enrolment recording (reference)"),
]

OutOption = Annotated[
    Path | None, typer.Option("--out", help="file to write (default: KIND-PROJECT-FROM-TO.FORMAT)")
]


def run_admin(go: Callable[[AsyncSession], Awaitable[str]]) -> str:
    """Migrate, then run one administrative action in one committed transaction."""

    async def in_session(db: Database) -> str:
        async with db.sessions() as session, session.begin():
            return await go(session)

    return run_database(in_session)


def run_database(go: Callable[[Database], Awaitable[T]], settings: Settings | None = None) -> T:
    """Migrate, then run one action with the command's Database (made here, closed when it ends): for what
    opens transactions of its own or reads beside the writers (exports, reports, the voice worker). A
    command that has read its settings already passes them."""
    from bot.migrate import upgrade  # noqa: PLC0415  keeps the CLI's start fast
    from infra.db import create_engine  # noqa: PLC0415  keeps the CLI's start fast
    from services.unit_of_work import create_database  # noqa: PLC0415  keeps the CLI's start fast

    settings = settings or load_settings()
    upgrade(settings.database_url)
    settings.configure_data_keys()

    async def with_database() -> T:
        db = create_database(create_engine(settings.database_url))
        try:
            return await go(db)
        finally:
            await db.close()

    try:
        return asyncio.run(with_database())
    except (ValueError, ProjectError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
