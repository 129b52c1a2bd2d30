"""Managers: the buttons under an alert ("Open contact", "I take it", "Resolved" with a one-line note), and
exports: /billing (what the client pays for) and /export (every contact), as XLSX or CSV.

Who may press is decided by services.alerts from the alert's own project, never from the message.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
from collections.abc import AsyncIterator
from pathlib import Path
from zoneinfo import ZoneInfo

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command, CommandObject
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, ForceReply, FSInputFile, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder
from aiogram.utils.text_decorations import html_decoration as hd
from sqlalchemy.ext.asyncio import AsyncSession

from infra.db import Database
from infra.settings import Settings
from infra.storage import AudioStore
from models import AlertKind, Contact, Project, Role, User
from models.base import utcnow
from services import alerts, billing, digest, exports, projects, surveys
from services.alerts import AlertError, AlertProblem
from services.contact_view import contact_view, dialogue_audio
from services.reports import MAX_REPORT_DAYS, Period, build_report, parse_day_range, period_days
from services.unit_of_work import UpdateUnit
from services.users import Roles
from telegram_ui import notify
from telegram_ui.alert_cards import alert_kind_name, contact_messages, enqueue_alert_updates
from telegram_ui.callbacks import (
    AlertAction,
    AlertButton,
    AlertMuteButton,
    DigestAction,
    DigestButton,
    ExportButton,
    ExportKind,
    ExportPeriod,
    ReportButton,
    ReportRangeButton,
)
from telegram_ui.cards import rendered, voice_payload
from telegram_ui.digest_cards import digest_keyboard, digest_text, open_flags_text
from telegram_ui.recordings import send_recording
from telegram_ui.report_cards import period_name, report_text
from telegram_ui.states import ReportRange, Resolving
from telegram_ui.texts import export_labels

# How long "Resolved" waits for its note. Past it the next note is refused (press again), so a prompt left
# unanswered never turns a later message into a note, nor keeps the manager waiting for ever.
RESOLVE_NOTE_MINUTES = 30


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


@contextlib.asynccontextmanager
async def read_beside(unit: UpdateUnit, db: Database) -> AsyncIterator[AsyncSession]:
    """Finish the update's writes, then read (a report, a digest: seconds on a big project) through a
    session that holds up no writer; on SQLite the update's own transaction holds the write lock."""
    await unit.keep_so_far()
    async with db.read_session() as reading:
        yield reading


def manages(roles: Roles, project_id: int) -> bool:
    """Managers of that project, and global admins: who may press a project's manager buttons."""
    return roles.is_global_admin or roles.has(Role.MANAGER, project_id)


async def pressed_project(
    query: CallbackQuery, roles: Roles, session: AsyncSession, project_id: int, not_manager: str
) -> Project | None:
    """The project a manager's button names; None once the press is answered with why not (the presser
    does not manage it, or it is gone), so every button refuses alike."""
    if not manages(roles, project_id):
        await query.answer(_(not_manager), show_alert=True)
        return None
    project = await session.get(Project, project_id)
    if project is None:
        await query.answer(_("button-invalid"), show_alert=True)
    return project


async def managed_project_ids(session: AsyncSession, roles: Roles) -> list[int]:
    if roles.is_global_admin:
        return [p.id for p in await projects.list_projects(session)]
    return sorted(set(roles.projects(Role.MANAGER)))


async def _listed_projects(
    message: Message, session: AsyncSession, roles: Roles, not_manager: str, most: int
) -> list[Project]:
    """The projects a manager's command offers (the first `most`); none once the sender is told they
    manage none."""
    project_ids = await managed_project_ids(session, roles)
    if not project_ids:
        await message.answer(_(not_manager))
    listed = []
    for project_id in project_ids[:most]:
        project = await session.get(Project, project_id)
        assert project is not None
        listed.append(project)
    return listed


def _for_project(project: Project, label: str, several: bool) -> str:
    """A button's label, named after its project when the manager has several."""
    return f"{project.name}: {label}" if several else label


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
            audio = await dialogue_audio(session, contact.id)
            if audio and (audio.telegram_file_id or audio.storage_key):
                caption = _("card-voice-as-file").format(id=contact.id)
                # The recording refused here, or no longer stored (retention): the text still goes.
                with contextlib.suppress(TelegramAPIError, FileNotFoundError):
                    await send_recording(
                        bot, audio_store, query.message.chat.id, voice_payload(audio, caption)
                    )
            # Each part fits Telegram's 4096 characters; a long form comes whole, before the card.
            for text in contact_messages(await contact_view(session, contact), i18n.current_locale):
                await query.message.answer(text)
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
            await query.answer()
            if isinstance(query.message, Message):
                await _ask_for_note(query.message, alert.id, user, state)
    except AlertError as exc:
        await query.answer(alert_problem(exc.problem), show_alert=True)


async def _ask_for_note(where: Message, alert_id: int, user: User, state: FSMContext) -> None:
    """The note is asked with ForceReply, selective to the presser (mentioned in the prompt): in a group
    with privacy mode on (BotFather's default) the bot hears only commands and replies to its own messages,
    and the manager's client opens a reply to this prompt, which does reach it. The reply is then taken
    (in a group only that reply; in a private chat any text), for RESOLVE_NOTE_MINUTES."""
    mention = hd.link(hd.quote(user.display_name), f"tg://user?id={user.telegram_id}")
    prompt = await where.answer(
        _("alert-resolve-prompt").format(id=alert_id, name=mention, minutes=RESOLVE_NOTE_MINUTES),
        reply_markup=ForceReply(
            force_reply=True, selective=True, input_field_placeholder=_("alert-resolve-placeholder")
        ),
    )
    until = utcnow() + dt.timedelta(minutes=RESOLVE_NOTE_MINUTES)
    await state.set_state(Resolving.note)
    await state.set_data(
        {"alert_id": alert_id, "resolve_prompt": prompt.message_id, "resolve_until": until.isoformat()}
    )


async def addressed_note(message: Message, state: FSMContext) -> bool:
    """A message meant as the note: in a private chat any; in a group only the reply to this manager's
    prompt (with privacy mode off, or the bot an admin, everything said in the group arrives; the rest of
    the conversation there is not a note)."""
    if message.chat.type == "private":
        return True
    replied = message.reply_to_message
    prompt = (await state.get_data()).get("resolve_prompt")
    return replied is not None and prompt is not None and replied.message_id == int(prompt)


async def _note_alert(message: Message, state: FSMContext) -> int | None:
    """The alert the note is for; None (the state cleared, the manager told) once the wait ran out."""
    data = await state.get_data()
    await state.clear()
    alert_id = int(data.get("alert_id", 0))
    until = data.get("resolve_until")
    if until is not None and utcnow() > dt.datetime.fromisoformat(str(until)):
        await message.answer(_("alert-resolve-expired").format(id=alert_id, minutes=RESOLVE_NOTE_MINUTES))
        return None
    return alert_id


async def on_resolution_note(
    message: Message, session: AsyncSession, user: User, roles: Roles, state: FSMContext, i18n: I18n
) -> None:
    alert_id = await _note_alert(message, state)
    if alert_id is None:
        return
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
        await notify.queue_alert_thanks(session, chat_id, alert.id, text)
    await message.answer(_("alert-resolved-you").format(id=alert.id))


async def on_resolution_not_text(message: Message, state: FSMContext) -> None:
    data = await state.get_data()
    until = data.get("resolve_until")
    if until is not None and utcnow() > dt.datetime.fromisoformat(str(until)):
        await _note_alert(message, state)  # the wait ran out: say so and stop waiting
        return
    await message.answer(_("alert-resolve-text-only"))


async def export_command(
    message: Message, command: CommandObject, session: AsyncSession, roles: Roles
) -> None:
    """/billing (validated contacts per promoter, store and day) or /export (every contact), per project."""
    kind = ExportKind.BILLING if command.command == "billing" else ExportKind.CONTACTS
    listed = await _listed_projects(message, session, roles, "export-not-manager", 20)
    if not listed:
        return
    keyboard = InlineKeyboardBuilder()
    for project in listed:
        for period in ExportPeriod:
            keyboard.button(
                text=_for_project(project, _period_name(period), len(listed) > 1),
                callback_data=ExportButton(project=project.id, kind=kind, period=period),
            )
    keyboard.adjust(2)
    await message.answer(_("export-choose-period"), reply_markup=keyboard.as_markup())


async def on_export_button(
    query: CallbackQuery,
    callback_data: ExportButton,
    session: AsyncSession,
    unit: UpdateUnit,
    db: Database,
    roles: Roles,
    bot: Bot,
    settings: Settings,
) -> None:
    project = await pressed_project(query, roles, session, callback_data.project, "alert-not-manager")
    if project is None:
        return
    if callback_data.period is None or not isinstance(query.message, Message):
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
        unit, db, bot, settings, project, callback_data.kind, callback_data.fmt, start, end, status
    )


async def _send_export(
    unit: UpdateUnit,
    db: Database,
    bot: Bot,
    settings: Settings,
    project: Project,
    kind: ExportKind,
    fmt: str,
    start: dt.date,
    end: dt.date,
    status: Message,
) -> None:
    """Stream the rows into a file (progress edited into `status`), then send it as a document: zipped or in
    parts when it is over what a bot may upload (the manager is told which); a file Telegram still refuses
    is reported with its reason, never as "send it again"."""
    # The update's transaction ends here: a long export must not hold it (on SQLite, the write lock).
    await unit.keep_so_far()

    async def progress(rows: int) -> None:
        with contextlib.suppress(TelegramAPIError):
            await status.edit_text(_("export-progress").format(rows=rows))

    folder = settings.storage_root.parent / "exports"
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    name = f"{kind.value}-{project.id}-{start.isoformat()}-{end.isoformat()}.{fmt}"
    path = folder / f"{status.chat.id}-{status.message_id}-{name}"
    files: list[exports.ExportFile] = []
    try:
        try:
            packaged = await _export(
                db,
                project,
                kind,
                fmt,
                start,
                end,
                path,
                name,
                settings.export_max_file_bytes,
                progress,
            )
        except exports.ExportTooLarge:
            await status.edit_text(_("export-too-large"))
            return
        files = packaged.files
        try:
            for index, file in enumerate(files, 1):
                caption = _("export-ready").format(
                    rows=file.rows, start=start.isoformat(), end=end.isoformat()
                )
                if packaged.split:
                    caption = _("export-part").format(part=index, parts=len(files)) + "\n" + caption
                await bot.send_document(
                    status.chat.id, FSInputFile(file.path, filename=file.name), caption=caption
                )
        except TelegramAPIError as exc:  # refused (too large, the chat gone, ...): say why, once
            with contextlib.suppress(TelegramAPIError):
                await status.edit_text(_("export-not-sent").format(error=hd.quote(exc.message)))
            return
        done = [_("export-done").format(rows=packaged.rows)]
        if packaged.split:
            done.append(_("export-done-parts").format(parts=len(files)))
        elif packaged.zipped:
            done.append(_("export-done-zipped"))
        await status.edit_text("\n".join(done))
    finally:
        for file in files:
            await asyncio.to_thread(file.path.unlink, missing_ok=True)
        await asyncio.to_thread(path.unlink, missing_ok=True)


async def _export(
    db: Database,
    project: Project,
    kind: ExportKind,
    fmt: str,
    start: dt.date,
    end: dt.date,
    path: Path,
    name: str,
    limit: int,
    progress: exports.Progress,
) -> exports.Package:
    columns: tuple[exports.Column, ...]
    total: int | None
    if kind == ExportKind.BILLING:  # days not rolled up yet are counted from the contacts either way
        await billing.refresh(db, project.id, start, end)
    labels = export_labels()  # the manager's language, read here: the file is written in a thread
    async with db.reader() as connection:
        rows: exports.RowSource  # called once per pass (a second pass when the file goes in parts)
        if kind == ExportKind.BILLING:
            columns, total = labels.columns(exports.BILLING_COLUMNS), 4
            rows = functools.partial(exports.billing_rows, connection, project, start, end)
        else:
            columns, total = labels.columns(exports.CONTACT_COLUMNS), None
            rows = functools.partial(exports.contact_rows, connection, project, start, end, labels)

        def sink_for(target: Path) -> exports.Sink:
            if fmt == "xlsx":
                return exports.XlsxSink(target, kind.value, columns, total, labels.total)
            return exports.CsvSink(target, columns)

        return await exports.package(rows, sink_for, path, name=name, limit=limit, progress=progress)


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
    for project in await _listed_projects(message, session, roles, "alert-not-manager", 10):
        await message.answer(
            _("alerts-menu").format(project=hd.quote(project.name)), reply_markup=_mute_keyboard(project)
        )


async def on_mute_button(
    query: CallbackQuery, callback_data: AlertMuteButton, session: AsyncSession, roles: Roles
) -> None:
    project = await pressed_project(query, roles, session, callback_data.project, "alert-not-manager")
    if project is None:
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
    unit: UpdateUnit,
    db: Database,
    roles: Roles,
    bot: Bot,
    settings: Settings,
    i18n: I18n,
) -> None:
    """The buttons under a digest: that day's contacts (XLSX), its promoters, its open flags, the day before."""
    project = await pressed_project(query, roles, session, callback_data.project, "report-not-manager")
    if project is None:
        return
    try:
        day = dt.date.fromordinal(callback_data.day)
    except ValueError:
        day = None
    if day is None or not isinstance(query.message, Message):
        await query.answer(_("button-invalid"), show_alert=True)
        return
    await query.answer()
    action = callback_data.action
    if action == DigestAction.CONTACTS:
        status = await query.message.answer(_("export-started"))
        await _send_export(unit, db, bot, settings, project, ExportKind.CONTACTS, "xlsx", day, day, status)
        return
    async with read_beside(unit, db) as reading:
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
    listed = await _listed_projects(message, session, roles, "report-not-manager", 20)
    if not listed:
        return
    keyboard = InlineKeyboardBuilder()
    for project in listed:
        several = len(listed) > 1
        for period in Period:
            keyboard.button(
                text=_for_project(project, period_name(period), several),
                callback_data=ReportButton(project=project.id, period=period),
            )
        keyboard.button(
            text=_for_project(project, _("report-range-button"), several),
            callback_data=ReportRangeButton(project=project.id),
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


async def on_report_range(
    message: Message,
    session: AsyncSession,
    unit: UpdateUnit,
    db: Database,
    roles: Roles,
    state: FSMContext,
) -> None:
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
    async with read_beside(unit, db) as reading:
        report = await build_report(reading, project, first, last)
    await message.answer(report_text(report))


async def on_report_button(
    query: CallbackQuery,
    callback_data: ReportButton,
    session: AsyncSession,
    unit: UpdateUnit,
    db: Database,
    roles: Roles,
) -> None:
    project = await pressed_project(query, roles, session, callback_data.project, "report-not-manager")
    if project is None:
        return
    if not isinstance(query.message, Message):
        await query.answer(_("button-invalid"), show_alert=True)
        return
    await query.answer()
    today = utcnow().astimezone(ZoneInfo(project.timezone)).date()
    first, last = period_days(callback_data.period, today)
    async with read_beside(unit, db) as reading:
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
    router.message.register(
        on_resolution_note, Resolving.note, F.text, ~F.text.startswith("/"), addressed_note
    )
    router.message.register(on_resolution_not_text, Resolving.note, ~F.text, addressed_note)
    return router
