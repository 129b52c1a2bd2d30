"""Customer satisfaction surveys, collected by the bot directly from the customer, and the alerts that put
an unhappy customer in front of a manager."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, Date, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models._types import str_enum
from models.base import Base, IdMixin, TimestampMixin
from models.crypto import EncryptedText
from models.enums import AlertKind, AlertStatus, NpsCategory, NpsScale, SurveyStatus
from models.payloads import KindKeyedDetails, alert_details


class NpsSurvey(IdMixin, TimestampMixin, Base):
    """One survey per contact; its token is the deep link the customer scans from the promoter's screen."""

    __tablename__ = "nps_survey"
    __table_args__ = (Index("ix_nps_survey_customer", "customer_telegram_id", "answered_at"),)

    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"), unique=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    token: Mapped[str] = mapped_column(String(32), unique=True)  # deep-link payload for the customer
    scale: Mapped[NpsScale] = mapped_column(str_enum(NpsScale))
    status: Mapped[SurveyStatus] = mapped_column(str_enum(SurveyStatus), default=SurveyStatus.PENDING)
    # The account that opened the link first; nobody else can use it after that.
    customer_telegram_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    sent_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    expires_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    opened_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    answered_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    # Set once the follow-up is written, skipped, or given up on: a detractor's alert waits for it.
    follow_up_done_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class NpsAnswer(IdMixin, TimestampMixin, Base):
    __tablename__ = "nps_answer"

    survey_id: Mapped[int] = mapped_column(ForeignKey("nps_survey.id", ondelete="CASCADE"), unique=True)
    score: Mapped[int]  # 0-10, or 0/1/2 for Bad/Good/Excellent (the survey's scale says which)
    category: Mapped[NpsCategory] = mapped_column(str_enum(NpsCategory))
    follow_up: Mapped[str | None] = mapped_column(EncryptedText, default=None)  # sealed at rest


class ManagerAlert(IdMixin, TimestampMixin, Base):
    """Something a manager must act on now; who took it and how it was resolved is the record."""

    __tablename__ = "manager_alert"
    __table_args__ = (Index("ix_manager_alert_open", "status", "created_at"),)

    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    kind: Mapped[AlertKind] = mapped_column(str_enum(AlertKind))
    contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("contact.id", ondelete="CASCADE"), index=True, default=None
    )
    survey_id: Mapped[int | None] = mapped_column(
        ForeignKey("nps_survey.id", ondelete="CASCADE"), unique=True, default=None
    )
    # What makes this alert the same alert when a job runs again: "fraud:<review>", "sla:<contact>:<n>", ...
    dedupe_key: Mapped[str | None] = mapped_column(String(160), unique=True, default=None)
    # Read and written as `details`: the column holds the payload without its kind (the row's kind says it).
    stored_details: Mapped[dict[str, Any]] = mapped_column("details", default=dict)
    status: Mapped[AlertStatus] = mapped_column(str_enum(AlertStatus), default=AlertStatus.OPEN)
    taken_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"), default=None)
    taken_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    resolved_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"), default=None)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    resolution_note: Mapped[str | None] = mapped_column(Text, default=None)
    repeated_at: Mapped[dt.datetime | None] = mapped_column(default=None)

    details = KindKeyedDetails(alert_details)


class ClientSurvey(IdMixin, TimestampMixin, Base):
    """One round of the periodic survey of a client's contact person (a client-role member)."""

    __tablename__ = "client_survey"
    __table_args__ = (
        UniqueConstraint("project_id", "user_id", "due_on"),
        Index("ix_client_survey_open", "status", "sent_at"),
    )

    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    due_on: Mapped[dt.date] = mapped_column(Date())
    scale: Mapped[NpsScale] = mapped_column(str_enum(NpsScale))
    status: Mapped[SurveyStatus] = mapped_column(str_enum(SurveyStatus), default=SurveyStatus.SENT)
    sent_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    reminded_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    answered_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    score: Mapped[int | None] = mapped_column(default=None)
    category: Mapped[NpsCategory | None] = mapped_column(str_enum(NpsCategory), default=None)
    follow_up: Mapped[str | None] = mapped_column(EncryptedText, default=None)  # sealed at rest
