"""A promoter's reported customer contact, its recording, and its path through review."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models._types import PydanticJSON, str_enum
from models.base import Base, IdMixin, TimestampMixin, utcnow
from models.enums import AnalysisState, AudioKind, ContactStatus, Verdict
from models.payloads import AnalysisEvidence

# Which status may follow which: anything else is a bug or a forged request.
CONTACT_TRANSITIONS: dict[ContactStatus, frozenset[ContactStatus]] = {
    ContactStatus.RECEIVED: frozenset({ContactStatus.QUEUED}),
    ContactStatus.QUEUED: frozenset({ContactStatus.IN_REVIEW}),
    # Back to QUEUED on expiry/return; to DISPUTED when a re-review's card expires; REVIEWED on submit.
    ContactStatus.IN_REVIEW: frozenset(
        {ContactStatus.QUEUED, ContactStatus.REVIEWED, ContactStatus.DISPUTED}
    ),
    ContactStatus.REVIEWED: frozenset({ContactStatus.DISPUTED, ContactStatus.FINAL, ContactStatus.IN_REVIEW}),
    ContactStatus.DISPUTED: frozenset({ContactStatus.IN_REVIEW, ContactStatus.FINAL}),
    ContactStatus.FINAL: frozenset(),
}


class InvalidTransition(Exception):
    def __init__(self, current: ContactStatus, target: ContactStatus) -> None:
        super().__init__(f"contact cannot go from {current} to {target}")
        self.current, self.target = current, target


class Contact(IdMixin, TimestampMixin, Base):
    __tablename__ = "contact"
    __table_args__ = (
        Index("ix_contact_queue", "project_id", "status", "priority", "queued_at"),
        # Digests, reports and exports read a project's contacts by the day they were submitted.
        Index("ix_contact_project_submitted", "project_id", "submitted_at"),
        Index("ix_contact_calibration", "project_id", "calibration", "submitted_at"),  # kappa in digests
        # The retention purge finds the old contacts not purged yet without walking the purged ones.
        Index("ix_contact_unpurged", "project_id", "personal_data_purged_at", "submitted_at"),
        # The same Telegram update can never create two contacts.
        UniqueConstraint("promoter_id", "source_update_id"),
    )

    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    promoter_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), index=True)
    form_answers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[ContactStatus] = mapped_column(str_enum(ContactStatus), default=ContactStatus.RECEIVED)
    priority: Mapped[int] = mapped_column(default=0)  # higher = reviewed sooner (flags raise it)
    calibration: Mapped[bool] = mapped_column(
        default=False, server_default=false()
    )  # picked for a second, blind review
    score: Mapped[float | None] = mapped_column(default=None)
    final_verdict: Mapped[Verdict | None] = mapped_column(str_enum(Verdict), default=None)
    source_update_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    # The promoter's receipt, edited as the contact moves on (jobs/receipts.py).
    receipt_message_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    receipt_status: Mapped[ContactStatus | None] = mapped_column(str_enum(ContactStatus), default=None)
    submitted_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    queued_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    reviewed_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    finalized_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    # Where speech routing sent the contact (services.speech.routing, issue #25): "automatic" (its verdict
    # is the machine's, no review row) or "person"; None where routing was off or had no speech report.
    routed_to: Mapped[str | None] = mapped_column(String(16), default=None)
    # Set when the retention period (or a person's erasure) removed the recording and personal answers.
    personal_data_purged_at: Mapped[dt.datetime | None] = mapped_column(default=None)

    audio: Mapped[list[Audio]] = relationship(back_populates="contact")

    def transition_to(self, target: ContactStatus) -> None:
        if target not in CONTACT_TRANSITIONS[self.status]:
            raise InvalidTransition(self.status, target)
        self.status = target


class Audio(IdMixin, TimestampMixin, Base):
    """A stored recording: the dialogue of a contact, or a promoter's enrolment read-aloud."""

    __tablename__ = "audio"

    contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("contact.id", ondelete="CASCADE"), index=True, default=None
    )
    owner_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), index=True)
    kind: Mapped[AudioKind] = mapped_column(str_enum(AudioKind), default=AudioKind.DIALOGUE)
    storage_key: Mapped[str] = mapped_column(String(256))  # content address inside the audio store
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    duration_seconds: Mapped[float] = mapped_column(default=0.0)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    mime_type: Mapped[str | None] = mapped_column(String(64), default=None)
    telegram_file_id: Mapped[str | None] = mapped_column(String(256), default=None)
    telegram_file_unique_id: Mapped[str | None] = mapped_column(String(64), default=None)

    contact: Mapped[Contact | None] = relationship(back_populates="audio")


class AnalysisTask(IdMixin, TimestampMixin, Base):
    """Voice analysis work, claimed by worker processes (resumable after a crash)."""

    __tablename__ = "analysis_task"
    __table_args__ = (Index("ix_analysis_task_claim", "state", "created_at"),)

    audio_id: Mapped[int] = mapped_column(ForeignKey("audio.id", ondelete="CASCADE"), unique=True)
    state: Mapped[AnalysisState] = mapped_column(str_enum(AnalysisState), default=AnalysisState.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(128), default=None)
    claimed_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    finished_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    error: Mapped[str | None] = mapped_column(String(2000), default=None)
    # What the self-recording judgement rested on (backend, features, probabilities), kept for every
    # analysed contact, flagged or not: reviewers' verdicts turn these into labels (`voice quality`,
    # `voice eval --from-reviews`).
    evidence: Mapped[AnalysisEvidence | None] = mapped_column(PydanticJSON(AnalysisEvidence), default=None)
    # Speech analysis, where the project has it on: the transcript with speakers, the script checks with
    # their quotes and the automatic verdict (services.speech.pipeline.SpeechReport.as_dict).
    speech: Mapped[dict[str, Any] | None] = mapped_column(default=None)
