"""Managers: the buttons under an alert ("Open contact", "I take it", "Resolved" with a one-line note), and
exports: /billing (what the client pays for) and /export (every contact), as XLSX or CSV.

Who may press is decided by services.alerts from the alert's own project, never from the message.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from enum import StrEnum
from pathlib import Path
from zoneinfo import ZoneInfo

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command, CommandObject
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, FSInputFile, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder
from aiogram.utils.text_decorations import html_decoration as hd
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bot.config import Settings
from jobs.outbox import send_recording
from models import AlertKind, Contact, Project, Role, User
from models.base import utcnow
from services import alerts, billing, db, digest, exports, projects, surveys
from services.alerts import AlertError, AlertProblem
from services.outbox import enqueue
from services.reports import MAX_REPORT_DAYS, Period, build_report, parse_day_range, period_days
from services.storage import AudioStore
from services.users import Roles
from telegram_ui.alert_cards import AlertAction, AlertButton, alert_kind_name, enqueue_alert_updates
from telegram_ui.cards import card_audio, contact_text, rendered, voice_payload
from telegram_ui.digest_cards import DigestAction, DigestButton, digest_keyboard, digest_text, open_flags_text
from telegram_ui.report_cards import period_name, report_text


class Resolving(StatesGroup):
    note = State()


class ReportRange(StatesGroup):
    dates = State()  # waiting for "first last" days of a /report


class ReportRangeButton(CallbackData, prefix="rr"):
    project: int


class ExportKind(StrEnum):
    BILLING = "billing"
    CONTACTS = "contacts"


class ExportPeriod(StrEnum):
    YESTERDAY = "yesterday"
    WEEK = "7d"
    THIS_MONTH = "month"
    LAST_MONTH = "lastmonth"


class ReportButton(CallbackData, prefix="rp"):
    project: int
    period: Period


class ExportButton(CallbackData, prefix="ex"):
    project: int
    kind: ExportKind
    period: ExportPeriod | None = None
    fmt: str = ""  # "xlsx" or "csv" once chosen


def period_dates(period: ExportPeriod, today: dt.date) -> tuple[dt.date, dt.date]:
    if period == ExportPeriod.YESTERDAY:
        return today - dt.timedelta(days=1), today - dt.timedelta(days=1)
    if period == ExportPeriod.WEEK:
        return today - dt.timedelta(days=7), today - dt.timedelta(days=1)
    if period == ExportPeriod.THIS_MONTH:
        return today.replace(day=1), today
    last_month_end = today.replace(day=1) - dt.timedelta(days=1)
    return last_month_end.replace(day=1), last_month_end


def _period_name(period: ExportPeriod) -> str:
    return {
        ExportPeriod.YESTERDAY: _("period-yesterday"),
        ExportPeriod.WEEK: _("period-week"),
        ExportPeriod.THIS_MONTH: _("period-this-month"),
        ExportPeriod.LAST_MONTH: _("period-last-month"),
    }[period]


def alert_problem(problem: AlertProblem) -> str:
    return {
        AlertProblem.UNKNOWN: _("alert-unknown"),
        AlertProblem.NOT_MANAGER: _("alert-not-manager"),
        AlertProblem.TAKEN: _("alert-taken-other"),
        AlertProblem.RESOLVED: _("alert-already-resolved"),
    }[problem]


def _engine(session: AsyncSession) -> AsyncEngine:
    engine = session.bind
    assert isinstance(engine, AsyncEngine)
    return engine


@contextlib.asynccontextmanager
async def read_beside(session: AsyncSession) -> AsyncIterator[AsyncSession]:
    """Finish the update's writes, then read (a report, a digest: seconds on a big project) through a
    session that holds up no writer; on SQLite the update's own transaction holds the write lock."""
    await session.commit()
    async with db.read_session(_engine(session)) as reading:
        yield reading


def manages(roles: Roles, project_id: int) -> bool:
    """Managers of that project, and global admins: who may press a project's manager buttons."""
    return roles.is_global_admin or roles.has(Role.MANAGER, project_id)


async def managed_project_ids(session: AsyncSession, roles: Roles) -> list[int]:
    if roles.is_global_admin:
        return [p.id for p in await projects.list_projects(session)]
    return sorted(set(roles.projects(Role.MANAGER)))


async def on_alert_button(
    query: CallbackQuery,
    callback_data: AlertButton,
    session: AsyncSession,
    user: User,
    roles: Roles,
    state: FSMContext,
    bot: Bot,
    audio_store: AudioStore,
    i18n: I18n,
) -> None:
    admin = roles.is_global_admin
    try:
        if callback_data.action == AlertAction.OPEN:
            alert = await alerts.visible(session, callback_data.id, user, admin)
            contact = await session.get(Contact, alert.contact_id) if alert.contact_id else None
            if contact is None or not isinstance(query.message, Message):
                raise AlertError(AlertProblem.UNKNOWN)
            await query.answer()
            audio = await card_audio(session, contact.id)
            if audio and audio.telegram_file_id:
                caption = _("card-voice-as-file").format(id=contact.id)
                with contextlib.suppress(TelegramAPIError):  # the recording refused here: the text still goes
                    await send_recording(
                        bot, audio_store, query.message.chat.id, voice_payload(audio, caption)
                    )
            await query.message.answer(await contact_text(session, contact, i18n.current_locale))
        elif callback_data.action == AlertAction.TAKE:
            alert = await alerts.take(session, callback_data.id, user, admin)
            await enqueue_alert_updates(session, i18n, alert)
            await query.answer(_("alert-taken-you"))
        elif callback_data.action == AlertAction.MUTE:
            alert = await alerts.visible(session, callback_data.id, user, admin)
            project = await session.get(Project, alert.project_id)
            assert project is not None  # foreign key
            await alerts.set_muted(session, project, alert.kind, True)
            await query.answer(_("alert-muted").format(kind=alert_kind_name(alert.kind)), show_alert=True)
        else:
            alert = await alerts.check_resolvable(session, callback_data.id, user, admin)
            await state.set_state(Resolving.note)
            await state.update_data(alert_id=alert.id)
            await query.answer()
            if isinstance(query.message, Message):
                await query.message.answer(
                    _("alert-resolve-prompt").format(id=alert.id, name=hd.quote(user.display_name))
                )
    except AlertError as exc:
        await query.answer(alert_problem(exc.problem), show_alert=True)


async def on_resolution_note(
    message: Message, session: AsyncSession, user: User, roles: Roles, state: FSMContext, i18n: I18n
) -> None:
    alert_id = int((await state.get_data()).get("alert_id", 0))
    await state.clear()
    try:
        alert = await alerts.resolve(session, alert_id, user, roles.is_global_admin, message.text or "")
    except AlertError as exc:
        await message.answer(alert_problem(exc.problem))
        return
    await enqueue_alert_updates(session, i18n, alert)
    customer = await surveys.customer_of(session, alert)
    if customer is not None:
        chat_id, locale = customer
        text = rendered(i18n, locale, lambda: _("survey-thanks-resolved"))
        await enqueue(session, chat_id, "sendMessage", {"text": text}, dedupe_key=f"alert-thanks:{alert.id}")
    await message.answer(_("alert-resolved-you").format(id=alert.id))


async def on_resolution_not_text(message: Message) -> None:
    await message.answer(_("alert-resolve-text-only"))


async def export_command(
    message: Message, command: CommandObject, session: AsyncSession, roles: Roles
) -> None:
    """/billing (validated contacts per promoter, store and day) or /export (every contact), per project."""
    kind = ExportKind.BILLING if command.command == "billing" else ExportKind.CONTACTS
    project_ids = await managed_project_ids(session, roles)
    if not project_ids:
        await message.answer(_("export-not-manager"))
        return
    keyboard = InlineKeyboardBuilder()
    for project_id in project_ids[:20]:
        project = await session.get(Project, project_id)
        assert project is not None
        for period in ExportPeriod:
            label = (
                f"{project.name}: {_period_name(period)}" if len(project_ids) > 1 else _period_name(period)
            )
            keyboard.button(
                text=label, callback_data=ExportButton(project=project_id, kind=kind, period=period)
            )
    keyboard.adjust(2)
    await message.answer(_("export-choose-period"), reply_markup=keyboard.as_markup())


async def on_export_button(
    query: CallbackQuery,
    callback_data: ExportButton,
    session: AsyncSession,
    roles: Roles,
    bot: Bot,
    settings: Settings,
) -> None:
    if not manages(roles, callback_data.project):
        await query.answer(_("alert-not-manager"), show_alert=True)
        return
    project = await session.get(Project, callback_data.project)
    if project is None or callback_data.period is None or not isinstance(query.message, Message):
        await query.answer(_("button-invalid"), show_alert=True)
        return
    if callback_data.fmt not in ("xlsx", "csv"):
        keyboard = InlineKeyboardBuilder()
        for fmt in ("xlsx", "csv"):
            keyboard.button(
                text=fmt.upper(),
                callback_data=ExportButton(
                    project=project.id, kind=callback_data.kind, period=callback_data.period, fmt=fmt
                ),
            )
        await query.answer()
        await query.message.edit_text(_("export-choose-format"), reply_markup=keyboard.as_markup())
        return
    await query.answer()
    today = utcnow().astimezone(ZoneInfo(project.timezone)).date()
    start, end = period_dates(callback_data.period, today)
    status = await query.message.edit_text(_("export-started"))
    assert isinstance(status, Message)
    await _send_export(
        session, bot, settings, project, callback_data.kind, callback_data.fmt, start, end, status
    )


async def _send_export(
    session: AsyncSession,
    bot: Bot,
    settings: Settings,
    project: Project,
    kind: ExportKind,
    fmt: str,
    start: dt.date,
    end: dt.date,
    status: Message,
) -> None:
    """Stream the rows into a file (progress edited into `status`), then send it as a document."""
    # The update's transaction ends here: a long export must not hold it (on SQLite, the write lock).
    await session.commit()

    async def progress(rows: int) -> None:
        with contextlib.suppress(TelegramAPIError):
            await status.edit_text(_("export-progress").format(rows=rows))

    folder = settings.storage_root.parent / "exports"
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    name = f"{kind.value}-{project.id}-{start.isoformat()}-{end.isoformat()}.{fmt}"
    path = folder / f"{status.chat.id}-{status.message_id}-{name}"
    try:
        rows = await _export(session, project, kind, fmt, start, end, path, progress)
        await bot.send_document(
            status.chat.id,
            FSInputFile(path, filename=name),
            caption=_("export-ready").format(rows=rows, start=start.isoformat(), end=end.isoformat()),
        )
        await status.edit_text(_("export-done").format(rows=rows))
    finally:
        await asyncio.to_thread(path.unlink, missing_ok=True)


async def _export(
    session: AsyncSession,
    project: Project,
    kind: ExportKind,
    fmt: str,
    start: dt.date,
    end: dt.date,
    path: Path,
    progress: exports.Progress,
) -> int:
    columns: tuple[exports.Column, ...]
    if kind == ExportKind.BILLING:  # days not rolled up yet are counted from the contacts either way
        await billing.refresh(_engine(session), project.id, start, end)
    async with db.reader(_engine(session)) as connection:
        if kind == ExportKind.BILLING:
            columns, total = exports.BILLING_COLUMNS, 4
            rows = exports.billing_rows(connection, project, start, end)
        else:
            columns, total = exports.CONTACT_COLUMNS, None
            rows = exports.contact_rows(connection, project, start, end)
        sink: exports.Sink
        if fmt == "xlsx":
            sink = await asyncio.to_thread(exports.XlsxSink, path, kind.value, columns, total)
        else:
            sink = await asyncio.to_thread(exports.CsvSink, path, columns)
        return await exports.export(rows, sink, progress)


class AlertMuteButton(CallbackData, prefix="am"):
    project: int
    kind: AlertKind
    mute: bool


def _mute_keyboard(project: Project) -> InlineKeyboardMarkup:
    keyboard = InlineKeyboardBuilder()
    muted = set(project.muted_alerts or [])
    for kind in AlertKind:
        name = alert_kind_name(kind)
        keyboard.button(
            text=_("alerts-off").format(kind=name)
            if kind.value in muted
            else _("alerts-on").format(kind=name),
            callback_data=AlertMuteButton(project=project.id, kind=kind, mute=kind.value not in muted),
        )
    keyboard.adjust(1)
    return keyboard.as_markup()


async def alerts_command(message: Message, session: AsyncSession, roles: Roles) -> None:
    """/alerts: which alert kinds reach this project's managers, each one press from muted or back on."""
    project_ids = await managed_project_ids(session, roles)
    if not project_ids:
        await message.answer(_("alert-not-manager"))
        return
    for project_id in project_ids[:10]:
        project = await session.get(Project, project_id)
        assert project is not None
        await message.answer(
            _("alerts-menu").format(project=hd.quote(project.name)), reply_markup=_mute_keyboard(project)
        )


async def on_mute_button(
    query: CallbackQuery, callback_data: AlertMuteButton, session: AsyncSession, roles: Roles
) -> None:
    if not manages(roles, callback_data.project):
        await query.answer(_("alert-not-manager"), show_alert=True)
        return
    project = await session.get(Project, callback_data.project)
    if project is None:
        await query.answer(_("button-invalid"), show_alert=True)
        return
    await alerts.set_muted(session, project, callback_data.kind, callback_data.mute)
    state = _("alerts-state-off") if callback_data.mute else _("alerts-state-on")
    await query.answer(_("alerts-changed").format(kind=alert_kind_name(callback_data.kind), state=state))
    if isinstance(query.message, Message):
        await query.message.edit_reply_markup(reply_markup=_mute_keyboard(project))


async def on_digest_button(
    query: CallbackQuery,
    callback_data: DigestButton,
    session: AsyncSession,
    roles: Roles,
    bot: Bot,
    settings: Settings,
    i18n: I18n,
) -> None:
    """The buttons under a digest: that day's contacts (XLSX), its promoters, its open flags, the day before."""
    if not manages(roles, callback_data.project):
        await query.answer(_("report-not-manager"), show_alert=True)
        return
    project = await session.get(Project, callback_data.project)
    try:
        day = dt.date.fromordinal(callback_data.day)
    except ValueError:
        day = None
    if project is None or day is None or not isinstance(query.message, Message):
        await query.answer(_("button-invalid"), show_alert=True)
        return
    await query.answer()
    action = callback_data.action
    if action == DigestAction.CONTACTS:
        status = await query.message.answer(_("export-started"))
        await _send_export(session, bot, settings, project, ExportKind.CONTACTS, "xlsx", day, day, status)
        return
    async with read_beside(session) as reading:
        if action == DigestAction.PROMOTERS:
            text, keyboard = report_text(await build_report(reading, project, day, day)), None
        elif action == DigestAction.FLAGS:
            text, keyboard = open_flags_text(day, await digest.open_flags(reading, project, day)), None
        else:
            previous = day - dt.timedelta(days=1)
            text = digest_text(await digest.build_digest(reading, project, previous))
            keyboard = digest_keyboard(project.id, previous)
    await query.message.answer(text, reply_markup=keyboard)


async def report_command(message: Message, session: AsyncSession, roles: Roles) -> None:
    """/report: a period per button (per project, for a manager of several)."""
    project_ids = await managed_project_ids(session, roles)
    if not project_ids:
        await message.answer(_("report-not-manager"))
        return
    keyboard = InlineKeyboardBuilder()
    for project_id in project_ids[:20]:
        project = await session.get(Project, project_id)
        assert project is not None
        for period in Period:
            label = period_name(period)
            keyboard.button(
                text=f"{project.name}: {label}" if len(project_ids) > 1 else label,
                callback_data=ReportButton(project=project_id, period=period),
            )
        label = _("report-range-button")
        keyboard.button(
            text=f"{project.name}: {label}" if len(project_ids) > 1 else label,
            callback_data=ReportRangeButton(project=project_id),
        )
    keyboard.adjust(2)
    await message.answer(_("report-choose-period"), reply_markup=keyboard.as_markup())


async def on_report_range_button(
    query: CallbackQuery, callback_data: ReportRangeButton, roles: Roles, state: FSMContext
) -> None:
    if not manages(roles, callback_data.project):
        await query.answer(_("report-not-manager"), show_alert=True)
        return
    await state.set_state(ReportRange.dates)
    await state.update_data(report_project=callback_data.project)
    await query.answer()
    if isinstance(query.message, Message):
        await query.message.answer(_("report-range-ask").format(limit=MAX_REPORT_DAYS))


async def on_report_range(message: Message, session: AsyncSession, roles: Roles, state: FSMContext) -> None:
    project_id = int((await state.get_data()).get("report_project", 0))
    if not manages(roles, project_id):  # removed meanwhile
        await state.clear()
        await message.answer(_("report-not-manager"))
        return
    try:
        first, last = parse_day_range(message.text or "")
    except ValueError:
        await message.answer(_("report-range-invalid").format(limit=MAX_REPORT_DAYS))
        return
    project = await session.get(Project, project_id)
    await state.clear()
    if project is None:
        await message.answer(_("button-invalid"))
        return
    async with read_beside(session) as reading:
        report = await build_report(reading, project, first, last)
    await message.answer(report_text(report))


async def on_report_button(
    query: CallbackQuery, callback_data: ReportButton, session: AsyncSession, roles: Roles
) -> None:
    if not manages(roles, callback_data.project):
        await query.answer(_("report-not-manager"), show_alert=True)
        return
    project = await session.get(Project, callback_data.project)
    if project is None or not isinstance(query.message, Message):
        await query.answer(_("button-invalid"), show_alert=True)
        return
    await query.answer()
    today = utcnow().astimezone(ZoneInfo(project.timezone)).date()
    first, last = period_days(callback_data.period, today)
    async with read_beside(session) as reading:
        report = await build_report(reading, project, first, last)
    await query.message.answer(report_text(report))


def create_router() -> Router:
    router = Router(name=__name__)
    router.message.register(report_command, Command("report"))
    router.message.register(alerts_command, Command("alerts"))
    router.callback_query.register(on_digest_button, DigestButton.filter())
    router.callback_query.register(on_mute_button, AlertMuteButton.filter())
    router.callback_query.register(on_report_button, ReportButton.filter())
    router.callback_query.register(on_report_range_button, ReportRangeButton.filter())
    router.message.register(on_report_range, ReportRange.dates, F.text, ~F.text.startswith("/"))
    router.message.register(export_command, Command("billing", "export"))
    router.callback_query.register(on_export_button, ExportButton.filter())
    router.callback_query.register(on_alert_button, AlertButton.filter())
    router.message.register(on_resolution_note, Resolving.note, F.text, ~F.text.startswith("/"))
    router.message.register(on_resolution_not_text, Resolving.note, ~F.text)
    return router
