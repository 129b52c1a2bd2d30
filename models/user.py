"""People, their roles per project, and the invites that grant those roles."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from sqlalchemy import BigInteger, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models._types import str_enum
from models.base import Base, IdMixin, TimestampMixin
from models.enums import Role

if TYPE_CHECKING:
    from models.organisation import Project


class User(IdMixin, TimestampMixin, Base):
    __tablename__ = "user_account"

    telegram_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    first_name: Mapped[str] = mapped_column(String(256), default="")
    last_name: Mapped[str | None] = mapped_column(String(256), default=None)
    username: Mapped[str | None] = mapped_column(String(64), default=None)
    # None until the person picks one: the Telegram client language is used meanwhile.
    locale: Mapped[str | None] = mapped_column(String(8), default=None)
    is_blocked: Mapped[bool] = mapped_column(default=False)

    memberships: Mapped[list[Membership]] = relationship(back_populates="user")

    @property
    def display_name(self) -> str:
        return " ".join(p for p in (self.first_name, self.last_name) if p) or f"id{self.telegram_id}"


class Membership(IdMixin, TimestampMixin, Base):
    """A user's role in one project; reviewer-specific state (shift, seniority) lives here too."""

    __tablename__ = "membership"
    __table_args__ = (UniqueConstraint("user_id", "project_id", "role"),)

    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    role: Mapped[Role] = mapped_column(str_enum(Role))
    is_active: Mapped[bool] = mapped_column(default=True)
    on_shift: Mapped[bool] = mapped_column(default=False)
    is_senior: Mapped[bool] = mapped_column(default=False)
    invite_id: Mapped[int | None] = mapped_column(ForeignKey("invite.id", ondelete="SET NULL"), default=None)

    user: Mapped[User] = relationship(back_populates="memberships")
    project: Mapped[Project] = relationship(back_populates="memberships")


class Invite(IdMixin, TimestampMixin, Base):
    __tablename__ = "invite"

    code: Mapped[str] = mapped_column(String(32), unique=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    role: Mapped[Role] = mapped_column(str_enum(Role))
    max_uses: Mapped[int] = mapped_column(default=1)
    uses: Mapped[int] = mapped_column(default=0)
    expires_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    revoked: Mapped[bool] = mapped_column(default=False)
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL"), default=None
    )

    project: Mapped[Project] = relationship()
