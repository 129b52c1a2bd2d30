"""Client companies and their projects (one project = one promo campaign with its own rules)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, Date, ForeignKey, String, Time, UniqueConstraint, true
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models._types import str_enum
from models.base import Base, IdMixin, TimestampMixin
from models.enums import NpsScale

if TYPE_CHECKING:
    from models.user import Membership


class Organisation(IdMixin, TimestampMixin, Base):
    __tablename__ = "organisation"

    name: Mapped[str] = mapped_column(String(200), unique=True)
    projects: Mapped[list[Project]] = relationship(back_populates="organisation")


class Project(IdMixin, TimestampMixin, Base):
    """Every per-client rule lives here as data, so a new client needs no code change."""

    __tablename__ = "project"
    __table_args__ = (UniqueConstraint("organisation_id", "name"),)

    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisation.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    is_active: Mapped[bool] = mapped_column(default=True)
    timezone: Mapped[str] = mapped_column(String(64), default="Europe/Moscow")
    digest_time: Mapped[dt.time] = mapped_column(Time(), default=dt.time(9, 0))
    rereview_time: Mapped[dt.time] = mapped_column(Time(), default=dt.time(10, 0))
    # Weighted scorecard: {"criteria": [{"key", "weight", "type", "max", "critical"}], ...}.
    scorecard: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Contact form: {"questions": [{"key", "type", "options", ...}]}.
    form_schema: Mapped[dict[str, Any]] = mapped_column(default=dict)
    review_sla_minutes: Mapped[int] = mapped_column(default=15)
    max_open_cards: Mapped[int] = mapped_column(default=3)
    sla_expiries_before_alert: Mapped[int] = mapped_column(default=3)
    # Manager alerts: kinds the managers muted (AlertKind values); a promoter's rejections in a row, voice
    # analyses waiting past analysis_wait_minutes, and minutes a reviewer on shift sits on open cards
    # before the managers hear of it.
    muted_alerts: Mapped[list[str]] = mapped_column(default=list, server_default="[]")
    rejections_before_alert: Mapped[int] = mapped_column(default=5, server_default="5")
    backlog_alert_size: Mapped[int] = mapped_column(default=200, server_default="200")
    idle_alert_minutes: Mapped[int] = mapped_column(default=60, server_default="60")
    # How long a queued contact waits for its voice analysis before review starts without its flags.
    analysis_wait_minutes: Mapped[int] = mapped_column(default=10, server_default="10")
    calibration_share: Mapped[float] = mapped_column(default=0.05)
    dispute_window_hours: Mapped[int] = mapped_column(default=48)
    min_audio_seconds: Mapped[int] = mapped_column(default=10)
    max_audio_seconds: Mapped[int] = mapped_column(default=1800)
    nps_scale: Mapped[NpsScale] = mapped_column(str_enum(NpsScale), default=NpsScale.ZERO_TO_TEN)
    # Customer survey: a QR on every receipt, valid for survey_ttl_hours; one account is surveyed at most
    # once per survey_cooldown_days; survey_question is {"ru": ..., "en": ...} (empty: the standard text).
    survey_enabled: Mapped[bool] = mapped_column(default=True, server_default=true())
    survey_ttl_hours: Mapped[int] = mapped_column(default=72, server_default="72")
    survey_cooldown_days: Mapped[int] = mapped_column(default=30, server_default="30")
    survey_thank_on_resolve: Mapped[bool] = mapped_column(default=True, server_default=true())
    survey_question: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Client contacts (client-role members) are surveyed every client_survey_months (0: never), at
    # client_survey_time local time, with one reminder.
    client_survey_months: Mapped[int] = mapped_column(default=0, server_default="0")
    client_survey_time: Mapped[dt.time] = mapped_column(
        Time(), default=dt.time(11, 0), server_default="11:00:00"
    )
    # Per-backend speaker-verification thresholds and repeated-voice window, e.g.
    # {"resemblyzer": {"same_speaker": 0.75}, "repeat_min_contacts": 3, "repeat_window_days": 30}.
    voice_thresholds: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Speech analysis (services/speech), off until the project turns it on: {"enabled": true, "products":
    # [...], "script": {"criteria": [...], "done_score": ...}, "verdict": {"min_confidence": ...}}; an empty
    # script means the default checks (services.speech.script.default_criteria).
    speech_settings: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    retention_days: Mapped[int] = mapped_column(default=365)
    reviewers_chat_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    managers_chat_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    last_rereview_on: Mapped[dt.date | None] = mapped_column(Date(), default=None)

    organisation: Mapped[Organisation] = relationship(back_populates="projects")
    memberships: Mapped[list[Membership]] = relationship(back_populates="project")
