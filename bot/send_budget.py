"""One send budget per bot: every message the bot sends, direct answers and the outbox alike, stays within
Telegram's limit of about 30 messages a second per bot (Bot FAQ, "My bot is hitting limits").

Why one budget: the outbox kept its own messages within 30 a second, but answers sent straight from a handler
(the next form question, a card edited in place) went beside it uncounted: under bench/load.py's intake load
the bot sent 116 new messages in one second (issue #27, finding 12). Telegram then answers 429 and every
reply waits out the flood limit.

What counts (`messages_in`): a new message (every `send*` method but sendChatAction, copyMessage(s),
forwardMessage(s), an album as one message per item) and an edit of a message (`editMessage*`,
stopMessageLiveLocation, stopPoll). The limit is the server's, not the Bot API's: telegram-bot-api keeps no
count of its own and passes the server's flood wait through for any query
(telegram-bot-api/Query.cpp, `Query::set_retry_after_error`: 429 "Too Many Requests: retry after N"), and
tdlib turns that 429 on any request, edits included, into a wait (td/telegram/Global.cpp,
`Global::get_retry_after`); an edit is a request that changes a message on the server like a send, so it is
counted as one. answerCallbackQuery, getUpdates, getFile, getMe, setWebhook, deleteMessage and the like
create or change no message and are not counted.

How it holds: a slot is taken before the call and given back one second after its answer arrived. The server
counts a call when it arrives, which is between those two moments, so any calls that arrived within one
second all held a slot at the same instant: at most `per_second` of them, whatever the network's delays.

Who goes first: answers to a person's own press or message (the Bot that handles updates, FOREGROUND) take
any free slot, in arrival order. The outbox (its own Bot, BACKGROUND) takes a slot only while no answer is
waiting and `reserve` slots stay free for answers that may come, except for a small floor
(`background_floor` slots held at once) that answers never take away, so receipts and cards are late under a
flood of presses but never starved. The outbox sizes each round by `room` (jobs/outbox.py, `_ready`).

Several bot processes (webhook mode behind a balancer) each hold their own budget: give each
`SEND_BUDGET_PER_SECOND` divided by the number of processes (docs/deploy.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiogram import Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.methods import Response, TelegramMethod

FOREGROUND = 0  # answers to a person's own press or message
BACKGROUND = 1  # bot-initiated messages (the outbox)
DEFAULT_PER_SECOND = 28  # under Telegram's ~30, with a little room for other tools using the same token
WINDOW = 1.0  # seconds a slot stays taken after its call's answer
_NOT_MESSAGES = frozenset({"sendChatAction"})
_EDITS = frozenset(
    {
        "editMessageText",
        "editMessageCaption",
        "editMessageMedia",
        "editMessageReplyMarkup",
        "editMessageLiveLocation",
        "stopMessageLiveLocation",
        "stopPoll",
    }
)
_ONE_EACH = frozenset({"copyMessage", "forwardMessage"})
_MANY = frozenset({"copyMessages", "forwardMessages"})


def counts_as_message(name: str) -> bool:
    """Whether a Bot API method (by its name) sends or edits a message: what Telegram's limit counts."""
    if name in _NOT_MESSAGES:
        return False
    return name.startswith("send") or name in _EDITS or name in _ONE_EACH or name in _MANY


def messages_in(method: TelegramMethod[Any]) -> int:
    """How many messages this call sends or edits (0: not counted)."""
    name = method.__api_method__
    if not counts_as_message(name):
        return 0
    if name == "sendMediaGroup":
        return max(1, len(getattr(method, "media", ()) or ()))
    if name in _MANY:
        return max(1, len(getattr(method, "message_ids", ()) or ()))
    return 1


class SendBudget:
    """Slots per second shared by every Bot of one process that sends as the same bot (see the module note)."""

    def __init__(
        self,
        per_second: int = DEFAULT_PER_SECOND,
        *,
        reserve: int | None = None,
        background_floor: int | None = None,
        window: float = WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_second < 1:
            raise ValueError("a send budget needs at least one message a second")
        self.per_second = per_second
        self.reserve = min(per_second - 1, per_second // 7 if reserve is None else reserve)
        floor = max(1, per_second // 10) if background_floor is None else background_floor
        self.background_floor = min(per_second, floor)
        self.window, self.clock = window, clock
        self._held = 0  # slots taken and not yet given back (in flight, or within a second of the answer)
        self._held_background = 0
        self._waiting: dict[int, deque[asyncio.Future[None]]] = {FOREGROUND: deque(), BACKGROUND: deque()}
        self._releases: list[float] = []  # when the slots of answered calls come back
        self.taken = {FOREGROUND: 0, BACKGROUND: 0}  # slots ever granted, per kind (tests, logs)

    # -- asking ------------------------------------------------------------------------------------
    def room(self, priority: int = BACKGROUND) -> int:
        """How many slots a caller of this kind could take right now without waiting."""
        free = self.per_second - self._held
        if priority == FOREGROUND:
            return max(0, free)
        floor = max(0, min(free, self.background_floor - self._held_background))
        if self._waiting[FOREGROUND]:
            return floor
        return max(floor, free - self.reserve)

    def next_room_in(self) -> float:
        """Seconds until a slot is expected back (an answered call's second ends); a short look when every
        taken slot is still in flight."""
        if not self._releases:
            return 0.05
        return max(0.0, min(self._releases) - self.clock())

    @contextlib.asynccontextmanager
    async def slots(self, count: int, priority: int) -> AsyncIterator[None]:
        """Hold `count` slots around one call; they come back a second after it ended, however it ended."""
        count = max(1, min(count, self.per_second))
        taken = 0
        try:
            for _ in range(count):
                await self._acquire(priority)
                taken += 1
            yield
        finally:
            if taken:
                self._release_later(taken, priority)

    # -- the slots -----------------------------------------------------------------------------------
    def _may_take(self, priority: int) -> bool:
        return self.room(priority) > 0

    def _take(self, priority: int) -> None:
        self._held += 1
        if priority == BACKGROUND:
            self._held_background += 1
        self.taken[priority] += 1

    async def _acquire(self, priority: int) -> None:
        queue = self._waiting[priority]
        if not queue and self._may_take(priority):
            self._take(priority)
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # granted just as it was cancelled: give it back
                self._give_back(1, priority)
            else:
                with contextlib.suppress(ValueError):
                    queue.remove(waiter)
                self._wake()
            raise

    def _release_later(self, count: int, priority: int) -> None:
        at = self.clock() + self.window
        self._releases.extend([at] * count)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop left (shutting down): nobody waits any more
            return
        loop.call_later(self.window, self._expire, at, count, priority)

    def _expire(self, at: float, count: int, priority: int) -> None:
        for _ in range(count):
            with contextlib.suppress(ValueError):
                self._releases.remove(at)
        self._give_back(count, priority)

    def _give_back(self, count: int, priority: int) -> None:
        self._held -= count
        if priority == BACKGROUND:
            self._held_background -= count
        self._wake()

    def _wake(self) -> None:
        """Hand free slots to waiters: the outbox's floor first (it is never starved), then answers in
        arrival order, then the outbox."""
        fg, bg = self._waiting[FOREGROUND], self._waiting[BACKGROUND]
        for queue in (fg, bg):
            while queue and queue[0].done():  # cancelled while waiting
                queue.popleft()
        while True:
            if bg and self._held < self.per_second and self._held_background < self.background_floor:
                self._grant(bg, BACKGROUND)
            elif fg and self._held < self.per_second:
                self._grant(fg, FOREGROUND)
            elif bg and self.room(BACKGROUND) > 0:
                self._grant(bg, BACKGROUND)
            else:
                break

    def _grant(self, queue: deque[asyncio.Future[None]], priority: int) -> None:
        waiter = queue.popleft()
        if waiter.done():
            return
        self._take(priority)
        waiter.set_result(None)


class SendBudgetMiddleware(BaseRequestMiddleware):
    """The budget at the Bot's door: innermost of its request middlewares, so each try of a call (the retry
    middleware's included) is counted as Telegram counts it."""

    def __init__(self, budget: SendBudget, priority: int) -> None:
        self.budget, self.priority = budget, priority

    async def __call__(
        self, make_request: NextRequestMiddlewareType[Any], bot: Bot, method: TelegramMethod[Any]
    ) -> Response[Any]:
        count = messages_in(method)
        if not count:
            return await make_request(bot, method)
        async with self.budget.slots(count, self.priority):
            return await make_request(bot, method)


def budget_of(bot: Bot) -> SendBudget | None:
    """The send budget a Bot was built with (bot/factory.py), if any."""
    for middleware in bot.session.middleware:
        if isinstance(middleware, SendBudgetMiddleware):
            return middleware.budget
    return None


def outbox_room(bot: Bot, wanted: int) -> int:
    """How many messages the outbox may start this round (all it wants when its Bot has no budget)."""
    budget = budget_of(bot)
    return wanted if budget is None else min(wanted, budget.room(BACKGROUND))


def outbox_wait(bot: Bot) -> float:
    """Seconds the outbox should wait before looking again when the budget left it no room."""
    budget = budget_of(bot)
    if budget is None or budget.room(BACKGROUND) > 0:
        return 0.0
    return budget.next_room_in()
