"""What follows a submitted review: the promoter's feedback (queued to go out once the undo window has
passed, withdrawn by services.review.undo_review) and the managers' alerts on fraud or a rejection streak."""

from __future__ import annotations

import datetime as dt

from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder
from aiogram.utils.text_decorations import html_decoration as hd
from sqlalchemy.ext.asyncio import AsyncSession

from models import Assignment, AssignmentKind, Contact, Project, Review, User, Verdict
from models.base import utcnow
from models.payloads import Fraud, RejectionStreak
from services import alerts, review
from services.automatic import AutomaticDecision
from services.forms import localized
from services.scorecard import scorecard_of
from telegram_ui import notify
from telegram_ui.alert_cards import raise_and_send
from telegram_ui.callbacks import DisputeButton
from telegram_ui.cards import feedback_text, rendered, verdict_result


def dispute_markup(i18n: I18n, locale: str, contact_id: int) -> InlineKeyboardMarkup:
    keyboard = InlineKeyboardBuilder()
    keyboard.button(
        text=rendered(i18n, locale, lambda: _("my-dispute-button").format(id=contact_id)),
        callback_data=DisputeButton(contact_id=contact_id),
    )
    return keyboard.as_markup()


def automatic_feedback_text(decision: AutomaticDecision, project: Project, locale: str) -> str:
    """What the promoter sees of an automatic verdict: the verdict and the script items not heard."""
    scorecard = scorecard_of(project.scorecard)
    names = {c.key: localized(c.text, locale) for c in scorecard.criteria}
    failed = [
        names.get(str(check.get("scorecard")), str(check.get("key")))
        for check in decision.speech.get("checks") or []
        if check.get("status") == "not_done"
    ]
    return _("feedback-automatic").format(
        id=decision.contact.id,
        verdict=verdict_result(decision.verdict),
        failed=hd.quote(", ".join(dict.fromkeys(failed)) or "—"),
    )


async def queue_after_automatic(
    session: AsyncSession, i18n: I18n, project: Project, decision: AutomaticDecision
) -> None:
    """A contact decided automatically: the promoter is told at once (no reviewer can take it back), with
    the same dispute button as a reviewer's verdict; a rejection counts towards the streak alert."""
    contact = decision.contact
    promoter = await session.get(User, contact.promoter_id)
    assert promoter is not None
    locale = promoter.locale or i18n.default_locale
    text = rendered(i18n, locale, automatic_feedback_text, decision, project, locale)
    await notify.queue_automatic_feedback(
        session, promoter.telegram_id, contact.id, text, dispute_markup(i18n, locale, contact.id)
    )
    if decision.verdict != Verdict.APPROVE:
        await _alert_streak(session, i18n, project, promoter, contact)


async def _alert_streak(
    session: AsyncSession, i18n: I18n, project: Project, promoter: User, contact: Contact
) -> None:
    streak = await alerts.rejection_streak(session, project, promoter.id)
    if streak:
        shown = ", ".join(f"#{c}" for c in sorted(streak)[:10]) + (" …" if len(streak) > 10 else "")
        await raise_and_send(
            session,
            i18n,
            alerts.AlertRequest(
                project.id,
                RejectionStreak(promoter=promoter.display_name, count=len(streak), contacts=shown),
                contact.id,
                dedupe_key=f"rejections:{promoter.id}:{streak[-1]}",  # named by its first contact: once per streak
            ),
        )


async def queue_after_review(
    session: AsyncSession, i18n: I18n, project: Project, assignment: Assignment, submitted: Review
) -> None:
    """Feedback after the undo window; an immediate alert to managers on fraud."""
    contact = await session.get(Contact, submitted.contact_id)
    assert contact is not None
    promoter = await session.get(User, contact.promoter_id)
    assert promoter is not None
    scorecard = scorecard_of(project.scorecard)
    if assignment.kind in (AssignmentKind.PRIMARY, AssignmentKind.REREVIEW):
        locale = promoter.locale or i18n.default_locale
        text = rendered(i18n, locale, feedback_text, submitted, scorecard, locale)
        # A re-review is final: no dispute button under it.
        keyboard = (
            dispute_markup(i18n, locale, contact.id) if assignment.kind == AssignmentKind.PRIMARY else None
        )
        await notify.queue_feedback(
            session,
            promoter.telegram_id,
            submitted.id,
            text,
            keyboard,
            not_before=utcnow() + dt.timedelta(seconds=review.UNDO_SECONDS),
        )
    if submitted.verdict == Verdict.FRAUD:
        await raise_and_send(
            session,
            i18n,
            alerts.AlertRequest(
                project.id,
                Fraud(promoter=promoter.display_name, comment=submitted.comment or "—"),
                contact.id,
                dedupe_key=f"fraud:{submitted.id}",
            ),
        )
    if assignment.kind == AssignmentKind.PRIMARY and submitted.verdict != Verdict.APPROVE:
        await _alert_streak(session, i18n, project, promoter, contact)
