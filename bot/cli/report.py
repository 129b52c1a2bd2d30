"""`fieldcheck report`: the managers' reports from a shell (a day's digest, a period, billing, contacts)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from bot.cli.admin import export_file, period_report
from bot.cli.common import FormatOption, FromOption, OutOption, ToOption

report_app = typer.Typer(
    help="Managers' reports from the command line: a day's digest, a period, billing, every contact.",
    no_args_is_help=True,
)


@report_app.command("digest")
def report_digest(
    project_id: int,
    day: Annotated[str | None, typer.Option(help="local day, YYYY-MM-DD (default: yesterday)")] = None,
    lang: Annotated[str, typer.Option(help="ru or en")] = "ru",
) -> None:
    """The daily digest of one local day, as plain text."""
    chosen = day or (dt.date.today() - dt.timedelta(days=1)).isoformat()
    period_report(project_id, None, None, chosen, lang)


@report_app.command("period")
def report_period(
    project_id: int,
    start: FromOption = None,
    end: ToOption = None,
    lang: Annotated[str, typer.Option()] = "ru",
) -> None:
    """The /report of a period (default: the last 7 days): figures, promoters, stores."""
    period_report(project_id, start, end, None, lang)


def _file_command(kind: str, help_text: str) -> None:
    """Register `report <kind>`: billing and contacts files take the same options (a period, default the last
    30 days, a format and a path), so one command body serves both."""

    def command(
        project_id: int,
        start: FromOption = None,
        end: ToOption = None,
        fmt: FormatOption = "xlsx",
        out: OutOption = None,
    ) -> None:
        if fmt not in ("xlsx", "csv"):
            raise typer.BadParameter("--format must be xlsx or csv")
        today = dt.date.today()
        first = start or (today - dt.timedelta(days=30)).isoformat()
        last = end or (today - dt.timedelta(days=1)).isoformat()
        export_file(project_id, out or Path(f"{kind}-{project_id}-{first}-{last}.{fmt}"), kind, first, last)

    command.__name__ = f"report_{kind}"
    command.__doc__ = help_text
    report_app.command(kind)(command)


_file_command(
    "billing",
    "Validated contacts per local day, promoter and store (default: the last 30 days), with a total.",
)
_file_command("contacts", "Every contact of a period, streamed (progress on stderr).")
