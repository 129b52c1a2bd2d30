"""Operational tables: the outgoing-message outbox, digest log, and update de-duplication."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, Date, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models._types import PydanticJSON, str_enum
from models.base import Base, IdMixin, TimestampMixin, utcnow
from models.enums import OutboxStatus
from models.payloads import DigestFigures


class OutboxMessage(IdMixin, TimestampMixin, Base):
    """Bot-initiated messages, persisted first and sent by one rate-limited sender."""

    __tablename__ = "outbox_message"
    __table_args__ = (Index("ix_outbox_due", "status", "not_before"),)

    chat_id: Mapped[int] = mapped_column(BigInteger, index=True)
    method: Mapped[str] = mapped_column(String(32))  # sendMessage, sendVoice, editMessageText, ...
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    dedupe_key: Mapped[str | None] = mapped_column(String(128), unique=True, default=None)
    status: Mapped[OutboxStatus] = mapped_column(str_enum(OutboxStatus), default=OutboxStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    not_before: Mapped[dt.datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    telegram_message_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    last_error: Mapped[str | None] = mapped_column(String(1000), default=None)


class DigestLog(IdMixin, TimestampMixin, Base):
    __tablename__ = "digest_log"
    __table_args__ = (UniqueConstraint("project_id", "digest_date"),)

    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    digest_date: Mapped[dt.date] = mapped_column(Date())
    figures: Mapped[DigestFigures] = mapped_column(PydanticJSON(DigestFigures))
    recipients: Mapped[list[int]] = mapped_column(default=list)


class ProcessedUpdate(Base):
    """Telegram update ids already handled, so a redelivered update is processed once."""

    __tablename__ = "processed_update"

    bot_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    update_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    processed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class FsmState(Base):
    """aiogram conversation state (half-filled forms) when no Redis is configured: survives restarts."""

    __tablename__ = "fsm_state"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    state: Mapped[str | None] = mapped_column(String(200), default=None)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class InboxUpdate(Base):
    """An update as Telegram sent it, stored before it is acknowledged (polling's next offset, the webhook's
    200) and removed once handled: a process killed mid-update finds it here at start-up and finishes it."""

    __tablename__ = "inbox_update"

    bot_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    update_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(default=0)  # start-up recoveries so far (a poison update gives up)
