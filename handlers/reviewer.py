"""Reviewers: shifts, the card's buttons (marks, verdicts, comment, return, undo), and Take in the group.

Callback data carries only ids; every press is checked against the database: only the assigned reviewer
may touch a card, only while it is open; only a reviewer of the project may take from its group.
"""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from aiogram.utils.text_decorations import html_decoration as hd
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.filters import role_router
from models import (
    Assignment,
    AssignmentStatus,
    Contact,
    Project,
    Review,
    Role,
    User,
    Verdict,
)
from services import people, review
from services.contact_view import card_view
from services.scorecard import scorecard_of
from services.users import Roles
from telegram_ui import cards, review_notices
from telegram_ui.callbacks import CardAction, CardButton, TakeButton, UndoButton
from telegram_ui.cards import VERDICTS
from telegram_ui.states import ReviewComment


async def shift_on(message: Message, session: AsyncSession, user: User) -> None:
    await people.set_shift(session, user, True)
    await message.answer(_("shift-on"))


async def shift_off(message: Message, session: AsyncSession, user: User) -> None:
    await people.set_shift(session, user, False)
    await message.answer(_("shift-off"))


async def _refresh_card(
    query: CallbackQuery, session: AsyncSession, assignment: Assignment, i18n: I18n
) -> None:
    if not isinstance(query.message, Message):
        return
    locale = i18n.current_locale
    view = await card_view(session, assignment)
    await query.message.edit_text(
        cards.card_text(view, assignment, locale), reply_markup=cards.card_keyboard(view, assignment, locale)
    )


async def _project_of(session: AsyncSession, assignment: Assignment) -> Project:
    contact = await session.get(Contact, assignment.contact_id)
    assert contact is not None
    project = await session.get(Project, contact.project_id)
    assert project is not None
    return project


async def _own_open_card(
    query: CallbackQuery, callback_data: CardButton, session: AsyncSession, user: User, roles: Roles
) -> tuple[Assignment, Project] | None:
    """The pressed card, if it is the presser's own, still open, and they still review its project.

    The card is read locked (services.review.lock_card): two presses in one burst take turns, and the later
    one is told the card is already rated rather than acting on a card that was open when it arrived."""
    assignment = await review.lock_card(session, callback_data.assignment)
    if assignment is None or assignment.reviewer_id != user.id:
        await query.answer(_("button-forbidden"), show_alert=True)
        return None
    if assignment.status != AssignmentStatus.OPEN:
        await query.answer(_closed_text(assignment), show_alert=True)
        return None
    if assignment.message_id is None and isinstance(query.message, Message):
        # The press came from the card itself: remember where it is, even before the outbox has recorded it.
        assignment.chat_id, assignment.message_id = query.message.chat.id, query.message.message_id
    project = await _project_of(session, assignment)
    if not roles.has(
        Role.REVIEWER, project.id
    ):  # removed from this project (maybe still a reviewer elsewhere)
        await query.answer(_("button-forbidden"), show_alert=True)
        return None
    return assignment, project


def _closed_text(assignment: Assignment) -> str:
    """Why a card takes no more presses: rated already (a second press in a burst), or closed otherwise."""
    if assignment.status == AssignmentStatus.DONE:
        return _("review-already-submitted")
    return _("card-closed")


async def on_mark(
    query: CallbackQuery,
    callback_data: CardButton,
    session: AsyncSession,
    user: User,
    roles: Roles,
    i18n: I18n,
) -> None:
    card = await _own_open_card(query, callback_data, session, user, roles)
    if card is None:
        return
    assignment, project = card
    try:
        review.cycle_mark(assignment, scorecard_of(project.scorecard), callback_data.k)
    except review.ReviewError:
        await query.answer(_("button-invalid"), show_alert=True)
        return
    await session.flush()
    await query.answer()
    await _refresh_card(query, session, assignment, i18n)


async def on_verdict(
    query: CallbackQuery,
    callback_data: CardButton,
    session: AsyncSession,
    user: User,
    roles: Roles,
    state: FSMContext,
    i18n: I18n,
) -> None:
    if not 0 <= callback_data.k < len(VERDICTS):
        await query.answer(_("button-invalid"), show_alert=True)
        return
    card = await _own_open_card(query, callback_data, session, user, roles)
    if card is not None:
        await _submit(query, session, card[0], card[1], VERDICTS[callback_data.k], state, i18n)


async def on_comment_button(
    query: CallbackQuery,
    callback_data: CardButton,
    session: AsyncSession,
    user: User,
    roles: Roles,
    state: FSMContext,
) -> None:
    card = await _own_open_card(query, callback_data, session, user, roles)
    if card is None:
        return
    assignment = card[0]
    await state.set_state(ReviewComment.text)
    await state.set_data({"assignment_id": assignment.id})
    await query.answer()
    if isinstance(query.message, Message):
        await query.message.answer(
            _("comment-ask").format(id=assignment.contact_id, limit=review.COMMENT_LIMIT)
        )


async def on_return(
    query: CallbackQuery, callback_data: CardButton, session: AsyncSession, user: User, roles: Roles
) -> None:
    card = await _own_open_card(query, callback_data, session, user, roles)
    if card is None:
        return
    assignment = card[0]
    await review.return_assignment(session, assignment)
    await query.answer()
    if isinstance(query.message, Message):
        await query.message.edit_text(_("card-returned").format(id=assignment.contact_id))


async def on_take(
    query: CallbackQuery,
    callback_data: TakeButton,
    session: AsyncSession,
    user: User,
    roles: Roles,
    i18n: I18n,
) -> None:
    await _take(query, callback_data.assignment, session, user, roles, i18n)


async def on_undo(
    query: CallbackQuery, callback_data: UndoButton, session: AsyncSession, user: User, i18n: I18n
) -> None:
    await _undo(query, callback_data.review, session, user, i18n)


async def _submit(
    query: CallbackQuery | None,
    session: AsyncSession,
    assignment: Assignment,
    project: Project,
    verdict: Verdict,
    state: FSMContext,
    i18n: I18n,
    message: Message | None = None,
) -> None:
    scorecard = scorecard_of(project.scorecard)
    comment = assignment.draft_comment
    try:
        submitted = await review.submit_review(
            session, assignment, scorecard, project, verdict, comment=comment
        )
    except review.ReviewError as exc:
        if exc.problem == review.ReviewProblem.COMMENT_REQUIRED:
            await state.set_state(ReviewComment.text)
            await state.set_data({"assignment_id": assignment.id, "verdict": verdict.value})
            if query:
                await query.answer()
            target = message or (query.message if query and isinstance(query.message, Message) else None)
            if target:
                await target.answer(_("comment-required").format(id=assignment.contact_id))
            return
        text = {
            review.ReviewProblem.MISSING_MARKS: _("review-missing-marks"),
            review.ReviewProblem.CRITICAL_APPROVE: _("review-critical-approve"),
            review.ReviewProblem.ALREADY_SUBMITTED: _("review-already-submitted"),
        }.get(exc.problem, _("button-invalid"))
        if query:
            await query.answer(text, show_alert=True)
        elif message:
            await message.answer(text)
        return
    await review_notices.queue_after_review(session, i18n, project, assignment, submitted)
    if (
        await state.get_state() == ReviewComment.text.state
        and (await state.get_data()).get("assignment_id") == assignment.id
    ):  # a comment asked for this card (Fraud pressed just before Approve) is no longer awaited
        await state.clear()
    if query:
        await query.answer()
    text, keyboard = cards.submitted_text(submitted), cards.undo_keyboard(submitted)
    if query and isinstance(query.message, Message):
        await query.message.edit_text(text, reply_markup=keyboard)
    elif message and message.bot and assignment.chat_id and assignment.message_id:
        await message.bot.edit_message_text(
            text=text,
            chat_id=assignment.chat_id,
            message_id=assignment.message_id,
            reply_markup=keyboard,
        )


async def _undo(query: CallbackQuery, review_id: int, session: AsyncSession, user: User, i18n: I18n) -> None:
    submitted = await session.get(Review, review_id)
    if submitted is None or submitted.reviewer_id != user.id:
        await query.answer(_("button-forbidden"), show_alert=True)
        return
    try:
        assignment = await review.undo_review(session, submitted)
    except review.ReviewError:
        await query.answer(_("undo-too-late"), show_alert=True)
        return
    await query.answer(_("undo-done"))
    await _refresh_card(query, session, assignment, i18n)


async def _take(
    query: CallbackQuery, assignment_id: int, session: AsyncSession, user: User, roles: Roles, i18n: I18n
) -> None:
    assignment = await session.get(Assignment, assignment_id)
    if assignment is None:
        await query.answer(_("button-invalid"), show_alert=True)
        return
    project = await _project_of(session, assignment)
    if not roles.has(Role.REVIEWER, project.id):
        await query.answer(_("button-forbidden"), show_alert=True)
        return
    chat_id = query.message.chat.id if query.message else None
    if chat_id is None or chat_id != project.reviewers_chat_id:
        # Offers live in the project's reviewers' group only: a Take forged from anywhere else (a private
        # chat, another group) takes nothing and edits nothing.
        await query.answer(_("button-invalid"), show_alert=True)
        return
    result = await review.take_offer(session, assignment_id, user, project)
    if result == review.TakeResult.TAKEN:
        await cards.enqueue_card(session, i18n, assignment)
        await query.answer(_("take-won"))
        if isinstance(query.message, Message):
            group_text = cards.rendered(i18n, None, lambda: _("offer-taken"))  # the group's language
            await query.message.edit_text(
                group_text.format(id=assignment.contact_id, name=hd.quote(user.first_name))
            )
        return
    texts = {
        review.TakeResult.ALREADY_TAKEN: _("take-lost"),
        review.TakeResult.OWN_CONTACT: _("take-own"),
        review.TakeResult.AT_CAPACITY: _("take-full"),
    }
    await query.answer(texts[result], show_alert=True)


async def on_comment(
    message: Message, state: FSMContext, session: AsyncSession, user: User, roles: Roles, i18n: I18n
) -> None:
    data = await state.get_data()
    assignment = await review.lock_card(session, int(data.get("assignment_id", 0)))
    if assignment is None or assignment.reviewer_id != user.id or assignment.status != AssignmentStatus.OPEN:
        await state.clear()
        await message.answer(_closed_text(assignment) if assignment is not None else _("card-closed"))
        return
    project = await _project_of(session, assignment)
    if not roles.has(Role.REVIEWER, project.id):
        await state.clear()
        await message.answer(_("button-forbidden"))
        return
    try:
        review.set_comment(assignment, message.text or "")
    except review.ReviewError:
        # Too long: nothing is kept cut. The reviewer's own message stays in the chat to shorten, and the bot
        # still waits for the comment (and the verdict that needs it), so the next message is taken.
        await message.answer(
            _("comment-too-long").format(
                length=review.comment_length((message.text or "").strip()), limit=review.COMMENT_LIMIT
            )
        )
        return
    await state.clear()
    await session.flush()
    if data.get("verdict"):
        await _submit(
            None, session, assignment, project, Verdict(data["verdict"]), state, i18n, message=message
        )
        return
    await message.answer(_("comment-saved"))
    if assignment.chat_id and assignment.message_id and message.bot:
        locale = i18n.current_locale
        view = await card_view(session, assignment)
        await message.bot.edit_message_text(
            text=cards.card_text(view, assignment, locale),
            chat_id=assignment.chat_id,
            message_id=assignment.message_id,
            reply_markup=cards.card_keyboard(view, assignment, locale),
        )


async def my_cards(message: Message, session: AsyncSession, user: User) -> None:
    open_ids = await review.open_card_contacts(session, user.id)
    await message.answer(
        _("reviewer-open-cards").format(count=len(open_ids), ids=", ".join(f"#{i}" for i in open_ids) or "—")
    )


def create_router() -> Router:
    router = role_router(__name__, Role.REVIEWER)
    router.message.register(shift_on, Command("on"))
    router.message.register(shift_off, Command("off"))
    router.message.register(my_cards, Command("cards"))
    router.callback_query.register(on_mark, CardButton.filter(F.action == CardAction.MARK))
    router.callback_query.register(on_verdict, CardButton.filter(F.action == CardAction.VERDICT))
    router.callback_query.register(on_comment_button, CardButton.filter(F.action == CardAction.COMMENT))
    router.callback_query.register(on_return, CardButton.filter(F.action == CardAction.RETURN))
    router.callback_query.register(on_take, TakeButton.filter())
    router.callback_query.register(on_undo, UndoButton.filter())
    router.message.register(on_comment, StateFilter(ReviewComment.text), F.text, ~F.text.startswith("/"))
    return router
