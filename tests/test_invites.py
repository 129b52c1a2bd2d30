"""Invites over real HTTP: the deep link binds the role in the database; bad links are answered, change nothing."""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.app import Runtime
from models import Invite, Role
from telegram_standin import StandIn, UserClient
from telegram_standin.driver import buttons, message_text
from tests.conftest import TOKEN
from tests.helpers import (
    fragment,
    invite_ten_reviewers,
    invite_uses,
    joined_as,
    label,
    memberships_of,
    seed_invite,
    seed_project,
    text,
)


async def test_invite_link_binds_role(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession]
) -> None:
    project = await seed_project(sessions)
    invite = await seed_invite(sessions, project.id, Role.REVIEWER)
    rita = tg.user(501, "Rita", token=TOKEN, language_code="ru")

    await rita.send_command("start", f"inv_{invite.code}")
    reply = await rita.next_message()

    assert message_text(reply) == joined_as(project, Role.REVIEWER, "ru")
    await app.settled()
    [membership] = await memberships_of(sessions, 501)
    assert (membership.project_id, membership.role, membership.invite_id) == (
        project.id,
        Role.REVIEWER,
        invite.id,
    )
    assert await invite_uses(sessions, invite.id) == 1

    # The same link again: told so, and no second use is spent.
    await rita.send_command("start", f"inv_{invite.code}")
    already = text("invite-already", "ru", role=label("role-reviewer", "ru"), project=project.name)
    assert message_text(await rita.next_message()) == already
    await app.settled()
    assert await invite_uses(sessions, invite.id) == 1
    assert len(await memberships_of(sessions, 501)) == 1


async def test_english_speaker_is_answered_in_english(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession]
) -> None:
    project = await seed_project(sessions)
    invite = await seed_invite(sessions, project.id)
    john = tg.user(502, "John", token=TOKEN, language_code="en")
    await john.send_command("start", f"inv_{invite.code}")
    assert message_text(await john.next_message()) == joined_as(project, Role.PROMOTER)


async def test_bad_invites_are_answered_and_change_nothing(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession]
) -> None:
    project = await seed_project(sessions)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    expired = await seed_invite(sessions, project.id, ttl=dt.timedelta(days=1), now=past)
    used_up = await seed_invite(sessions, project.id)
    revoked = await seed_invite(sessions, project.id)
    async with sessions() as session, session.begin():
        await session.execute(update(Invite).where(Invite.id == used_up.id).values(uses=1))
        await session.execute(update(Invite).where(Invite.id == revoked.id).values(revoked=True))
    john = tg.user(503, "John", token=TOKEN, language_code="en")

    cases = [
        ("inv_nosuchcode", "invite-unknown"),
        (f"inv_{expired.code}", "invite-expired"),
        (f"inv_{used_up.code}", "invite-used-up"),
        (f"inv_{revoked.code}", "invite-revoked"),
    ]
    for payload, answer in cases:
        await john.send_command("start", payload)
        assert message_text(await john.next_message()) == text(answer), payload
        await app.settled()

    assert await memberships_of(sessions, 503) == []
    assert [await invite_uses(sessions, i.id) for i in (expired, used_up, revoked)] == [0, 1, 0]


async def test_last_use_goes_to_one_person(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession]
) -> None:
    project = await seed_project(sessions)
    invite = await seed_invite(sessions, project.id, max_uses=1)
    first = tg.user(511, "First", token=TOKEN, language_code="en")
    second = tg.user(512, "Second", token=TOKEN, language_code="en")

    await first.send_command("start", f"inv_{invite.code}")
    await second.send_command("start", f"inv_{invite.code}")
    answers = {message_text(await first.next_message()), message_text(await second.next_message())}
    await app.settled()

    assert answers == {joined_as(project, Role.PROMOTER), text("invite-used-up")}  # one joined, one told
    assert len(await memberships_of(sessions, 511)) + len(await memberships_of(sessions, 512)) == 1


async def test_admin_creates_invite_with_buttons(
    app: Runtime, tg: StandIn, admin: UserClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    project = await seed_project(sessions)
    await invite_ten_reviewers(tg, admin, project)
    # The invite, whole but for its expiry and link (checked below and in test_conformance_review).
    created = fragment(
        "invite-created", "ru", project=project.name, role=label("role-reviewer", "ru"), uses=10
    )
    await tg.wait_until(lambda: created in message_text(admin.last()))
    await app.settled()

    code = re.search(r"start=inv_(\w+)", message_text(admin.last()))
    assert code is not None
    async with sessions() as session:
        invite = await session.scalar(select(Invite).where(Invite.code == code.group(1)))
    assert invite is not None
    assert (invite.project_id, invite.role, invite.max_uses, invite.uses) == (
        project.id,
        Role.REVIEWER,
        10,
        0,
    )

    newcomer = tg.user(520, "Nina", token=TOKEN, language_code="ru")
    await newcomer.send_command("start", f"inv_{invite.code}")
    assert message_text(await newcomer.next_message()) == joined_as(project, Role.REVIEWER, "ru")


async def test_forged_invite_button_from_non_admin_changes_nothing(
    app: Runtime, tg: StandIn, admin: UserClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    project = await seed_project(sessions)
    await admin.send_command("invite")
    card = await admin.expect(text("invite-choose-project", "ru"))
    final_step = f"inv:{project.id}:promoter:50"
    assert any(b["callback_data"] == f"inv:{project.id}::" for b in buttons(card))

    mallory = tg.user(666, "Mallory", token=TOKEN, language_code="en")
    query = await mallory.press(card, data=final_step)
    answer = await mallory.callback_answer(query)
    assert answer["show_alert"] and answer["text"] == label("button-invalid")
    await mallory.send_command("invite")
    assert message_text(await mallory.next_message()) == text("fallback-message")

    # An admin's forged press for a project that does not exist is refused too.
    query = await admin.press(card, data="inv:9999:promoter:50")
    assert (await admin.callback_answer(query))["text"] == label("button-forbidden", "ru")
    await app.settled()
    async with sessions() as session:
        assert list(await session.scalars(select(Invite))) == []
