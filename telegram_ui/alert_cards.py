"""Manager alerts as messages: text, buttons, and their updates when someone takes or resolves one.

Shared by the manager router (presses), the customer router (a detractor's answer) and the jobs (repeats,
a detractor who never wrote a follow-up); everything goes through the outbox.
"""

from __future__ import annotations

from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder
from aiogram.utils.text_decorations import html_decoration as hd
from sqlalchemy.ext.asyncio import AsyncSession

from models import (
    AlertKind,
    AlertStatus,
    ManagerAlert,
    NpsScale,
    Project,
    crypto,
)
from models.payloads import ClientDetractor, Detractor, OperationAlert
from services import alerts, people
from services.alerts import AlertView
from services.contact_view import ContactView
from telegram_ui import notify
from telegram_ui.callbacks import AlertAction, AlertButton
from telegram_ui.cards import (
    answer_lines,
    fit,
    flag_line,
    form_is_shortened,
    full_form_messages,
    receipt_status_line,
    rendered,
)


def score_label(scale: NpsScale | str, score: int) -> str:
    if scale == NpsScale.THREE_POINT:
        return (_("nps-bad"), _("nps-good"), _("nps-excellent"))[score]
    return f"{score}/10"


def alert_kind_name(kind: AlertKind) -> str:
    return {
        AlertKind.DETRACTOR: _("alert-kind-detractor"),
        AlertKind.CLIENT_DETRACTOR: _("alert-kind-client-detractor"),
        AlertKind.FRAUD: _("alert-kind-fraud"),
        AlertKind.REPEATED_VOICE: _("alert-kind-repeated-voice"),
        AlertKind.SLA_STREAK: _("alert-kind-sla"),
        AlertKind.EXHAUSTED: _("alert-kind-exhausted"),
        AlertKind.REJECTION_STREAK: _("alert-kind-rejections"),
        AlertKind.ANALYSIS_BACKLOG: _("alert-kind-backlog"),
        AlertKind.REVIEWER_IDLE: _("alert-kind-idle"),
    }[kind]


def _customer_lines(alert: AlertView, d: Detractor | ClientDetractor) -> list[str]:
    score = score_label(d.scale, d.score)
    if isinstance(d, ClientDetractor):
        lines = [
            _("alert-client-detractor").format(
                project=hd.quote(alert.project_name), client=hd.quote(d.client), score=score
            )
        ]
    else:
        lines = [
            _("alert-detractor").format(
                project=hd.quote(alert.project_name),
                id=alert.contact_id,
                promoter=hd.quote(d.promoter),
                score=score,
            )
        ]
        if d.store:
            lines.append(_("alert-store").format(store=hd.quote(d.store)))
    verbatim = crypto.reveal_any(d.verbatim)
    lines.append(_("alert-verbatim").format(text=hd.quote(verbatim)) if verbatim else _("alert-no-verbatim"))
    return lines


def _operation_line(alert: AlertView, d: OperationAlert) -> str:
    """Alerts about the operation itself: the details were fixed when it was raised."""
    name = hd.quote(alert.project_name)
    quoted = {k: hd.quote(v) if isinstance(v, str) else v for k, v in d.stored().items()}
    template = {
        AlertKind.FRAUD: _("alert-fraud"),
        AlertKind.REPEATED_VOICE: _("alert-repeated-voice"),
        AlertKind.SLA_STREAK: _("alert-sla"),
        AlertKind.EXHAUSTED: _("alert-exhausted"),
        AlertKind.REJECTION_STREAK: _("alert-rejection-streak"),
        AlertKind.ANALYSIS_BACKLOG: _("alert-backlog"),
        AlertKind.REVIEWER_IDLE: _("alert-reviewer-idle"),
    }[alert.kind]
    return template.format(**quoted, id=alert.contact_id, project=name)


def alert_text(alert: AlertView) -> str:
    details = alert.details
    if isinstance(details, Detractor | ClientDetractor):
        lines = _customer_lines(alert, details)
    else:
        lines = [_operation_line(alert, details)]
    if alert.status == AlertStatus.TAKEN:
        lines.append(_("alert-taken-by").format(name=hd.quote(alert.taker or "?")))
    elif alert.status == AlertStatus.RESOLVED:
        lines.append(
            _("alert-resolved-by").format(
                name=hd.quote(alert.resolver or "?"), note=hd.quote(alert.resolution_note or "—")
            )
        )
    return "\n".join(lines)


def alert_keyboard(alert: AlertView) -> InlineKeyboardMarkup:
    keyboard = InlineKeyboardBuilder()
    if alert.contact_id is not None:
        keyboard.button(
            text=_("btn-alert-open"), callback_data=AlertButton(action=AlertAction.OPEN, id=alert.id)
        )
    if alert.status == AlertStatus.OPEN:
        keyboard.button(
            text=_("btn-alert-take"), callback_data=AlertButton(action=AlertAction.TAKE, id=alert.id)
        )
    if alert.status != AlertStatus.RESOLVED:
        keyboard.button(
            text=_("btn-alert-resolve"), callback_data=AlertButton(action=AlertAction.RESOLVE, id=alert.id)
        )
    keyboard.button(text=_("btn-alert-mute"), callback_data=AlertButton(action=AlertAction.MUTE, id=alert.id))
    keyboard.adjust(*([1] if alert.contact_id is not None else []), 2, 1)
    return keyboard.as_markup()


def contact_messages(view: ContactView, locale: str) -> list[str]:
    """What "Open contact" sends: the contact as a reviewer's card shows it (answers, flags, status), fitted to
    Telegram's 4096 characters. When an answer is shortened there or answers are left out, the whole form
    comes first, in as many messages as it takes (telegram_ui.cards.full_form_messages), and the card says
    how many answers it left out: nothing is lost, and no message is refused as too long."""
    contact, project = view.contact, view.project
    head = [_("card-title").format(id=contact.id, project=hd.quote(project.name))]
    answers = answer_lines(contact, project, locale)
    tail = [*(flag_line(flag) for flag in view.flags), receipt_status_line(contact)]
    card = fit(head, answers, tail)
    if card != "\n".join([*head, *answers, *tail]) or form_is_shortened(contact, project, locale):
        return [*full_form_messages(contact, project, locale), card]
    return [card]


async def enqueue_alert(
    session: AsyncSession, i18n: I18n, alert: ManagerAlert, *, repeat: bool = False
) -> int:
    """Send the alert to the project's managers; returns how many chats it went to."""
    project = await session.get(Project, alert.project_id)
    assert project is not None
    view = await alerts.alert_view(session, alert)
    chats = await people.manager_chats(session, project)
    for chat_id, locale in chats:
        text = rendered(i18n, locale, alert_text, view)
        if repeat:
            text = rendered(i18n, locale, lambda: _("alert-repeat")) + "\n" + text
        keyboard = rendered(i18n, locale, alert_keyboard, view)
        await notify.queue_alert_copy(session, chat_id, alert.id, text, keyboard, repeat=repeat)
    return len(chats)


async def enqueue_alert_updates(session: AsyncSession, i18n: I18n, alert: ManagerAlert) -> int:
    """Every copy of the alert (first and repeated) is edited to show who took or resolved it."""
    project = await session.get(Project, alert.project_id)
    assert project is not None
    view = await alerts.alert_view(session, alert)
    locales = dict(await people.manager_chats(session, project))
    copies = await notify.live_alert_copies(session, alert.id)
    for chat_id, copy_key in copies:
        locale = locales.get(chat_id)
        text = rendered(i18n, locale, alert_text, view)
        keyboard = rendered(i18n, locale, alert_keyboard, view)
        await notify.queue_alert_edit(session, chat_id, copy_key, text, keyboard)
    return len(copies)


async def raise_and_send(
    session: AsyncSession, i18n: I18n, request: alerts.AlertRequest
) -> ManagerAlert | None:
    """The one way an alert is raised: stored once (per survey or dedupe key; not at all when muted) and,
    in the same transaction, queued to every manager of the project. None: raised before or muted."""
    alert = await alerts.raise_alert(session, request)
    if alert is not None:
        await enqueue_alert(session, i18n, alert)
    return alert
