"""`fieldcheck admin`: projects, invites, forms, scorecards and settings without Telegram."""

from __future__ import annotations

import datetime as dt
import json
import re
from html import unescape
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from zoneinfo import ZoneInfo

import typer
import yaml
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.cli.common import FileArgument, load_settings, run_admin, run_database
from models import Assignment, NpsScale, Role, User
from models.base import utcnow
from services import forms, invites, projects, scorecard
from services.projects import get_project, set_senior

if TYPE_CHECKING:
    from infra.db import Database

admin_app = typer.Typer(help="Administration without Telegram: projects and invites.", no_args_is_help=True)


@admin_app.command("create-project")
def create_project(organisation: str, name: str, timezone: str = "Europe/Moscow") -> None:
    """Create a project (and its organisation if new)."""

    async def go(session: AsyncSession) -> str:
        project = await projects.create_project(session, organisation, name, timezone=timezone)
        return f"project #{project.id}: {organisation} / {project.name}"

    typer.echo(run_admin(go))


@admin_app.command("list-projects")
def list_projects() -> None:
    """List projects."""

    async def go(session: AsyncSession) -> str:
        found = await projects.list_projects(session)
        return "\n".join(f"#{p.id}\t{p.organisation.name}\t{p.name}" for p in found) or "no projects"

    typer.echo(run_admin(go))


@admin_app.command("invite")
def invite(
    project_id: int,
    role: Annotated[Role, typer.Argument(case_sensitive=False)],
    uses: Annotated[int, typer.Option(min=1)] = 1,
    days: Annotated[int, typer.Option(min=1)] = 7,
    bot_username: Annotated[str, typer.Option(help="for the printed deep link")] = "your_bot",
) -> None:
    """Create an invite and print its deep link."""

    async def go(session: AsyncSession) -> str:
        created = await invites.create_invite(
            session, project_id, role, max_uses=uses, ttl=dt.timedelta(days=days)
        )
        return invites.deep_link(bot_username, created)

    typer.echo(run_admin(go))


@admin_app.command("set-form")
def set_form(project_id: int, path: FileArgument) -> None:
    """Replace a project's contact form with the one in a YAML or JSON file (validated first)."""
    try:
        schema = forms.load_form_file(path)
    except forms.FormSchemaError as exc:
        typer.echo(f"error: the form in {path} is not valid:\n{exc}", err=True)
        raise typer.Exit(2) from exc

    async def go(session: AsyncSession) -> str:
        await projects.set_form(session, project_id, schema)
        return f"project #{project_id}: form with {len(schema.questions)} questions saved"

    typer.echo(run_admin(go))


@admin_app.command("show-form")
def show_form(project_id: int) -> None:
    """Print a project's contact form as YAML (the default form if none was set)."""

    async def go(session: AsyncSession) -> str:
        project = await projects.get_project(session, project_id)
        if project is None:
            raise ValueError(f"no project {project_id}")
        schema = forms.parse_form(project.form_schema or forms.DEFAULT_FORM)
        return yaml.safe_dump(
            schema.model_dump(mode="json", exclude_defaults=True), allow_unicode=True, sort_keys=False
        )

    typer.echo(run_admin(go))


@admin_app.command("set-scorecard")
def set_scorecard(project_id: int, path: FileArgument) -> None:
    """Replace a project's scorecard with the one in a YAML or JSON file (validated first)."""

    text = path.read_text(encoding="utf-8")
    try:
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        card = scorecard.parse_scorecard(raw)
    except (ValueError, yaml.YAMLError, scorecard.ScorecardError) as exc:
        typer.echo(f"error: the scorecard in {path} is not valid:\n{exc}", err=True)
        raise typer.Exit(2) from exc

    async def go(session: AsyncSession) -> str:
        project = await projects.get_project(session, project_id)
        if project is None:
            raise ValueError(f"no project {project_id}")
        project.scorecard = card.model_dump(mode="json", exclude_defaults=True)
        return f"project #{project_id}: scorecard with {len(card.criteria)} criteria saved"

    typer.echo(run_admin(go))


@admin_app.command("configure")
def configure(
    project_id: int,
    reviewers_chat: Annotated[int | None, typer.Option(help="reviewers' group chat id (0: none)")] = None,
    managers_chat: Annotated[int | None, typer.Option(help="managers' group chat id (0: none)")] = None,
    sla_minutes: Annotated[int | None, typer.Option(min=1)] = None,
    max_open_cards: Annotated[int | None, typer.Option(min=1)] = None,
    calibration_share: Annotated[float | None, typer.Option(min=0.0, max=1.0)] = None,
    dispute_window_hours: Annotated[int | None, typer.Option(min=0)] = None,
    min_audio_seconds: Annotated[int | None, typer.Option(min=1)] = None,
    max_audio_seconds: Annotated[int | None, typer.Option(min=1)] = None,
    timezone: Annotated[str | None, typer.Option(help="IANA name, e.g. Europe/Moscow")] = None,
    rereview_time: Annotated[str | None, typer.Option(help="HH:MM in the project's timezone")] = None,
    analysis_wait_minutes: Annotated[
        int | None, typer.Option(min=0, help="how long review waits for voice flags (0: not at all)")
    ] = None,
    nps_scale: Annotated[str | None, typer.Option(help="customer survey scale: 0-10 or 3-point")] = None,
    surveys: Annotated[
        bool | None, typer.Option("--surveys/--no-surveys", help="QR survey on receipts")
    ] = None,
    survey_ttl_hours: Annotated[int | None, typer.Option(min=1, help="how long a survey link works")] = None,
    survey_cooldown_days: Annotated[
        int | None,
        typer.Option(min=0, help="one customer account is surveyed at most once in this many days"),
    ] = None,
    survey_thanks: Annotated[
        bool | None,
        typer.Option("--survey-thanks/--no-survey-thanks", help="thank a detractor once resolved"),
    ] = None,
    survey_question_ru: Annotated[str | None, typer.Option(help="the project's own survey question")] = None,
    survey_question_en: Annotated[str | None, typer.Option(help="the project's own survey question")] = None,
    client_survey_months: Annotated[
        int | None, typer.Option(min=0, help="survey client contacts every N months (0: never)")
    ] = None,
    client_survey_time: Annotated[str | None, typer.Option(help="HH:MM local time of client surveys")] = None,
    sla_alert_after: Annotated[
        int | None,
        typer.Option(min=1, help="alert managers when a contact timed out with N reviewers in a row"),
    ] = None,
    rejections_alert_after: Annotated[
        int | None, typer.Option(min=0, help="alert on a promoter's N rejections in a row (0: never)")
    ] = None,
    backlog_alert_size: Annotated[
        int | None,
        typer.Option(min=0, help="alert when N voice analyses wait past the analysis wait (0: never)"),
    ] = None,
    idle_alert_minutes: Annotated[
        int | None,
        typer.Option(min=0, help="alert on a reviewer on shift with no review for N minutes (0: never)"),
    ] = None,
    retention_days: Annotated[
        int | None,
        typer.Option(
            min=1, help="keep recordings and personal answers this many days (an hourly job purges)"
        ),
    ] = None,
    speech: Annotated[
        bool | None,
        typer.Option(
            "--speech/--no-speech", help="recognise speech and check the script in the voice worker"
        ),
    ] = None,
    speech_products: Annotated[
        str | None, typer.Option(help="product names the script check listens for, comma-separated")
    ] = None,
    speech_routing: Annotated[
        bool | None,
        typer.Option(
            "--speech-routing/--no-speech-routing",
            help="decide clear contacts automatically from the speech analysis; the rest go to people",
        ),
    ] = None,
    audit_share: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="share of contacts routing sends to people anyway, to audit it"),
    ] = None,
    criterion_bar: Annotated[
        float | None,
        typer.Option(
            min=0.0, max=1.0, help="audit agreement on a criterion below which it goes back to people (0.9)"
        ),
    ] = None,
    criterion_min_pairs: Annotated[
        int | None, typer.Option(min=1, help="audited contacts a criterion is judged on, either way (20)")
    ] = None,
    cut_pauses: Annotated[
        bool | None,
        typer.Option(
            "--cut-pauses/--no-cut-pauses",
            help="send reviewers the recording with pauses over 1.5 s cut (the original stays for managers)",
        ),
    ] = None,
    approve_share: Annotated[
        float | None,
        typer.Option(
            min=0.0, max=1.0, help="share of the script done for an automatic approval (0.6: 3 of 5)"
        ),
    ] = None,
    reject_share: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="share of the script done at or under which it is rejected (0.5); between the two, a person",
        ),
    ] = None,
) -> None:
    """Change a project's review settings; prints them all."""

    if timezone:
        ZoneInfo(timezone)  # fails clearly on an unknown zone
    if nps_scale and nps_scale not in {s.value for s in NpsScale}:
        raise typer.BadParameter(f"--nps-scale must be one of {', '.join(s.value for s in NpsScale)}")
    changes = {
        "reviewers_chat_id": None if reviewers_chat == 0 else reviewers_chat,
        "managers_chat_id": None if managers_chat == 0 else managers_chat,
        "review_sla_minutes": sla_minutes,
        "max_open_cards": max_open_cards,
        "calibration_share": calibration_share,
        "dispute_window_hours": dispute_window_hours,
        "min_audio_seconds": min_audio_seconds,
        "max_audio_seconds": max_audio_seconds,
        "timezone": timezone,
        "rereview_time": dt.time.fromisoformat(rereview_time) if rereview_time else None,
        "analysis_wait_minutes": analysis_wait_minutes,
        "nps_scale": NpsScale(nps_scale) if nps_scale else None,
        "survey_enabled": surveys,
        "survey_ttl_hours": survey_ttl_hours,
        "survey_cooldown_days": survey_cooldown_days,
        "survey_thank_on_resolve": survey_thanks,
        "client_survey_months": client_survey_months,
        "client_survey_time": dt.time.fromisoformat(client_survey_time) if client_survey_time else None,
        "sla_expiries_before_alert": sla_alert_after,
        "rejections_before_alert": rejections_alert_after,
        "backlog_alert_size": backlog_alert_size,
        "idle_alert_minutes": idle_alert_minutes,
        "retention_days": retention_days,
    }
    given = {"reviewers_chat_id": reviewers_chat, "managers_chat_id": managers_chat}
    question = {k: v for k, v in (("ru", survey_question_ru), ("en", survey_question_en)) if v is not None}
    speech_changes: dict[str, Any] = {} if speech is None else {"enabled": speech}
    if speech_products is not None:
        speech_changes["products"] = [name.strip() for name in speech_products.split(",") if name.strip()]
    if speech_routing is not None:
        speech_changes["routing"] = speech_routing
    if audit_share is not None:
        speech_changes["audit_share"] = audit_share
    if criterion_bar is not None:
        speech_changes["criterion_bar"] = criterion_bar
    if criterion_min_pairs is not None:
        speech_changes["criterion_min_pairs"] = criterion_min_pairs
    if cut_pauses is not None:
        speech_changes["cut_pauses"] = cut_pauses
    verdict = {
        k: v for k, v in (("approve_share", approve_share), ("reject_share", reject_share)) if v is not None
    }
    if verdict:
        speech_changes["verdict"] = verdict

    async def go(session: AsyncSession) -> str:
        cleared = frozenset(field for field, value in given.items() if value == 0)
        project = await projects.configure(
            session, project_id, changes, clear=cleared, survey_question=question, speech=speech_changes
        )
        shown = [*changes, "survey_question", "speech_settings"]
        return "\n".join(f"{field}: {getattr(project, field)}" for field in shown)

    typer.echo(run_admin(go))


@admin_app.command("nps")
def nps_report(
    project_id: int,
    days: Annotated[int, typer.Option(min=1, help="contacts submitted in the last N days")] = 30,
    by: Annotated[str, typer.Option(help="project, promoter or store")] = "promoter",
) -> None:
    """Customer NPS (% promoters - % detractors), response rate and verbatims, per promoter or store."""
    from services.surveys import nps_figures  # noqa: PLC0415  keeps the CLI's start fast

    if by not in ("project", "promoter", "store"):
        raise typer.BadParameter("--by must be project, promoter or store")

    async def go(session: AsyncSession) -> str:
        end = utcnow()
        rows = await nps_figures(
            session, project_id, end - dt.timedelta(days=days), end, by=None if by == "project" else by
        )
        lines = [
            f"{'':24} {'NPS':>6} {'answers':>8} {'surveys':>8} {'rate':>6}  promoters/passives/detractors"
        ]
        for row in rows:
            nps = "—" if row.nps is None else f"{row.nps:+.0f}"
            rate = "—" if row.response_rate is None else f"{row.response_rate:.0%}"
            lines.append(
                f"{(row.key or 'project')[:24]:24} {nps:>6} {row.responses:>8} {row.surveys:>8} {rate:>6}  "
                f"{row.promoters}/{row.passives}/{row.detractors}"
            )
            lines += [f"    {category}: {text[:200]}" for category, text in row.verbatims]
        return "\n".join(lines) if rows else f"no surveys in the last {days} days"

    typer.echo(run_admin(go))


@admin_app.command("export")
def export_file(
    project_id: int,
    out: Annotated[Path, typer.Argument(dir_okay=False, help="file to write (.xlsx or .csv)")],
    kind: Annotated[
        str, typer.Option(help="billing (validated contacts per promoter, store, day) or contacts")
    ] = "billing",
    start: Annotated[
        str | None, typer.Option("--from", help="first local day, YYYY-MM-DD (default: 30 days ago)")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", help="last local day, YYYY-MM-DD (default: yesterday)")
    ] = None,
) -> None:
    """Billing or every contact of a period as XLSX or CSV, streamed (progress on stderr)."""

    from services import billing as billing_rollups  # noqa: PLC0415  keeps the CLI's start fast
    from services import exports  # noqa: PLC0415  keeps the CLI's start fast

    if kind not in ("billing", "contacts"):
        raise typer.BadParameter("--kind must be billing or contacts")
    if out.suffix.lower() not in (".xlsx", ".csv"):
        raise typer.BadParameter("the file must end in .xlsx or .csv")
    today = dt.date.today()
    first = dt.date.fromisoformat(start) if start else today - dt.timedelta(days=30)
    last = dt.date.fromisoformat(end) if end else today - dt.timedelta(days=1)

    async def progress(rows: int) -> None:
        typer.echo(f"{rows} rows…", err=True)

    async def go(db: Database) -> str:
        async with db.sessions() as session:
            project = await get_project(session, project_id)
        if project is None:
            raise ValueError(f"no project {project_id}")
        billing = kind == "billing"
        columns = exports.BILLING_COLUMNS if billing else exports.CONTACT_COLUMNS
        sink: exports.Sink
        if out.suffix.lower() == ".xlsx":
            sink = exports.XlsxSink(out, kind, columns, 4 if billing else None)
        else:
            sink = exports.CsvSink(out, columns)
        if billing:  # the roll-up writes in transactions of its own
            await billing_rollups.refresh(db, project.id, first, last)
        async with db.reader() as connection:
            rows = (exports.billing_rows if billing else exports.contact_rows)(
                connection, project, first, last
            )
            count = await exports.export(rows, sink, progress)
        return f"{count} rows written to {out}"

    typer.echo(run_database(go))


@admin_app.command("report")
def period_report(
    project_id: int,
    start: Annotated[
        str | None, typer.Option("--from", help="first local day, YYYY-MM-DD (default: 7 days ago)")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", help="last local day, YYYY-MM-DD (default: today)")
    ] = None,
    digest_day: Annotated[
        str | None, typer.Option("--digest", help="print the daily digest of this local day instead")
    ] = None,
    lang: Annotated[str, typer.Option(help="ru or en")] = "ru",
) -> None:
    """The /report of a period (figures, promoters, stores) or a day's digest, as plain text."""

    from services import digest  # noqa: PLC0415  keeps the CLI's start fast
    from services.reports import build_report  # noqa: PLC0415  keeps the CLI's start fast
    from telegram_ui.cards import rendered  # noqa: PLC0415  keeps the CLI's start fast
    from telegram_ui.digest_cards import digest_text  # noqa: PLC0415  keeps the CLI's start fast
    from telegram_ui.i18n import create_i18n  # noqa: PLC0415  keeps the CLI's start fast
    from telegram_ui.report_cards import report_text  # noqa: PLC0415  keeps the CLI's start fast

    today = dt.date.today()
    first = dt.date.fromisoformat(start) if start else today - dt.timedelta(days=6)
    last = dt.date.fromisoformat(end) if end else today
    i18n = create_i18n(lang)

    async def go(db: Database) -> str:
        async with db.read_session() as reading:  # the bot's writers are not held up meanwhile
            project = await get_project(reading, project_id)
            if project is None:
                raise ValueError(f"no project {project_id}")
            if digest_day:
                built = await digest.build_digest(reading, project, dt.date.fromisoformat(digest_day))
                text = rendered(i18n, lang, digest_text, built)
            else:
                text = rendered(i18n, lang, report_text, await build_report(reading, project, first, last))
        return unescape(re.sub(r"<[^>]+>", "", text))

    typer.echo(run_database(go))


@admin_app.command("remove")
def remove(project_id: int, telegram_id: int, role: str) -> None:
    """Take a role in a project away from someone; a reviewer's open cards go back to the queue, and each card
    in their chat is edited (by the bot's outbox) to say it was taken back."""
    from services import people  # noqa: PLC0415  keeps the CLI's start fast
    from telegram_ui import cards  # noqa: PLC0415  keeps the CLI's start fast
    from telegram_ui.i18n import create_i18n  # noqa: PLC0415  keeps the CLI's start fast

    if role not in {r.value for r in Role}:
        raise typer.BadParameter(f"role must be one of {', '.join(r.value for r in Role)}")

    async def go(session: AsyncSession) -> str:
        project = await get_project(session, project_id)
        user = await session.scalar(select(User).where(User.telegram_id == telegram_id))
        if project is None or user is None:
            raise ValueError(f"no project {project_id} or no user {telegram_id}")
        i18n = create_i18n(load_settings().default_locale)  # the card is edited in the reviewer's language

        async def taken_back(assignment: Assignment) -> None:
            await cards.enqueue_card_closed(session, i18n, assignment, cards.CardClosed.TAKEN_BACK)

        returned = await people.remove_member(session, project, user, Role(role), on_taken_back=taken_back)
        return f"{user.display_name} is no longer {role} in {project.name}; {returned} open card(s) returned"

    typer.echo(run_admin(go))


@admin_app.command("senior")
def senior(project_id: int, telegram_id: int, off: Annotated[bool, typer.Option("--off")] = False) -> None:
    """Mark a reviewer as senior (daily re-reviews go to seniors), or unmark with --off."""

    async def go(session: AsyncSession) -> str:
        await set_senior(session, project_id, telegram_id, not off)
        return f"{telegram_id}: {'not ' if off else ''}senior in project #{project_id}"

    typer.echo(run_admin(go))
