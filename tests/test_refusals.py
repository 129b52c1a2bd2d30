"""What the bot refuses, and how it says so (issue #14 item 11): personal commands asked in a group, a
Take forged from outside the reviewers' group (in test_review), names longer than the database holds,
edits of answers already taken, and a recording sent in the middle of a flood (never dropped)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.app import Runtime
from infra.settings import Settings
from models import Contact, Organisation, Project, Role
from sandbox.harness import running_bot
from telegram_standin import StandIn, UserClient
from telegram_standin.driver import message_text
from tests.conftest import TOKEN
from tests.helpers import (
    asked,
    fill_default_form,
    form_question,
    form_up_to_the_count,
    fragment,
    join,
    join_as_promoter,
    label,
    seed_project,
    text,
)


async def test_personal_commands_in_a_group_point_to_the_private_chat(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession]
) -> None:
    project = await seed_project(sessions)
    promoter = await join_as_promoter(tg, sessions, project)
    manager = await join(tg, sessions, project, Role.MANAGER, 3001, "Maria")
    group = tg.group(-100555, "Reviewers", token=TOKEN)
    refusal = text("group-use-private-chat")  # in the language of the one who asked (both "en" here)
    for person, command in ((promoter, "/my"), (promoter, "/new"), (manager, "/billing")):
        await group.send_text(person, command)
        await group.expect(refusal)
    await app.settled()
    # Only the three refusals, whole: no form's question, no list of contacts, nothing else.
    assert [message_text(m) for m in group.bot_messages()] == [refusal] * 3
    first_question = fragment("intake-question", n=1, total=5)  # "1/5. ", whatever the question
    started = [m for m in promoter.bot_messages() if first_question in message_text(m)]
    assert not started  # no form was started


async def test_names_longer_than_the_database_holds_are_refused_before_writing(
    app: Runtime, admin: UserClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    too_long = text("newproject-too-long", "ru", limit=200)  # the admin writes in Russian
    await admin.send_command("newproject", f"{'К' * 300} / Дегустация")
    await admin.expect(too_long)
    await admin.send_command("newproject", f"Кофе / {'Д' * 201}")
    await admin.expect(too_long)
    await admin.send_command("newproject", f"Кофе / {'Д' * 200}")
    created = await admin.expect(fragment("newproject-created", "ru", org="Кофе", project="Д" * 200))
    await app.settled()
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Project)) == 1
        assert await session.scalar(select(func.count()).select_from(Organisation)) == 1
        [project] = list(await session.scalars(select(Project)))
    assert message_text(created) == text(
        "newproject-created", "ru", id=project.id, org="Кофе", project="Д" * 200
    )


async def test_an_edited_answer_is_not_taken_and_the_promoter_is_told(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession]
) -> None:
    project = await seed_project(sessions)
    promoter = await join_as_promoter(tg, sessions, project)
    await form_up_to_the_count(promoter)
    sent = await promoter.send_text("2")
    phone = f"{asked(5, 5, form_question('phone'))}\n{text('intake-phone-consent')}"
    await promoter.wait_last(phone)
    await promoter.edit_text(sent, "3")
    await promoter.expect(text("intake-edit-not-applied"))
    await app.settled()
    assert message_text(promoter.bot_messages()[-2]) == phone  # the form stays where it was


async def test_a_recording_sent_in_a_flood_is_never_dropped(
    tg: StandIn, settings: Settings, sessions: async_sessionmaker[AsyncSession], audio_dir: Path
) -> None:
    # Enough tokens for joining and the form (9 updates), then none: the flood that follows runs dry.
    strict = settings.model_copy(update={"throttle_rate_per_second": 0.001, "throttle_burst": 9})
    async with running_bot(strict, start_scheduler=False) as runtime:
        project = await seed_project(sessions)
        promoter = await join_as_promoter(tg, sessions, project)
        await fill_default_form(tg, promoter)
        for _ in range(4):
            await promoter.send_command("help")
        await promoter.expect(text("throttled"))
        await promoter.send_voice(audio_dir / "dialogue.ogg")
        receipt = await promoter.skip_to(fragment("intake-receipt"), timeout=20)
        await asyncio.wait_for(runtime.settled(), 30)
    async with sessions() as session:
        [contact] = list(await session.scalars(select(Contact)))
    assert message_text(receipt) == text("intake-receipt", id=contact.id, status=label("status-queued"))


async def test_a_command_is_not_taken_as_a_reviewers_comment(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession]
) -> None:
    from jobs import review as review_jobs
    from models import Assignment
    from services.review import COMMENT_LIMIT
    from telegram_standin.driver import buttons
    from tests.helpers import queued_contact

    project = await seed_project(sessions)
    rita = await join(tg, sessions, project, Role.REVIEWER, 3010, "Rita")
    contact_id = await queued_contact(sessions, project)
    assert await review_jobs.dispatch(app.session_factory, app.i18n) == 1
    await tg.wait_until(lambda: any(buttons(m) for m in rita.bot_messages()), timeout=20)
    card = next(m for m in rita.bot_messages() if buttons(m))
    await rita.press(card, label("btn-comment"))
    await rita.skip_to(text("comment-ask", id=contact_id, limit=COMMENT_LIMIT))
    await rita.send_command("cancel")
    await rita.expect(text("cancelled-generic"))
    await rita.send_text("this is not a comment any more")
    await rita.expect(text("fallback-message"))
    await app.settled()
    async with sessions() as session:
        [assignment] = list(await session.scalars(select(Assignment)))
    assert assignment.draft_comment is None
