"""Every inline button's callback data, in one place: what a press carries and under which prefix.

A payload is "<prefix>:<field>:<field>..." (at most 64 bytes). Buttons already sent stay in people's chats
for weeks, so a prefix, a field's name, order or type, and an action's value never change once released:
an old button would stop parsing. `tests/test_layers.py` keeps the prefixes unique and every CallbackData
class here. Callback data carries ids only; every press is re-checked against the database by its router.
"""

from __future__ import annotations

from enum import StrEnum

from aiogram.filters.callback_data import CallbackData

from models import AlertKind, Role
from services.form_progress import FormAction
from services.reports import Period

# --- everyone (handlers/common.py) ---------------------------------------------------------------------


class LangCallback(CallbackData, prefix="lang"):
    code: str


# --- admins (handlers/admin.py) ------------------------------------------------------------------------


class InviteCallback(CallbackData, prefix="inv"):
    project_id: int
    role: Role | None = None
    uses: int | None = None


# --- promoters (handlers/promoter/) --------------------------------------------------------------------


class ProjectPick(CallbackData, prefix="pp"):
    project_id: int


class FormButton(CallbackData, prefix="f"):
    action: FormAction
    q: int  # the question it belongs to: a press on an older question's button is refused
    v: int = -1


class DisputeButton(CallbackData, prefix="dsp"):
    contact_id: int  # re-checked: it must be the presser's own contact


# --- reviewers (handlers/reviewer.py, cards from telegram_ui/cards.py) ---------------------------------


class CardAction(StrEnum):
    MARK = "mark"
    VERDICT = "verdict"
    COMMENT = "comment"
    RETURN = "return"


class CardButton(CallbackData, prefix="c"):
    """A button on a reviewer's own card; re-checked: the assignment must be the presser's and open."""

    action: CardAction
    assignment: int
    k: int = -1  # criterion index for MARK, verdict index for VERDICT


class TakeButton(CallbackData, prefix="ct"):
    """Take from the reviewers' chat; re-checked: a reviewer of the project, pressed in its chat."""

    assignment: int


class UndoButton(CallbackData, prefix="cu"):
    """Undo a verdict; re-checked: the presser's own review, inside the undo window."""

    review: int


# --- customers and clients (handlers/customer.py) ------------------------------------------------------


class SurveyAction(StrEnum):
    AGREE = "agree"
    DECLINE = "decline"
    SCORE = "score"
    SKIP = "skip"


class SurveyButton(CallbackData, prefix="nps"):
    action: SurveyAction
    s: int  # survey id (re-checked: it must be held by the presser)
    v: int = -1


class ClientAction(StrEnum):
    SCORE = "score"
    SKIP = "skip"
    UNSUBSCRIBE = "unsub"


class ClientButton(CallbackData, prefix="cs"):
    action: ClientAction
    s: int  # client survey id (re-checked: it must be the presser's own)
    v: int = -1


# --- managers (handlers/manager.py) --------------------------------------------------------------------


class AlertAction(StrEnum):
    OPEN = "open"
    TAKE = "take"
    RESOLVE = "resolve"
    MUTE = "mute"  # this kind, for the whole project


class AlertButton(CallbackData, prefix="al"):
    action: AlertAction
    id: int


class AlertMuteButton(CallbackData, prefix="am"):
    project: int
    kind: AlertKind
    mute: bool


class DigestAction(StrEnum):
    CONTACTS = "contacts"  # the day's contacts as XLSX
    PROMOTERS = "promoters"  # the day's per-promoter and per-store tables
    FLAGS = "flags"  # flagged contacts of the day still waiting for their verdict
    PREVIOUS = "previous"  # the digest of the day before


class DigestButton(CallbackData, prefix="dg"):
    project: int
    day: int  # the digest's day as an ordinal (date.toordinal): short in the 64-byte payload
    action: DigestAction


class ReportRangeButton(CallbackData, prefix="rr"):
    project: int


class ReportButton(CallbackData, prefix="rp"):
    project: int
    period: Period


class ExportKind(StrEnum):
    BILLING = "billing"
    CONTACTS = "contacts"


class ExportPeriod(StrEnum):
    YESTERDAY = "yesterday"
    WEEK = "7d"
    THIS_MONTH = "month"
    LAST_MONTH = "lastmonth"


class ExportButton(CallbackData, prefix="ex"):
    project: int
    kind: ExportKind
    period: ExportPeriod | None = None
    fmt: str = ""  # "xlsx" or "csv" once chosen
