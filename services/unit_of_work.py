"""Where an update's work commits: the unit of work of one Telegram update (`UpdateUnit`).

The rules, all kept here:

1. One session and one transaction per update (`update_unit`, opened by bot.middlewares.DbSessionMiddleware
   and handed to handlers as `unit`). It commits when the handler returns and rolls back if it raises.
2. The update is claimed in that transaction (`claim`): its processed-update marker and its removal from
   the inbox commit exactly when its effects do, so a crash leaves neither and a redelivered copy is a no-op.
3. The transaction commits before any call to Telegram (`before_telegram_call`, called by the Bot's request
   middleware, bot/reply_after_commit.py). Why: on SQLite every transaction holds the write lock from its
   first statement (BEGIN IMMEDIATE), and on PostgreSQL an open transaction holds a connection. A reply is
   a network call (tens to hundreds of ms to the real Telegram, seconds while a flood limit is waited
   out), so a reply inside the transaction made every other update wait behind it. Committing first also
   means that what the person is told is already true: a receipt is never sent for a contact that a later
   rollback would take back. What it costs: the claim commits with the first part, so a process killed
   between that commit and the reply leaves the reply unsent (the update is not handled twice). For a
   receipt this is covered by intake itself: the promoter who sends the same recording again is told it
   was received. Whatever a handler writes after its first reply goes into a second short transaction,
   committed at the end, and that one commits durably (infra.db.replayable says why the first need not).
4. Slow I/O (a download, ffmpeg) runs in `outside_transaction()`: the transaction ends before it and the
   update is claimed again after it, in the transaction that writes the result.
5. Handlers never commit or roll back themselves (tests/test_layers.py checks it); what must stand even if
   what follows fails is kept with `keep_so_far()`.

Jobs and the CLI open sessions of their own (`FieldcheckSession`, without a unit), from the process's
`infra.db.Database` (`create_database`, below).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import ORMExecuteState, Session

from infra import inbox
from infra.db import Database, durable_from_here, replayable
from services import console_rollup
from services.billing import TrackedSession
from services.updates import claim_update

WRITES = "writes"  # session.info key: write statements and flushes so far
TRANSACTION_MEMO = "transaction_memo"  # session.info key: what callers remember until the transaction ends


class FieldcheckSession(TrackedSession):
    """The ORM session of every update, job and CLI command: it counts its writes (so a unit can tell the
    person's input from its own bookkeeping), forgets per-transaction memos when a transaction ends, and
    marks billing and dashboard days stale as contacts change. Every listener is declared once, with the
    class: billing's on its base class (services/billing.TrackedSession), the others here, below; none is
    attached later or behind a flag (tests/test_layers.py)."""


# The dashboard roll-up's stale days (services/console_rollup.py; billing's own are on TrackedSession).
event.listen(FieldcheckSession, "before_flush", console_rollup.mark_changed_days)
event.listen(FieldcheckSession, "after_flush", console_rollup.write_marks)


def _count_write(session: Session) -> None:
    session.info[WRITES] = session.info.get(WRITES, 0) + 1


@event.listens_for(FieldcheckSession, "do_orm_execute")
def _on_execute(state: ORMExecuteState) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        _count_write(state.session)


@event.listens_for(FieldcheckSession, "after_flush")
def _on_flush(session: Session, _context: Any) -> None:
    if session.new or session.dirty or session.deleted:
        _count_write(session)


def _forget_memos(session: Session, *_args: Any) -> None:
    """A transaction's end ends what it read: another update may change a row before the next one."""
    session.info.pop(TRANSACTION_MEMO, None)


for _name in ("after_commit", "after_rollback", "after_soft_rollback"):
    event.listen(FieldcheckSession, _name, _forget_memos)


def session_class() -> type[Session]:
    """For `async_sessionmaker(sync_session_class=...)` (create_session_factory, below): its listeners are
    on it from its definition, nothing is attached here."""
    return FieldcheckSession


@dataclass
class AfterIo:
    """What `outside_transaction` found when it claimed the update again: `claimed` is False when a
    redelivered copy of the update finished meanwhile, and then nothing may be written."""

    claimed: bool = True


class UpdateUnit:
    """One update's session, its claim, and when its work commits (the module docstring has the rules)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.input_kept = False  # the person's input was committed (an error after it must say so)
        self._claim: tuple[int, int] | None = None
        self._claim_kept = False
        self._bookkeeping = 0

    def _writes(self) -> int:
        return int(self.session.info.get(WRITES, 0))

    async def claim(self, bot_id: int, update_id: int) -> bool:
        """Record the update and take it out of the inbox in this transaction; False if it was already
        handled (then nothing else is written). ON CONFLICT DO NOTHING, not a failed INSERT and a rollback:
        the transaction (and, on SQLite, its write lock) stays whole."""
        self._claim = (bot_id, update_id)
        claimed = await claim_update(self.session, bot_id, update_id)
        await inbox.done(self.session, bot_id, update_id)
        self.mark_bookkeeping()
        return claimed

    def mark_bookkeeping(self) -> None:
        """What was written so far is bookkeeping (the claim, the sender's user row), not the person's
        input: an error after a commit of only this must not tell the person their input was kept."""
        self._bookkeeping = self._writes()

    def work_written(self) -> bool:
        """Anything written since the last bookkeeping mark (the person's input, its effects)."""
        return self._writes() > self._bookkeeping

    async def before_telegram_call(self) -> None:
        """Rule 3: commit what the update wrote before the bot says anything to Telegram."""
        if self.session.in_transaction():
            await self._commit()

    async def keep_so_far(self) -> None:
        """What the update wrote so far stands now, whatever follows: a membership before a prompt that may
        fail, a form's end before a long read or export that must not hold the transaction."""
        if self.session.in_transaction():
            await self._commit()

    async def _commit(self) -> None:
        work = self.work_written()
        await self.session.commit()
        durable_from_here()  # the inbox removal is kept: later writes of this update have no replay
        self._claim_kept = True
        if work:
            self.input_kept = True
        self.mark_bookkeeping()  # later writes are counted afresh

    @asynccontextmanager
    async def outside_transaction(self) -> AsyncIterator[AfterIo]:
        """Slow I/O with no transaction open: no write lock on SQLite, no connection idle in transaction
        on PostgreSQL. Before the claim has committed, what the update wrote is rolled back and the claim
        made again afterwards, in the transaction that writes the result, so a crash during the I/O leaves
        the update in the inbox to be handled again; check `claimed` before writing. After the claim has
        committed, what was written since is kept first (a redelivered copy is skipped then). If the body
        raises, nothing is claimed again: the update's error handling takes it from there."""
        after = AfterIo()
        if self._claim_kept:
            await self.keep_so_far()
            yield after
            return
        await self.session.rollback()
        yield after
        if self._claim is not None:
            after.claimed = await self.claim(*self._claim)

    def transaction_memo(self, name: str) -> dict[str, Any]:
        """A dict for `name` that lives until this transaction ends (the FSM storage's rows read)."""
        memos: dict[str, dict[str, Any]] = self.session.info.setdefault(TRANSACTION_MEMO, {})
        return memos.setdefault(name, {})


_CURRENT: ContextVar[UpdateUnit | None] = ContextVar("update_unit", default=None)


def current_unit() -> UpdateUnit | None:
    """The unit of the update being handled here (None in jobs, the CLI, the outbox): for the Bot's request
    middleware and the FSM storage, which aiogram calls without handler data."""
    return _CURRENT.get()


@asynccontextmanager
async def update_unit(session_factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[UpdateUnit]:
    """Rule 1: one session per update, committed when the body returns, rolled back if it raises. Its
    first transaction is replayable (infra.db.replayable): the update was stored in the inbox durably
    and is removed from it with its effects."""
    async with session_factory() as session:
        unit = UpdateUnit(session)
        token = _CURRENT.set(unit)
        try:
            with replayable():
                yield unit
                await session.commit()
        finally:
            _CURRENT.reset(token)


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions of the project's own class (FieldcheckSession, above): they count their
    writes and mark billing days stale as contacts change; SQLAlchemy's global Session gets no listener."""
    return async_sessionmaker(engine, expire_on_commit=False, sync_session_class=session_class())


def create_database(engine: AsyncEngine) -> Database:
    """The process's Database over `engine` (infra.db.create_engine), its sessions FieldcheckSessions."""
    return Database(engine, create_session_factory(engine))
