"""The update's unit of work (services/unit_of_work.py), through its own API: the flows that use it are
covered end to end in test_delivery, test_intake and test_kill."""

from __future__ import annotations

import subprocess
import sys

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from infra import inbox
from infra.settings import PROJECT_ROOT
from models import InboxUpdate, ProcessedUpdate
from services import unit_of_work
from services.unit_of_work import current_unit, update_unit
from tests.helpers import count_rows

BOT = 42


async def test_outside_transaction_says_when_a_redelivered_copy_finished_meanwhile(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with update_unit(sessions) as unit:
        assert await unit.claim(BOT, 7)
        async with unit.outside_transaction() as after:
            assert not unit.session.in_transaction()  # no write lock held during the I/O
            async with update_unit(sessions) as copy:  # the redelivered copy, handled meanwhile
                assert await copy.claim(BOT, 7)
        assert not after.claimed  # so the caller writes nothing
    assert await count_rows(sessions, ProcessedUpdate) == 1


async def test_outside_transaction_claims_again_after_the_io(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session, session.begin():
        await inbox.store(session, BOT, [{"update_id": 8}])
    async with update_unit(sessions) as unit:
        assert await unit.claim(BOT, 8)
        async with unit.outside_transaction() as after:
            # Rolled back: a crash here leaves the update in the inbox, to be handled again.
            assert await count_rows(sessions, InboxUpdate) == 1
            assert await count_rows(sessions, ProcessedUpdate) == 0
        assert after.claimed
    assert await count_rows(sessions, InboxUpdate) == 0 and await count_rows(sessions, ProcessedUpdate) == 1


async def test_after_the_claim_stands_outside_transaction_keeps_what_was_written(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with update_unit(sessions) as unit:
        assert await unit.claim(BOT, 9)
        await unit.before_telegram_call()  # the claim is committed (a reply went out)
        await inbox.store(unit.session, BOT, [{"update_id": 99}])
        async with unit.outside_transaction() as after:
            assert await count_rows(sessions, InboxUpdate) == 1  # kept, not rolled back
        assert after.claimed


async def test_input_kept_counts_the_persons_input_not_the_bookkeeping(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with update_unit(sessions) as unit:
        await unit.claim(BOT, 10)
        await unit.before_telegram_call()
        assert not unit.input_kept  # only the claim and the inbox removal committed
        await inbox.store(unit.session, BOT, [{"update_id": 100}])  # stands in for the person's input
        await unit.keep_so_far()
        assert unit.input_kept


async def test_the_unit_is_current_only_inside_its_update(sessions: async_sessionmaker[AsyncSession]) -> None:
    assert current_unit() is None
    async with update_unit(sessions) as unit:
        assert current_unit() is unit
    assert current_unit() is None


def test_write_counting_listens_on_the_projects_session_class_only() -> None:
    session_class = unit_of_work.session_class()
    assert issubclass(session_class, Session) and session_class is not Session
    assert event.contains(session_class, "do_orm_execute", unit_of_work._on_execute)
    assert not event.contains(Session, "do_orm_execute", unit_of_work._on_execute)
    assert not event.contains(Session, "after_flush", unit_of_work._on_flush)


def test_roll_up_marks_listen_from_the_session_classes_definition() -> None:
    """Billing's and the dashboard's stale-day listeners are on the project's session class as soon as the
    unit of work is imported, before any session factory is built (no lazy registration behind a flag;
    tests/test_layers.py fails on one). Checked in a fresh interpreter: this one has built factories."""
    check = (
        "from sqlalchemy import event\n"
        "from sqlalchemy.orm import Session\n"
        "from services import billing, console_rollup, unit_of_work\n"
        "S = unit_of_work.FieldcheckSession\n"
        "assert event.contains(billing.TrackedSession, 'before_flush', billing._changed_days)\n"
        "assert event.contains(billing.TrackedSession, 'after_flush', billing._write_marks)\n"
        "assert event.contains(S, 'before_flush', console_rollup.mark_changed_days)\n"
        "assert event.contains(S, 'after_flush', console_rollup.write_marks)\n"
        "assert not event.contains(Session, 'before_flush', billing._changed_days)\n"
        "assert not event.contains(Session, 'before_flush', console_rollup.mark_changed_days)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", check],
        check=False,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
