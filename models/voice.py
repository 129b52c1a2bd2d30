"""Speaker embeddings and the fraud flags raised from them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from models._types import str_enum
from models.base import Base, IdMixin, TimestampMixin
from models.enums import FlagKind, VoiceRole
from models.payloads import KindKeyedDetails, flag_details


class Voiceprint(IdMixin, TimestampMixin, Base):
    """One voice heard in one recording (or a promoter's enrolled reference)."""

    __tablename__ = "voiceprint"

    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    audio_id: Mapped[int] = mapped_column(ForeignKey("audio.id", ondelete="CASCADE"), index=True)
    contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("contact.id", ondelete="CASCADE"), index=True, default=None
    )
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"), index=True, default=None)
    role: Mapped[VoiceRole] = mapped_column(str_enum(VoiceRole), default=VoiceRole.UNKNOWN)
    backend: Mapped[str] = mapped_column(String(32))
    dim: Mapped[int]
    vector: Mapped[bytes] = mapped_column(LargeBinary)  # float32, L2-normalised
    speech_seconds: Mapped[float] = mapped_column(default=0.0)


class VoiceFlag(IdMixin, TimestampMixin, Base):
    """A fraud flag on a contact; `details` is typed by its kind (models.payloads)."""

    __tablename__ = "voice_flag"

    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"), index=True)
    kind: Mapped[FlagKind] = mapped_column(str_enum(FlagKind))
    score: Mapped[float] = mapped_column(default=0.0)
    matched_contact_ids: Mapped[list[int]] = mapped_column(default=list)
    # Read and written as `details`: the column holds the payload without its kind (the row's kind says it).
    stored_details: Mapped[dict[str, Any]] = mapped_column("details", default=dict)
    cluster_key: Mapped[str | None] = mapped_column(String(64), index=True, default=None)
    alerted: Mapped[bool] = mapped_column(default=False)

    details = KindKeyedDetails(flag_details)
