"""Every conversation state (aiogram StatesGroup), in one place: what the bot is waiting for from someone.

The FSM storage (database or Redis) keeps a state as "ClassName:state" ("Intake:answering"), so a class or
a state is never renamed once released: a conversation in progress across a deploy would be lost.
`tests/test_layers.py` keeps every StatesGroup here.
"""

from __future__ import annotations

from aiogram.fsm.state import State, StatesGroup


class Intake(StatesGroup):
    """A promoter's contact form (handlers/promoter/form.py), then its recording."""

    answering = State()
    recording = State()


class Enrolment(StatesGroup):
    """A promoter's voice enrolment (handlers/promoter/, offered also on accepting an invite)."""

    recording = State()


class Disputing(StatesGroup):
    """A promoter writing why a verdict is wrong (handlers/promoter/results.py)."""

    reason = State()


class ReviewComment(StatesGroup):
    """A reviewer writing a card's comment (handlers/reviewer.py)."""

    text = State()


class SurveyFlow(StatesGroup):
    """A customer's follow-up answer after the score (handlers/customer.py)."""

    follow_up = State()


class ClientFlow(StatesGroup):
    """A client's follow-up answer after the periodic survey's score (handlers/customer.py)."""

    follow_up = State()


class Resolving(StatesGroup):
    """A manager's one-line note after "Resolved" (handlers/manager.py)."""

    note = State()


class ReportRange(StatesGroup):
    """The "first last" days of a manager's /report (handlers/manager.py)."""

    dates = State()
