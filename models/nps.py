"""Customer satisfaction surveys, collected by the bot directly from the customer."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models._types import str_enum
from models.base import Base, IdMixin, TimestampMixin
from models.enums import NpsCategory, NpsScale, SurveyStatus


class NpsSurvey(IdMixin, TimestampMixin, Base):
    __tablename__ = "nps_survey"

    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"), unique=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    token: Mapped[str] = mapped_column(String(32), unique=True)  # deep-link payload for the customer
    scale: Mapped[NpsScale] = mapped_column(str_enum(NpsScale))
    status: Mapped[SurveyStatus] = mapped_column(str_enum(SurveyStatus), default=SurveyStatus.PENDING)
    customer_telegram_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    sent_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    expires_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class NpsAnswer(IdMixin, TimestampMixin, Base):
    __tablename__ = "nps_answer"

    survey_id: Mapped[int] = mapped_column(ForeignKey("nps_survey.id", ondelete="CASCADE"), unique=True)
    score: Mapped[int]
    category: Mapped[NpsCategory] = mapped_column(str_enum(NpsCategory))
    follow_up: Mapped[str | None] = mapped_column(Text, default=None)
