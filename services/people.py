"""Who gets told: managers of a project, and each person's language."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models import Assignment, AssignmentStatus, Contact, Membership, Project, Role, User
from services import review
from services.users import active_in


async def manager_chats(session: AsyncSession, project: Project) -> list[tuple[int, str | None]]:
    """(chat id, locale): the managers' group if the project has one, else each manager privately."""
    if project.managers_chat_id:
        return [(project.managers_chat_id, None)]
    rows = await session.execute(
        select(User.telegram_id, User.locale)
        .join(Membership, Membership.user_id == User.id)
        .where(active_in(project.id, Role.MANAGER))
        .order_by(User.id)
    )
    return [(int(chat), locale) for chat, locale in rows.all()]


async def set_shift(session: AsyncSession, user: User, on_shift: bool) -> int:
    memberships = list(
        await session.scalars(
            select(Membership).where(
                Membership.user_id == user.id,
                Membership.role == Role.REVIEWER,
                Membership.is_active.is_(True),
            )
        )
    )
    for membership in memberships:
        membership.on_shift = on_shift
    await session.flush()
    return len(memberships)


async def remove_member(
    session: AsyncSession,
    project: Project,
    user: User,
    role: Role,
    *,
    on_taken_back: Callable[[Assignment], Awaitable[None]] | None = None,
) -> int:
    """Deactivate a membership; a reviewer's open cards in this project go back to the queue at once, and
    `on_taken_back` is called for each (in this transaction) so the card in their chat can be edited to say
    so (telegram_ui.cards.enqueue_card_closed). Returns how many cards were taken back."""
    await session.execute(
        update(Membership)
        .where(Membership.user_id == user.id, Membership.project_id == project.id, Membership.role == role)
        .values(is_active=False)
    )
    if role != Role.REVIEWER:
        return 0
    open_cards = list(
        await session.scalars(
            select(Assignment)
            .join(Contact, Contact.id == Assignment.contact_id)
            .where(
                Contact.project_id == project.id,
                Assignment.reviewer_id == user.id,
                Assignment.status.in_([AssignmentStatus.OPEN, AssignmentStatus.OFFERED]),
            )
        )
    )
    for assignment in open_cards:
        await review.return_assignment(session, assignment)
        if on_taken_back is not None:
            await on_taken_back(assignment)
    return len(open_cards)
