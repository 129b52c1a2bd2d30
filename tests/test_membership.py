"""Removed members lose access at once (issue #14 item 8): a reviewer removed from project A, still a
reviewer in B, cannot rate an open A card; `remove_member` hands their open cards back to the queue; a
promoter removed mid-form cannot submit into that project."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.app import Runtime
from jobs import review as review_jobs
from models import (
    Assignment,
    AssignmentStatus,
    Contact,
    ContactStatus,
    Membership,
    Project,
    Review,
    Role,
    User,
)
from services import people
from telegram_standin import StandIn
from tests.helpers import (
    fill_default_form,
    join,
    join_as_promoter,
    label,
    queued_contact,
    rita_with_a_card,
    seed_project,
    text,
)


async def _deactivate(sessions: async_sessionmaker[AsyncSession], telegram_id: int, project_id: int) -> None:
    async with sessions() as session, session.begin():
        user_id = select(User.id).where(User.telegram_id == telegram_id).scalar_subquery()
        await session.execute(
            update(Membership)
            .where(Membership.user_id == user_id, Membership.project_id == project_id)
            .values(is_active=False)
        )


async def test_reviewer_removed_from_one_project_cannot_rate_its_cards(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession]
) -> None:
    project_a, project_b = await seed_project(sessions, "A"), await seed_project(sessions, "B")
    async with sessions() as session, session.begin():
        await session.execute(update(Project).values(analysis_wait_minutes=0))
    rita = await join(tg, sessions, project_a, Role.REVIEWER, 3010, "Rita")
    await join(tg, sessions, project_b, Role.REVIEWER, 3010, "Rita")
    contact_id = await queued_contact(sessions, project_a)
    await review_jobs.dispatch(sessions, app.i18n)
    card = await rita.skip_to(text("card-title", id=contact_id, project=project_a.name))

    await _deactivate(sessions, 3010, project_a.id)
    for key in ("verdict-approve", "btn-comment"):
        query = await rita.press(card, label(key))
        assert (await rita.callback_answer(query))["text"] == label("button-forbidden")
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Review)) == 0


async def test_remove_member_returns_open_cards_to_the_queue(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession]
) -> None:
    project = await seed_project(sessions, analysis_wait_minutes=0)
    _rita, contact_id, _card = await rita_with_a_card(app, tg, sessions, project)
    async with sessions() as session, session.begin():
        user = (await session.scalars(select(User).where(User.telegram_id == 3010))).one()
        project_row = await session.get(Project, project.id)
        assert project_row is not None
        assert await people.remove_member(session, project_row, user, Role.REVIEWER) == 1
    async with sessions() as session:
        assignment = (await session.scalars(select(Assignment))).one()
        contact = await session.get(Contact, contact_id)
    assert assignment.status == AssignmentStatus.RETURNED
    assert contact is not None and contact.status == ContactStatus.QUEUED


async def test_promoter_removed_mid_form_cannot_submit(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession], audio_dir: Path
) -> None:
    project = await seed_project(sessions)
    other = await seed_project(sessions, "Other")
    # Pavel fills a form for Tasting, is then also a promoter in Other, and is removed from Tasting.
    pavel = await join_as_promoter(tg, sessions, project)
    await fill_default_form(tg, pavel)
    async with sessions() as session, session.begin():  # added by an admin elsewhere, no invite
        user = (await session.scalars(select(User).where(User.telegram_id == pavel.id))).one()
        session.add(Membership(user_id=user.id, project_id=other.id, role=Role.PROMOTER))
    await _deactivate(sessions, pavel.id, project.id)
    await pavel.send_voice(audio_dir / "dialogue.ogg")
    await pavel.expect(text("intake-not-member", project=project.name))

    # Petr is removed from his only project mid-form.
    petr = await join_as_promoter(tg, sessions, project, user_id=2002)
    await fill_default_form(tg, petr)
    await _deactivate(sessions, petr.id, project.id)
    await petr.send_voice(audio_dir / "dialogue.ogg")
    await petr.expect(text("intake-not-member-any"))
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Contact)) == 0


async def test_one_query_for_user_and_roles_matches_the_two(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """`user_and_roles` (what every update runs) gives what `get_or_create_user` and `load_roles` give:
    active memberships only, in order, projects loaded; Telegram's current names kept; a newcomer created."""
    from services.users import TelegramIdentity, get_or_create_user, load_roles, user_and_roles

    project_a, project_b, project_c = [await seed_project(sessions, name) for name in "ABC"]
    async with sessions() as session, session.begin():
        olga = User(telegram_id=4040, first_name="Olga")
        session.add(olga)
        await session.flush()
        for project, role, active in (
            (project_b, Role.REVIEWER, True),
            (project_a, Role.PROMOTER, False),
            (project_c, Role.MANAGER, True),
        ):
            session.add(Membership(user_id=olga.id, project_id=project.id, role=role, is_active=active))
    renamed = TelegramIdentity(4040, "Olga", "Petrova", "olga_p")
    async with sessions() as session, session.begin():
        user, roles = await user_and_roles(session, renamed, admin_ids=[4040])
        assert (user.last_name, user.username) == ("Petrova", "olga_p")
        got = [(m.project.name, m.role, m.is_active) for m in roles.memberships]
    async with sessions() as session:
        expected = await load_roles(session, await get_or_create_user(session, renamed), [4040])
        assert got == [(m.project.name, m.role, m.is_active) for m in expected.memberships]
    assert got == [("B", Role.REVIEWER, True), ("C", Role.MANAGER, True)]
    assert roles.is_global_admin and roles.has(Role.MANAGER, project_c.id) and not roles.has(Role.PROMOTER)
    async with sessions() as session, session.begin():
        newcomer, none = await user_and_roles(session, TelegramIdentity(5050, "Ivan"), admin_ids=[])
        assert newcomer.id is not None and none.memberships == [] and not none.is_global_admin
    async with sessions() as session:
        stored = await session.scalar(select(User).where(User.telegram_id == 5050))
        assert stored is not None and stored.first_name == "Ivan"
