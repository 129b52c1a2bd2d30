"""Customer surveys: one per contact, answered by the customer in their own Telegram, never by the promoter.

A survey's token travels as a deep link (`t.me/<bot>?start=s_<token>`) in a QR code on the promoter's
receipt. The first account to open it holds it; one answer per survey; the same account is not surveyed
again in the project within `survey_cooldown_days`. Cross-checks turn what respondents do into flags on
the contacts (shown on the reviewer's card): they report what was observed, never a probability.
"""

from __future__ import annotations

import datetime as dt
import io
import secrets
from dataclasses import dataclass, field
from enum import StrEnum

import segno
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models import (
    Contact,
    ManagerAlert,
    Membership,
    NpsAnswer,
    NpsCategory,
    NpsScale,
    NpsSurvey,
    Project,
    Role,
    SurveyStatus,
    User,
    VoiceFlag,
    crypto,
)
from models.base import utcnow
from models.payloads import (
    ClientDetractor,
    Detractor,
    FlagDetails,
    SurveyFastAnswer,
    SurveyFreshAccounts,
    SurveySameRespondent,
)
from services import alerts
from services.period_queries import submitted_in
from services.problems import ProblemError
from services.rates import share

TOKEN_PREFIX = "s_"
# A customer must scan the QR, open the bot, consent and press a score: a score this soon after the
# contact was submitted was pressed by someone who did not need to scan anything.
FAST_ANSWER_SECONDS = 15.0
# The same account answering (or trying to) for several contacts of one promoter, looked for this far back.
SAME_RESPONDENT_DAYS = 180
# "Fresh accounts": Telegram assigns user ids in increasing order, so the newest accounts have the highest
# ids. Among a project's respondents, about FRESH_SHARE of them are in its newest FRESH_SHARE by id; a
# promoter whose respondents are mostly there is flagged.
FRESH_SHARE = 0.10
FRESH_MIN_PROJECT_RESPONDENTS = 20
FRESH_MIN_PROMOTER_ANSWERS = 5
FRESH_FLAG_SHARE = 0.6
FRESH_WINDOW_DAYS = 30
# A detractor's alert waits this long for the customer's follow-up text before it goes without it.
FOLLOW_UP_WAIT = dt.timedelta(minutes=10)
FOLLOW_UP_MAX_CHARS = 2000
THREE_POINT_SCORES = (0, 1, 2)  # Bad, Good, Excellent


class SurveyProblem(StrEnum):
    UNKNOWN = "unknown"  # no such token (mistyped, forged)
    EXPIRED = "expired"
    ANSWERED = "answered"  # this survey was already answered (by this account)
    TAKEN = "taken"  # another account opened this survey first
    DECLINED = "declined"
    RECENTLY_SURVEYED = "recently"  # this account answered in the project within the cooldown
    STAFF = "staff"  # a member of the project (the promoter scanning their own code, a colleague)
    CLOSED = "closed"  # the project no longer takes surveys


class SurveyError(ProblemError[SurveyProblem]):
    """A survey refused: a customer's NPS link or answer, or a client's survey answer."""


def new_token() -> str:
    """128 random bits, URL-safe: unguessable, and fits Telegram's 64-character start parameter."""
    return secrets.token_urlsafe(16)


def survey_link(bot_username: str, token: str) -> str:
    return f"https://t.me/{bot_username}?start={TOKEN_PREFIX}{token}"


def qr_png(link: str) -> bytes:
    """A QR code the customer scans from the promoter's screen (large modules: phone screens glare)."""
    buffer = io.BytesIO()
    segno.make(link, error="m").save(buffer, kind="png", scale=10, border=4)
    return buffer.getvalue()


def category_of(scale: NpsScale, score: int) -> NpsCategory:
    if scale == NpsScale.THREE_POINT:
        return (NpsCategory.DETRACTOR, NpsCategory.PASSIVE, NpsCategory.PROMOTER)[score]
    if score <= 6:
        return NpsCategory.DETRACTOR
    return NpsCategory.PASSIVE if score <= 8 else NpsCategory.PROMOTER


def valid_scores(scale: NpsScale) -> range | tuple[int, ...]:
    return THREE_POINT_SCORES if scale == NpsScale.THREE_POINT else range(11)


async def create_survey(
    session: AsyncSession, project: Project, contact: Contact, now: dt.datetime | None = None
) -> NpsSurvey | None:
    """The contact's survey, made in the contact's own transaction; None when the project has them off."""
    if not project.survey_enabled:
        return None
    now = now or utcnow()
    survey = NpsSurvey(
        contact_id=contact.id,
        project_id=project.id,
        token=new_token(),
        scale=project.nps_scale,
        status=SurveyStatus.PENDING,
        sent_at=now,
        expires_at=now + dt.timedelta(hours=project.survey_ttl_hours),
    )
    session.add(survey)
    await session.flush()
    return survey


@dataclass
class OpenedSurvey:
    survey: NpsSurvey
    project: Project
    flags: list[VoiceFlag] = field(default_factory=list)


async def open_survey(
    session: AsyncSession, token: str, customer: User, now: dt.datetime | None = None
) -> OpenedSurvey:
    """The customer's account takes hold of the survey; raises SurveyError with the reason it cannot."""
    now = now or utcnow()
    survey = await session.scalar(select(NpsSurvey).where(NpsSurvey.token == token).with_for_update())
    if survey is None:
        raise SurveyError(SurveyProblem.UNKNOWN)
    project = await session.get(Project, survey.project_id)
    assert project is not None
    holder = survey.customer_telegram_id
    if holder is not None and holder != customer.telegram_id:
        raise SurveyError(SurveyProblem.TAKEN)
    if survey.status == SurveyStatus.ANSWERED:
        raise SurveyError(SurveyProblem.ANSWERED)
    if survey.status == SurveyStatus.DECLINED:
        raise SurveyError(SurveyProblem.DECLINED)
    if survey.status == SurveyStatus.EXPIRED or (survey.expires_at is not None and survey.expires_at <= now):
        survey.status = SurveyStatus.EXPIRED
        raise SurveyError(SurveyProblem.EXPIRED)
    if not project.survey_enabled:
        raise SurveyError(SurveyProblem.CLOSED)
    if await _is_staff(session, customer, project.id):
        raise SurveyError(SurveyProblem.STAFF)
    opened = OpenedSurvey(survey, project)
    if holder is None:
        earlier = await _recent_answers(session, project, customer.telegram_id, now)
        if earlier:
            # Refused, but a refused try for another contact of the same promoter is itself worth a flag.
            opened.flags = await _same_respondent(session, survey, customer.telegram_id, now, tried=True)
            raise SurveyRefused(SurveyProblem.RECENTLY_SURVEYED, opened.flags)
        survey.customer_telegram_id = customer.telegram_id
        survey.status = SurveyStatus.OPENED
        survey.opened_at = now
    await session.flush()
    return opened


class SurveyRefused(SurveyError):
    """A refusal that still raised flags (they are committed with the refusal)."""

    def __init__(self, problem: SurveyProblem, flags: list[VoiceFlag]) -> None:
        super().__init__(problem)
        self.flags = flags


async def _is_staff(session: AsyncSession, customer: User, project_id: int) -> bool:
    found = await session.scalar(
        select(func.count())
        .select_from(Membership)
        .where(
            Membership.user_id == customer.id,
            Membership.project_id == project_id,
            Membership.role != Role.CLIENT,
        )
    )
    return bool(found)


async def _recent_answers(
    session: AsyncSession, project: Project, telegram_id: int, now: dt.datetime
) -> list[NpsSurvey]:
    since = now - dt.timedelta(days=project.survey_cooldown_days)
    return list(
        await session.scalars(
            select(NpsSurvey).where(
                NpsSurvey.project_id == project.id,
                NpsSurvey.customer_telegram_id == telegram_id,
                NpsSurvey.status == SurveyStatus.ANSWERED,
                NpsSurvey.answered_at >= since,
            )
        )
    )


async def held_survey(session: AsyncSession, survey_id: int, customer: User) -> NpsSurvey:
    """A survey this account holds (a button press is re-checked here: a forged id gets UNKNOWN)."""
    survey = await session.scalar(select(NpsSurvey).where(NpsSurvey.id == survey_id).with_for_update())
    if survey is None or survey.customer_telegram_id != customer.telegram_id:
        raise SurveyError(SurveyProblem.UNKNOWN)
    return survey


async def decline(session: AsyncSession, survey_id: int, customer: User) -> None:
    survey = await held_survey(session, survey_id, customer)
    if survey.status == SurveyStatus.ANSWERED:
        raise SurveyError(SurveyProblem.ANSWERED)
    survey.status = SurveyStatus.DECLINED
    await session.flush()


@dataclass
class Answered:
    survey: NpsSurvey
    answer: NpsAnswer
    flags: list[VoiceFlag]


async def answer(
    session: AsyncSession, survey_id: int, customer: User, score: int, now: dt.datetime | None = None
) -> Answered:
    """Record the customer's score once; a second press or a forged score changes nothing."""
    now = now or utcnow()
    survey = await held_survey(session, survey_id, customer)
    if survey.status == SurveyStatus.ANSWERED:
        raise SurveyError(SurveyProblem.ANSWERED)
    if survey.status != SurveyStatus.OPENED:
        raise SurveyError(
            SurveyProblem.DECLINED if survey.status == SurveyStatus.DECLINED else SurveyProblem.EXPIRED
        )
    if score not in valid_scores(survey.scale):
        raise SurveyError(SurveyProblem.UNKNOWN)
    row = NpsAnswer(survey_id=survey.id, score=score, category=category_of(survey.scale, score))
    session.add(row)
    survey.status, survey.answered_at = SurveyStatus.ANSWERED, now
    await session.flush()
    flags = await cross_check(session, survey, now)
    return Answered(survey, row, flags)


async def save_follow_up(
    session: AsyncSession, survey_id: int, customer: User, text: str | None, now: dt.datetime | None = None
) -> tuple[NpsSurvey, NpsAnswer]:
    """The customer's words after the score (None: skipped). Only once, and only after a score."""
    survey = await held_survey(session, survey_id, customer)
    row = await session.scalar(select(NpsAnswer).where(NpsAnswer.survey_id == survey.id))
    if row is None or survey.follow_up_done_at is not None:
        raise SurveyError(SurveyProblem.ANSWERED if row else SurveyProblem.UNKNOWN)
    if text is not None:
        row.follow_up = text.strip()[:FOLLOW_UP_MAX_CHARS] or None
    survey.follow_up_done_at = now or utcnow()
    await session.flush()
    return survey, row


# -- cross-checks ------------------------------------------------------------------------------------------
async def cross_check(session: AsyncSession, survey: NpsSurvey, now: dt.datetime) -> list[VoiceFlag]:
    """Flags raised by this answer: same respondent, too fast, a promoter's respondents mostly fresh."""
    assert survey.customer_telegram_id is not None
    flags = await _same_respondent(session, survey, survey.customer_telegram_id, now, tried=False)
    contact = await session.get(Contact, survey.contact_id)
    assert contact is not None
    seconds = (now - contact.submitted_at).total_seconds()
    if seconds < FAST_ANSWER_SECONDS:
        flag = await _add_flag(session, contact.id, [], SurveyFastAnswer(seconds=round(max(seconds, 0.0), 1)))
        flags += [flag] if flag else []
    flags += await _fresh_accounts(session, survey.project_id, contact.promoter_id, now)
    return flags


async def _add_flag(
    session: AsyncSession, contact_id: int, matched: list[int], details: FlagDetails
) -> VoiceFlag | None:
    """One flag of a kind per contact: a later observation updates its details instead of repeating it."""
    existing = await session.scalar(
        select(VoiceFlag).where(VoiceFlag.contact_id == contact_id, VoiceFlag.kind == details.kind)
    )
    if existing is not None:
        existing.matched_contact_ids = sorted(set(existing.matched_contact_ids) | set(matched))
        existing.details = details
        return None
    flag = VoiceFlag(contact_id=contact_id, score=1.0, matched_contact_ids=sorted(matched), details=details)
    session.add(flag)
    await session.flush()
    return flag


async def _same_respondent(
    session: AsyncSession, survey: NpsSurvey, telegram_id: int, now: dt.datetime, *, tried: bool
) -> list[VoiceFlag]:
    contact = await session.get(Contact, survey.contact_id)
    assert contact is not None
    since = now - dt.timedelta(days=SAME_RESPONDENT_DAYS)
    others = list(
        await session.scalars(
            select(NpsSurvey.contact_id)
            .join(Contact, Contact.id == NpsSurvey.contact_id)
            .where(
                Contact.promoter_id == contact.promoter_id,
                NpsSurvey.customer_telegram_id == telegram_id,
                NpsSurvey.contact_id != contact.id,
                NpsSurvey.opened_at >= since,
            )
        )
    )
    if not others:
        return []
    group = sorted({contact.id, *others})
    flags = []
    for contact_id in group:
        matched = [c for c in group if c != contact_id]
        flag = await _add_flag(session, contact_id, matched, SurveySameRespondent(tried=tried or None))
        flags += [flag] if flag else []
    return flags


async def _fresh_accounts(
    session: AsyncSession, project_id: int, promoter_id: int, now: dt.datetime
) -> list[VoiceFlag]:
    since = now - dt.timedelta(days=FRESH_WINDOW_DAYS)
    answered = (
        select(NpsSurvey.customer_telegram_id, NpsSurvey.contact_id, Contact.promoter_id)
        .join(Contact, Contact.id == NpsSurvey.contact_id)
        .where(
            NpsSurvey.project_id == project_id,
            NpsSurvey.status == SurveyStatus.ANSWERED,
            NpsSurvey.answered_at >= since,
        )
    )
    rows = (await session.execute(answered)).all()
    ids = sorted({int(r[0]) for r in rows})
    if len(ids) < FRESH_MIN_PROJECT_RESPONDENTS:
        return []
    cut = ids[int(len(ids) * (1 - FRESH_SHARE))]  # the lowest id among the newest FRESH_SHARE
    mine = [(int(r[0]), int(r[1])) for r in rows if r[2] == promoter_id]
    if len(mine) < FRESH_MIN_PROMOTER_ANSWERS:
        return []
    fresh = [contact_id for telegram_id, contact_id in mine if telegram_id >= cut]
    if len(fresh) / len(mine) < FRESH_FLAG_SHARE:
        return []
    details = SurveyFreshAccounts(fresh=len(fresh), answers=len(mine), expected=FRESH_SHARE)
    flags = []
    for contact_id in sorted(fresh):
        flag = await _add_flag(session, contact_id, [c for c in fresh if c != contact_id], details)
        flags += [flag] if flag else []
    return flags


# -- figures -------------------------------------------------------------------------------------------------
@dataclass
class NpsRow:
    key: str  # "" for the whole project, else the promoter's name or the store
    surveys: int = 0  # contacts whose receipt carried a survey
    responses: int = 0
    promoters: int = 0
    passives: int = 0
    detractors: int = 0
    verbatims: list[tuple[str, str]] = field(default_factory=list)  # (category, text)

    @property
    def nps(self) -> float | None:
        """% promoters - % detractors, on -100..100; None without answers."""
        if not self.responses:
            return None
        return 100.0 * (self.promoters - self.detractors) / self.responses

    @property
    def response_rate(self) -> float | None:
        return share(self.responses, self.surveys)


async def nps_figures(
    session: AsyncSession,
    project_id: int,
    start: dt.datetime,
    end: dt.datetime,
    *,
    by: str | None = None,
    verbatims: int = 5,
) -> list[NpsRow]:
    """NPS over surveys of contacts submitted in [start, end); by None, "promoter" or "store"."""
    rows = (
        await session.execute(
            select(Contact, User, NpsAnswer.category, NpsAnswer.follow_up)
            .join(NpsSurvey, NpsSurvey.contact_id == Contact.id)
            .join(User, User.id == Contact.promoter_id)
            .outerjoin(NpsAnswer, NpsAnswer.survey_id == NpsSurvey.id)
            .where(submitted_in(project_id, start, end))
            .order_by(Contact.id.desc())
        )
    ).all()
    groups: dict[str, NpsRow] = {}
    for contact, promoter, category, follow_up in rows:
        if by == "promoter":
            key = promoter.display_name
        elif by == "store":
            key = str(contact.form_answers.get("store") or "—")
        else:
            key = ""
        group = groups.setdefault(key, NpsRow(key))
        group.surveys += 1
        if category is None:
            continue
        group.responses += 1
        if category == NpsCategory.PROMOTER:
            group.promoters += 1
        elif category == NpsCategory.DETRACTOR:
            group.detractors += 1
        else:
            group.passives += 1
        if follow_up and len(group.verbatims) < verbatims:
            group.verbatims.append((str(category), follow_up))
    return sorted(groups.values(), key=lambda g: (-(g.nps if g.nps is not None else -1000), g.key))


# -- closed loop ---------------------------------------------------------------------------------------------
async def detractor_alert(
    session: AsyncSession, survey: NpsSurvey, row: NpsAnswer
) -> alerts.AlertRequest | None:
    """A detractor's alert for the managers (None for other answers); one per survey however often asked."""
    if row.category != NpsCategory.DETRACTOR:
        return None
    contact = await session.get(Contact, survey.contact_id)
    assert contact is not None
    promoter = await session.get(User, contact.promoter_id)
    assert promoter is not None
    store = contact.form_answers.get("store")
    details = Detractor(
        score=row.score,
        scale=survey.scale,
        verbatim=crypto.seal(row.follow_up) if row.follow_up else None,  # alert details are not a column
        promoter=promoter.display_name,
        store=str(store) if store is not None else None,
    )
    return alerts.AlertRequest(survey.project_id, details, contact.id, survey_id=survey.id)


async def overdue_follow_ups(session: AsyncSession, now: dt.datetime) -> list[alerts.AlertRequest]:
    """Detractors who neither wrote nor skipped the follow-up: their alerts go without the words."""
    rows = (
        await session.execute(
            select(NpsSurvey, NpsAnswer)
            .join(NpsAnswer, NpsAnswer.survey_id == NpsSurvey.id)
            .where(
                NpsSurvey.status == SurveyStatus.ANSWERED,
                NpsSurvey.follow_up_done_at.is_(None),
                NpsSurvey.answered_at <= now - FOLLOW_UP_WAIT,
            )
            .order_by(NpsSurvey.id)
            .limit(500)
            .with_for_update(of=NpsSurvey, skip_locked=True)
        )
    ).all()
    due = []
    for survey, row in rows:
        survey.follow_up_done_at = now
        request = await detractor_alert(session, survey, row)
        if request is not None:
            due.append(request)
    await session.flush()
    return due


async def expire_surveys(session: AsyncSession, now: dt.datetime) -> int:
    result = await session.execute(
        update(NpsSurvey)
        .where(
            NpsSurvey.status.in_([SurveyStatus.PENDING, SurveyStatus.OPENED]),
            NpsSurvey.expires_at <= now,
        )
        .values(status=SurveyStatus.EXPIRED, updated_at=now)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def customer_of(session: AsyncSession, alert: ManagerAlert) -> tuple[int, str | None] | None:
    """(telegram id, locale) of the customer (or client) behind an alert, to thank them once it is resolved."""
    project = await session.get(Project, alert.project_id)
    if project is None or not project.survey_thank_on_resolve:
        return None
    telegram_id: int | None = None
    details = alert.details
    if isinstance(details, ClientDetractor) and details.client_telegram_id is not None:
        telegram_id = details.client_telegram_id
    elif alert.survey_id is not None:
        survey = await session.get(NpsSurvey, alert.survey_id)
        telegram_id = survey.customer_telegram_id if survey else None
    if telegram_id is None:
        return None
    person = await session.scalar(select(User).where(User.telegram_id == telegram_id))
    return telegram_id, person.locale if person else None
