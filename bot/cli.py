"""`fieldcheck` command line: run the bot (polling or webhook), migrate, sandbox, administration."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, cast

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Settings
from bot.logs import setup_logging
from models import Role
from services.projects import ProjectError

app = typer.Typer(
    help="Fieldcheck: review of promoters' customer contacts through Telegram.",
    no_args_is_help=False,
    add_completion=False,
)
admin_app = typer.Typer(help="Administration without Telegram: projects and invites.", no_args_is_help=True)
app.add_typer(admin_app, name="admin")
voice_app = typer.Typer(
    help="Speaker verification: analyse, compare, run the analysis worker.", no_args_is_help=True
)
app.add_typer(voice_app, name="voice")
report_app = typer.Typer(
    help="Managers' reports from the command line: a day's digest, a period, billing, every contact.",
    no_args_is_help=True,
)
app.add_typer(report_app, name="report")


def _settings() -> Settings:
    from pydantic import ValidationError

    try:
        settings = Settings()
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]).upper()
            typer.echo(f"error in the settings{f' ({where})' if where else ''}: {error['msg']}", err=True)
        raise typer.Exit(2) from exc
    setup_logging(settings.log_level, settings.log_format)
    return settings


@app.callback(invoke_without_command=True)
def main_callback(ctx: typer.Context) -> None:
    """With no command: `run`."""
    if ctx.invoked_subcommand is None:
        run()


@app.command()
def run() -> None:
    """Run the bot with long polling; without BOT_TOKEN, run the offline sandbox instead."""
    settings = _settings()
    if settings.bot_token is None:
        typer.echo("BOT_TOKEN is not set: starting the offline sandbox (see README).", err=True)
        sandbox()
        return
    from bot.app import run_polling

    asyncio.run(run_polling(settings))


@app.command()
def health() -> None:
    """Database reachable, outbox and inbox not stuck: prints JSON; exit status 1 when something is wrong."""
    import json

    from services import health as health_service
    from services.db import create_engine, create_session_factory

    settings = _settings()

    async def go() -> dict[str, Any]:
        engine = create_engine(settings.database_url)
        try:
            async with create_session_factory(engine)() as session:
                return await health_service.report(session)
        except Exception as exc:
            return {"ok": False, "problems": ["database unreachable"], "database": type(exc).__name__}
        finally:
            await engine.dispose()

    body = asyncio.run(go())
    typer.echo(json.dumps(body, indent=2))
    raise typer.Exit(0 if body["ok"] else 1)


@app.command()
def webhook() -> None:
    """Run the bot behind a webhook (WEBHOOK_BASE_URL, WEBHOOK_SECRET)."""
    from bot.app import run_webhook

    asyncio.run(run_webhook(_settings()))


@app.command()
def migrate(
    revision: Annotated[str, typer.Argument(help="target revision")] = "head",
    down: Annotated[bool, typer.Option("--down", help="downgrade to REVISION instead")] = False,
) -> None:
    """Bring the database schema to a revision (default: the newest)."""
    from bot import migrate as migrations

    settings = _settings()
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
) -> None:
    """Offline demo: Bot API stand-in, bot and scheduler on SQLite, scripted users; prints transcripts."""
    from bot.sandbox import fresh_dir, run_sandbox

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
    typer.echo(f"\nArtefacts (database, files, transcript.txt, fieldcheck.log): {out_dir}")


@admin_app.command("create-project")
def create_project(organisation: str, name: str, timezone: str = "Europe/Moscow") -> None:
    """Create a project (and its organisation if new)."""
    from services import projects

    async def go(session: AsyncSession) -> str:
        project = await projects.create_project(session, organisation, name, timezone=timezone)
        return f"project #{project.id}: {organisation} / {project.name}"

    typer.echo(_run_admin(go))


@admin_app.command("list-projects")
def list_projects() -> None:
    """List projects."""
    from services import projects

    async def go(session: AsyncSession) -> str:
        found = await projects.list_projects(session)
        return "\n".join(f"#{p.id}\t{p.organisation.name}\t{p.name}" for p in found) or "no projects"

    typer.echo(_run_admin(go))


@admin_app.command("invite")
def invite(
    project_id: int,
    role: Annotated[Role, typer.Argument(case_sensitive=False)],
    uses: Annotated[int, typer.Option(min=1)] = 1,
    days: Annotated[int, typer.Option(min=1)] = 7,
    bot_username: Annotated[str, typer.Option(help="for the printed deep link")] = "your_bot",
) -> None:
    """Create an invite and print its deep link."""
    from services import invites

    async def go(session: AsyncSession) -> str:
        created = await invites.create_invite(
            session, project_id, role, max_uses=uses, ttl=dt.timedelta(days=days)
        )
        return invites.deep_link(bot_username, created)

    typer.echo(_run_admin(go))


@admin_app.command("set-form")
def set_form(project_id: int, path: Annotated[Path, typer.Argument(exists=True, dir_okay=False)]) -> None:
    """Replace a project's contact form with the one in a YAML or JSON file (validated first)."""
    from services import forms, projects

    try:
        schema = forms.load_form_file(path)
    except forms.FormSchemaError as exc:
        typer.echo(f"error: the form in {path} is not valid:\n{exc}", err=True)
        raise typer.Exit(2) from exc

    async def go(session: AsyncSession) -> str:
        await projects.set_form(session, project_id, schema)
        return f"project #{project_id}: form with {len(schema.questions)} questions saved"

    typer.echo(_run_admin(go))


@admin_app.command("show-form")
def show_form(project_id: int) -> None:
    """Print a project's contact form as YAML (the default form if none was set)."""
    import yaml

    from services import forms, projects

    async def go(session: AsyncSession) -> str:
        project = await projects.get_project(session, project_id)
        if project is None:
            raise ValueError(f"no project {project_id}")
        schema = forms.parse_form(project.form_schema or forms.DEFAULT_FORM)
        return yaml.safe_dump(
            schema.model_dump(mode="json", exclude_defaults=True), allow_unicode=True, sort_keys=False
        )

    typer.echo(_run_admin(go))


@admin_app.command("set-scorecard")
def set_scorecard(
    project_id: int, path: Annotated[Path, typer.Argument(exists=True, dir_okay=False)]
) -> None:
    """Replace a project's scorecard with the one in a YAML or JSON file (validated first)."""
    import json

    import yaml

    from services import projects, scorecard

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

    typer.echo(_run_admin(go))


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
) -> None:
    """Change a project's review settings; prints them all."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    from models import NpsScale
    from services import projects

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

    async def go(session: AsyncSession) -> str:
        cleared = frozenset(field for field, value in given.items() if value == 0)
        project = await projects.configure(
            session, project_id, changes, clear=cleared, survey_question=question
        )
        shown = [*changes, "survey_question"]
        return "\n".join(f"{field}: {getattr(project, field)}" for field in shown)

    typer.echo(_run_admin(go))


@admin_app.command("nps")
def nps_report(
    project_id: int,
    days: Annotated[int, typer.Option(min=1, help="contacts submitted in the last N days")] = 30,
    by: Annotated[str, typer.Option(help="project, promoter or store")] = "promoter",
) -> None:
    """Customer NPS (% promoters - % detractors), response rate and verbatims, per promoter or store."""
    import datetime as dt

    from models.base import utcnow
    from services.surveys import nps_figures

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

    typer.echo(_run_admin(go))


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
    import datetime as dt

    from sqlalchemy.ext.asyncio import AsyncEngine

    from services import billing as billing_rollups
    from services import db, exports
    from services.projects import get_project

    if kind not in ("billing", "contacts"):
        raise typer.BadParameter("--kind must be billing or contacts")
    if out.suffix.lower() not in (".xlsx", ".csv"):
        raise typer.BadParameter("the file must end in .xlsx or .csv")
    today = dt.date.today()
    first = dt.date.fromisoformat(start) if start else today - dt.timedelta(days=30)
    last = dt.date.fromisoformat(end) if end else today - dt.timedelta(days=1)

    async def progress(rows: int) -> None:
        typer.echo(f"{rows} rows…", err=True)

    async def go(session: AsyncSession) -> str:
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
        engine = session.bind
        assert isinstance(engine, AsyncEngine)
        await session.commit()  # the roll-up writes in transactions of its own
        if billing:
            await billing_rollups.refresh(engine, project.id, first, last)
        async with db.reader(engine) as connection:
            rows = (exports.billing_rows if billing else exports.contact_rows)(
                connection, project, first, last
            )
            count = await exports.export(rows, sink, progress)
        return f"{count} rows written to {out}"

    typer.echo(_run_admin(go))


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
    import re
    from html import unescape

    from sqlalchemy.ext.asyncio import AsyncEngine

    from bot.i18n import create_i18n
    from services import db, digest
    from services.projects import get_project
    from services.reports import build_report
    from telegram_ui.cards import rendered
    from telegram_ui.digest_cards import digest_text
    from telegram_ui.report_cards import report_text

    today = dt.date.today()
    first = dt.date.fromisoformat(start) if start else today - dt.timedelta(days=6)
    last = dt.date.fromisoformat(end) if end else today
    i18n = create_i18n(lang)

    async def go(session: AsyncSession) -> str:
        engine = session.bind
        assert isinstance(engine, AsyncEngine)
        async with db.read_session(engine) as reading:  # the bot's writers are not held up meanwhile
            project = await get_project(reading, project_id)
            if project is None:
                raise ValueError(f"no project {project_id}")
            if digest_day:
                built = await digest.build_digest(reading, project, dt.date.fromisoformat(digest_day))
                text = rendered(i18n, lang, digest_text, built)
            else:
                text = rendered(i18n, lang, report_text, await build_report(reading, project, first, last))
        return unescape(re.sub(r"<[^>]+>", "", text))

    typer.echo(_run_admin(go))


@app.command()
def forget(
    telegram_id: int,
    yes: Annotated[bool, typer.Option("--yes", help="erase without asking")] = False,
) -> None:
    """Erase one person on request (a customer, a promoter, any member): recordings, voiceprints, personal
    answers, name and Telegram id; their contacts stay, anonymous, for billing. Prints what was erased."""
    from services.privacy import forget_person, forget_redis_states
    from services.storage import create_audio_store

    if not yes:
        typer.confirm(
            f"Erase everything personal about Telegram id {telegram_id}? This cannot be undone", abort=True
        )
    settings = _settings()

    async def go(session: AsyncSession) -> str:
        erased = await forget_person(session, create_audio_store(settings), telegram_id)
        if settings.redis_url:
            erased.conversation_states += await forget_redis_states(settings.redis_url, telegram_id)
        return "\n".join(
            [f"erased for Telegram id {telegram_id}:", *(f"  {line}" for line in erased.lines())]
        )

    typer.echo(_run_admin(go))


FromOption = Annotated[str | None, typer.Option("--from", help="first local day, YYYY-MM-DD")]
ToOption = Annotated[str | None, typer.Option("--to", help="last local day, YYYY-MM-DD")]
FormatOption = Annotated[str, typer.Option("--format", help="xlsx or csv")]
OutOption = Annotated[
    Path | None, typer.Option("--out", help="file to write (default: KIND-PROJECT-FROM-TO.FORMAT)")
]


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


def _report_file(
    kind: str, project_id: int, start: str | None, end: str | None, fmt: str, out: Path | None
) -> None:
    if fmt not in ("xlsx", "csv"):
        raise typer.BadParameter("--format must be xlsx or csv")
    today = dt.date.today()
    first = start or (today - dt.timedelta(days=30)).isoformat()
    last = end or (today - dt.timedelta(days=1)).isoformat()
    export_file(project_id, out or Path(f"{kind}-{project_id}-{first}-{last}.{fmt}"), kind, first, last)


@report_app.command("billing")
def report_billing(
    project_id: int,
    start: FromOption = None,
    end: ToOption = None,
    fmt: FormatOption = "xlsx",
    out: OutOption = None,
) -> None:
    """Validated contacts per local day, promoter and store (default: the last 30 days), with a total."""
    _report_file("billing", project_id, start, end, fmt, out)


@report_app.command("contacts")
def report_contacts(
    project_id: int,
    start: FromOption = None,
    end: ToOption = None,
    fmt: FormatOption = "xlsx",
    out: OutOption = None,
) -> None:
    """Every contact of a period, streamed (progress on stderr)."""
    _report_file("contacts", project_id, start, end, fmt, out)


@admin_app.command("remove")
def remove(project_id: int, telegram_id: int, role: str) -> None:
    """Take a role in a project away from someone; a reviewer's open cards go back to the queue."""
    from sqlalchemy import select

    from models import Role, User
    from services import people
    from services.projects import get_project

    if role not in {r.value for r in Role}:
        raise typer.BadParameter(f"role must be one of {', '.join(r.value for r in Role)}")

    async def go(session: AsyncSession) -> str:
        project = await get_project(session, project_id)
        user = await session.scalar(select(User).where(User.telegram_id == telegram_id))
        if project is None or user is None:
            raise ValueError(f"no project {project_id} or no user {telegram_id}")
        returned = await people.remove_member(session, project, user, Role(role))
        return f"{user.display_name} is no longer {role} in {project.name}; {returned} open card(s) returned"

    typer.echo(_run_admin(go))


@admin_app.command("senior")
def senior(project_id: int, telegram_id: int, off: Annotated[bool, typer.Option("--off")] = False) -> None:
    """Mark a reviewer as senior (daily re-reviews go to seniors), or unmark with --off."""
    from services.projects import set_senior

    async def go(session: AsyncSession) -> str:
        await set_senior(session, project_id, telegram_id, not off)
        return f"{telegram_id}: {'not ' if off else ''}senior in project #{project_id}"

    typer.echo(_run_admin(go))


def _run_admin(go: Callable[[AsyncSession], Awaitable[str]]) -> str:
    """Migrate, then run one administrative action in one committed transaction."""
    from bot.migrate import upgrade
    from services.db import create_engine, create_session_factory

    settings = _settings()
    upgrade(settings.database_url)
    settings.configure_data_keys()

    async def in_session() -> str:
        engine = create_engine(settings.database_url)
        try:
            async with create_session_factory(engine)() as session, session.begin():
                return await go(session)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(in_session())
    except (ValueError, ProjectError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def _encoder(settings: Settings, *, worker: bool = False):  # type: ignore[no-untyped-def]
    """One-off commands run SpeechBrain as it is: converting or compiling pays off only over many recordings."""
    from services.voice.encoder import load_encoder

    return load_encoder(
        settings.voice_backend,
        settings.voice_model_dir,
        settings.voice_precision,
        runtime=settings.voice_runtime if worker else "torch",
    )


def _wave(path: Path):  # type: ignore[no-untyped-def]
    from services.audio import decode
    from services.voice.analysis import to_float

    return to_float(decode(path.read_bytes()))


@voice_app.command("analyze")
def voice_analyze(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    promoter: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="promoter's reference")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Voices, speech and segments of one recording, and the flags it raises on its own, each with how
    sure it is ("likely", or "unsure": listen carefully) and the numbers it rests on."""
    import json

    from services.voice.analysis import analyze, enrolment_embedding
    from services.voice.flags import VoiceRules, recording_flags

    encoder = _encoder(_settings())
    reference = enrolment_embedding(encoder, _wave(promoter))[0] if promoter else None
    result = analyze(_wave(path), encoder, reference)
    rules = VoiceRules.for_encoder(encoder)  # a project's own calibration needs its database
    flags = [
        {
            "flag": flag.kind.value,
            "score": flag.score,
            **{k: v for k, v in flag.details.items() if k in ("confidence", "why", "speech_seconds")},
        }
        for flag in recording_flags(result, rules)
    ]
    report = {
        "voices": len(result.voices),
        "speech_seconds": round(result.speech_seconds, 2),
        "p_one_voice": None if result.p_one_voice is None else round(result.p_one_voice, 3),
        "p_self_recorded": None if result.p_self_recorded is None else round(result.p_self_recorded, 3),
        "calibrated": result.calibrated,
        "evidence": result.evidence,
        "segments": [{"start": s, "end": e, "speaker": result.voices[i].role} for s, e, i in result.segments],
        "flags": flags,
    }
    typer.echo(json.dumps(report) if as_json else "\n".join(f"{k}: {v}" for k, v in report.items()))


@voice_app.command("compare")
def voice_compare(
    first: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    second: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Are two recordings the same speaker?"""
    import json

    encoder = _encoder(_settings())
    score = float(encoder.embed(_wave(first)) @ encoder.embed(_wave(second)))
    report = {
        "score": round(score, 4),
        "threshold": encoder.same_speaker_threshold,
        "same_speaker": score >= encoder.same_speaker_threshold,
    }
    typer.echo(json.dumps(report) if as_json else "\n".join(f"{k}: {v}" for k, v in report.items()))


@voice_app.command("worker")
def voice_worker() -> None:
    """Analyse recordings as they arrive (run one or more beside the bot; safe to stop and restart)."""
    import signal

    from bot.migrate import upgrade
    from jobs.voice import run_worker
    from services.db import create_engine, create_session_factory
    from services.storage import create_audio_store

    settings = _settings()
    upgrade(settings.database_url)

    async def go() -> None:
        engine = create_engine(settings.database_url)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        encoder = await asyncio.to_thread(lambda: _encoder(settings, worker=True))
        try:
            stale = dt.timedelta(seconds=settings.voice_stale_seconds)
            await run_worker(
                create_session_factory(engine), create_audio_store(settings), encoder, stop, stale=stale
            )
        finally:
            await engine.dispose()

    asyncio.run(go())


@voice_app.command("thresholds")
def voice_thresholds(
    project_id: int,
    backend: Annotated[str, typer.Option(help="speechbrain or resemblyzer")] = "resemblyzer",
    same_speaker: Annotated[float | None, typer.Option(min=-1.0, max=1.0)] = None,
    repeat: Annotated[float | None, typer.Option(min=-1.0, max=1.0, help="repeated-customer cosine")] = None,
    duplicate: Annotated[float | None, typer.Option(min=-1.0, max=1.0, help="near-duplicate cosine")] = None,
    repeat_min_contacts: Annotated[int | None, typer.Option(min=1)] = None,
    repeat_window_days: Annotated[int | None, typer.Option(min=1)] = None,
    min_speech_seconds: Annotated[float | None, typer.Option(min=0.0)] = None,
    repeat_snorm: Annotated[
        float | None, typer.Option(help="repeated-customer threshold on s-normalised scores")
    ] = None,
    sure: Annotated[
        float | None, typer.Option(min=0.5, max=1.0, help="probability stated as a likely self-recording")
    ] = None,
    listen: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help='probability from which "listen carefully" is shown'),
    ] = None,
) -> None:
    """Show a project's voice rules for a backend, changing the ones given (cosines are per backend)."""
    from services import projects
    from services.voice.calibration import for_project
    from services.voice.encoder import ResemblyzerEncoder, SpeakerEncoder, SpeechBrainEncoder
    from services.voice.flags import VoiceRules

    if backend not in ("speechbrain", "resemblyzer"):
        typer.echo("error: --backend is speechbrain or resemblyzer", err=True)
        raise typer.Exit(2)
    per_backend = {
        "same_speaker": same_speaker,
        "repeat_same_speaker": repeat,
        "near_duplicate": duplicate,
        "repeat_snorm": repeat_snorm,
    }
    shared = {
        "repeat_min_contacts": repeat_min_contacts,
        "repeat_window_days": repeat_window_days,
        "min_speech_seconds": min_speech_seconds,
        "sure": sure,
        "listen": listen,
    }
    # The encoder classes carry their default thresholds as class attributes: no model needs loading.
    defaults = cast("SpeakerEncoder", SpeechBrainEncoder if backend == "speechbrain" else ResemblyzerEncoder)

    async def go(session: AsyncSession) -> str:
        project = await projects.get_project(session, project_id)
        if project is None:
            raise ValueError(f"no project {project_id}")
        calibration = dict(project.voice_thresholds or {})
        calibration[backend] = {
            **calibration.get(backend, {}),
            **{k: v for k, v in per_backend.items() if v is not None},
        }
        calibration.update({k: v for k, v in shared.items() if v is not None})
        project.voice_thresholds = calibration  # a new dict, so the JSON column is written
        rules = VoiceRules.for_project(project, defaults)
        own = for_project(backend, project.voice_thresholds)
        lines = [f"{name}: {value}" for name, value in vars(rules).items()]
        lines.append(f"calibration: {own.source if own else 'none (self-recording flags stay unsure)'}")
        return "\n".join(lines)

    typer.echo(_run_admin(go))


@voice_app.command("fetch-model")
def voice_fetch_model(
    source: Annotated[str | None, typer.Option(help="hub id or local directory (VOICE_MODEL_SOURCE)")] = None,
) -> None:
    """Copy the SpeechBrain model into VOICE_MODEL_DIR (needs the hub, once); workers then load it from there."""
    from services.voice.encoder import SpeechBrainEncoder, fetch_speechbrain_model

    settings = _settings()
    directory = fetch_speechbrain_model(settings.voice_model_dir, source or settings.voice_model_source)
    encoder = SpeechBrainEncoder(directory, precision=settings.voice_precision)  # proves it loads offline
    typer.echo(f"{encoder.name} model ready in {directory} ({encoder.dim}-dimensional voiceprints)")


@voice_app.command("eval")
def voice_eval(
    folder: Annotated[
        Path | None,
        typer.Argument(exists=True, file_okay=False, help="labelled speech, one folder per speaker"),
    ] = None,
    project_id: Annotated[
        int | None, typer.Option("--project", help="write the result into this project's calibration")
    ] = None,
    dialogues: Annotated[
        Path | None,
        typer.Option(
            exists=True, file_okay=False, help="a field set: <uri>.ogg + .rttm + .json, enrol-<promoter>.ogg"
        ),
    ] = None,
    fit: Annotated[
        bool, typer.Option(help="with --dialogues: fit the self-recording calibration on the set")
    ] = False,
    fit_to: Annotated[Path | None, typer.Option(help="with --fit: write the calibration JSON here")] = None,
    from_reviews: Annotated[
        int | None, typer.Option(help="refit this project's calibration from its reviewed contacts")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Measure the voice checks. FOLDER: EER and the threshold at 1% false accepts (with --project, that
    threshold becomes the project's same-speaker threshold). --dialogues: voice counting, DER/JER, false
    alarms and catches of the self-recording judgement, per condition (--fit: fit its calibration).
    --from-reviews: refit a project's calibration from its own reviewers' verdicts."""
    import json

    modes = sum(x is not None for x in (folder, dialogues, from_reviews))
    if modes != 1:
        typer.echo("error: give one of FOLDER, --dialogues DIR or --from-reviews PROJECT", err=True)
        raise typer.Exit(2)
    settings = _settings()
    if from_reviews is not None:
        typer.echo(_refit_from_reviews(settings, from_reviews, as_json))
        return
    encoder = _encoder(settings)

    verb = "analysed" if dialogues is not None else "embedded"

    def progress(done: int, total: int) -> None:
        if done % 20 == 0 or done == total:
            typer.echo(f"{verb} {done}/{total}", err=True)

    if dialogues is not None:
        from services.voice import field_eval
        from services.voice.calibration import for_project

        calibration = None if fit else for_project(encoder.name, None)
        rows = field_eval.score_set(dialogues, encoder, calibration, progress)
        if not rows:
            typer.echo(f"error: {dialogues} holds no <uri>.json recordings", err=True)
            raise typer.Exit(2)
        if fit:
            fitted = field_eval.fit(rows, encoder.name, f"field set {dialogues} ({len(rows)} recordings)")
            rows = field_eval.score_set(dialogues, encoder, fitted, progress)
            if fit_to is not None:
                fit_to.write_text(json.dumps(fitted.to_json(), indent=1) + "\n")
            if project_id is not None:
                typer.echo(_save_calibration(project_id, encoder.name, fitted.to_json()), err=True)
        result = field_eval.report(rows)
        typer.echo(json.dumps(result) if as_json else json.dumps(result, indent=1))
        return
    assert folder is not None
    typer.echo(_speaker_eval(folder, encoder, project_id, as_json, progress))


def _speaker_eval(folder: Path, encoder: Any, project_id: int | None, as_json: bool, progress: Any) -> str:
    import datetime as dt
    import json

    from services.voice.evaluation import evaluate

    try:
        result = evaluate(folder, encoder, _wave, progress)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    report: dict[str, Any] = {
        "backend": encoder.name,
        "eer": round(result.eer, 4),
        "eer_threshold": round(result.eer_threshold, 4),
        "threshold_at_1pct_far": round(result.threshold_at_1pct_far, 4),
        "speakers": result.speakers,
        "files": result.files,
        "same_trials": result.same_trials,
        "different_trials": result.different_trials,
    }
    if project_id is not None:
        report["saved"] = _save_calibration(
            project_id,
            encoder.name,
            {
                "same_speaker": report["threshold_at_1pct_far"],
                "eer": report["eer"],
                "measured_on": str(folder),
                "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            },
            key=None,
        )
    return json.dumps(report) if as_json else "\n".join(f"{k}: {v}" for k, v in report.items())


def _save_calibration(
    project_id: int, backend: str, values: dict[str, Any], key: str | None = "calibration"
) -> str:
    """Merge into a project's per-backend voice settings (`key`: under one entry, else at the top)."""
    from services import projects

    async def go(session: AsyncSession) -> str:
        project = await projects.get_project(session, project_id)
        if project is None:
            raise ValueError(f"no project {project_id}")
        settings = dict(project.voice_thresholds or {})
        own = dict(settings.get(backend, {}))
        own.update({key: values} if key else values)
        settings[backend] = own
        project.voice_thresholds = settings  # a new dict, so the JSON column is written
        return f"project #{project_id}: {backend} {key or 'thresholds'} saved"

    return str(_run_admin(go))


def _refit_from_reviews(settings: Settings, project_id: int, as_json: bool) -> str:
    import json

    from services.voice import quality

    backend = _backend_in_use(settings)

    async def go(session: AsyncSession) -> str:
        examples = await quality.labelled_evidence(session, project_id, backend)
        fitted = quality.refit(backend, examples, project_id)
        return json.dumps(fitted.to_json())

    try:
        fitted_json = _run_admin(go)
    except quality.NotEnoughReviews as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    saved = _save_calibration(project_id, backend, json.loads(fitted_json))
    result = {"backend": backend, "calibration": json.loads(fitted_json)["source"], "saved": saved}
    return json.dumps(result) if as_json else "\n".join(f"{k}: {v}" for k, v in result.items())


def _backend_in_use(settings: Settings) -> str:
    """The backend the workers would pick, without loading a model."""
    from services.voice.encoder import speechbrain_model_present

    if settings.voice_backend == "auto":
        return "speechbrain" if speechbrain_model_present(settings.voice_model_dir) else "resemblyzer"
    return settings.voice_backend


@voice_app.command("quality")
def voice_quality(
    project_id: int,
    last: Annotated[int, typer.Option(min=1, help="the project's last N reviewed contacts")] = 500,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Precision and recall of each automatic voice flag, judged by the project's own reviewers (a
    self-recording flag is confirmed by "not a real customer" or a fraud verdict; the others by fraud)."""
    import json

    from services.voice import quality

    async def go(session: AsyncSession) -> str:
        return json.dumps(quality.describe(await quality.flag_quality(session, project_id, last)))

    rows = json.loads(_run_admin(go))
    if as_json:
        typer.echo(json.dumps(rows))
        return
    if not rows:
        typer.echo(f"project #{project_id}: no reviewed contacts with voice flags yet")
        return

    def pct(value: float | None) -> str:
        return "—" if value is None else f"{value:.0%}"

    typer.echo(f"{'flag':40} {'flagged':>8} {'confirmed':>9} {'precision':>9} {'recall':>7}")
    for row in rows:
        typer.echo(
            f"{row['flag']:40} {row['flagged']:>8} {row['confirmed']:>9} {pct(row['precision']):>9} "
            f"{pct(row['recall']):>7}"
        )
    typer.echo(f"over {rows[0]['reviewed']} reviewed contacts")


def main() -> None:
    app()
