"""What follows a submitted review: the promoter's feedback (queued to go out once the undo window has
passed, withdrawn by services.review.undo_review) and the managers' alerts on fraud or a rejection streak."""

from __future__ import annotations

import datetime as dt

from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder
from sqlalchemy.ext.asyncio import AsyncSession

from models import AlertKind, Assignment, AssignmentKind, Contact, Project, Review, User, Verdict
from models.base import utcnow
from services import alerts, review
from services.outbox import enqueue
from services.scorecard import scorecard_of
from telegram_ui.alert_cards import raise_and_send
from telegram_ui.cards import DisputeButton, feedback_text, rendered


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
        payload: dict[str, object] = {"text": text}
        if assignment.kind == AssignmentKind.PRIMARY:
            keyboard = InlineKeyboardBuilder()
            keyboard.button(
                text=rendered(i18n, locale, lambda: _("my-dispute-button").format(id=contact.id)),
                callback_data=DisputeButton(contact_id=contact.id),
            )
            payload["reply_markup"] = keyboard.as_markup().model_dump(exclude_none=True)
        await enqueue(
            session,
            promoter.telegram_id,
            "sendMessage",
            payload,
            dedupe_key=review.feedback_key(submitted.id),
            not_before=utcnow() + dt.timedelta(seconds=review.UNDO_SECONDS),
        )
    if submitted.verdict == Verdict.FRAUD:
        await raise_and_send(
            session,
            i18n,
            project,
            AlertKind.FRAUD,
            f"fraud:{submitted.id}",
            contact_id=contact.id,
            promoter=promoter.display_name,
            comment=submitted.comment or "—",
        )
    if assignment.kind == AssignmentKind.PRIMARY and submitted.verdict != Verdict.APPROVE:
        streak = await alerts.rejection_streak(session, project, promoter.id)
        if streak:
            await raise_and_send(
                session,
                i18n,
                project,
                AlertKind.REJECTION_STREAK,
                f"rejections:{promoter.id}:{streak[-1]}",  # named by its first contact: once per streak
                contact_id=contact.id,
                promoter=promoter.display_name,
                count=len(streak),
                contacts=", ".join(f"#{c}" for c in sorted(streak)[:10]) + (" …" if len(streak) > 10 else ""),
            )
