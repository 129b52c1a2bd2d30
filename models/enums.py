"""Closed vocabularies of the domain; stored as strings (see models.base)."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    MANAGER = "manager"
    REVIEWER = "reviewer"
    PROMOTER = "promoter"
    CLIENT = (
        "client"  # a client company's contact person, surveyed every few months (services/client_surveys)
    )


class ContactStatus(StrEnum):
    RECEIVED = "received"  # committed with its audio, analysis not yet done
    QUEUED = "queued"  # waiting for a reviewer
    IN_REVIEW = "in_review"
    REVIEWED = "reviewed"  # a verdict exists, dispute window open
    DISPUTED = "disputed"  # promoter disputed, waiting for re-review
    FINAL = "final"


class Verdict(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    FRAUD = "fraud"


class AudioKind(StrEnum):
    DIALOGUE = "dialogue"
    ENROLMENT = "enrolment"


class AnalysisState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class VoiceRole(StrEnum):
    PROMOTER = "promoter"
    CUSTOMER = "customer"
    UNKNOWN = "unknown"


class FlagKind(StrEnum):
    NO_CUSTOMER = "no_customer"
    CUSTOMER_IS_PROMOTER = "customer_is_promoter"
    REPEATED_CUSTOMER = "repeated_customer"
    CUSTOMER_IS_OTHER_PROMOTER = "customer_is_other_promoter"
    DUPLICATE_RECORDING = "duplicate_recording"
    LOW_SPEECH = "low_speech"
    # Customer-survey cross-checks (services/surveys.py): what was observed, shown on the card like the
    # voice flags; they state facts, never a probability.
    SURVEY_SAME_RESPONDENT = "survey_same_respondent"
    SURVEY_FAST_ANSWER = "survey_fast_answer"
    SURVEY_FRESH_ACCOUNTS = "survey_fresh_accounts"


class AssignmentKind(StrEnum):
    PRIMARY = "primary"
    CALIBRATION = "calibration"
    REREVIEW = "rereview"


class AssignmentStatus(StrEnum):
    OFFERED = "offered"  # posted to the reviewers' group, not yet taken
    OPEN = "open"
    DONE = "done"
    EXPIRED = "expired"
    RETURNED = "returned"
    CANCELLED = "cancelled"


class DisputeStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class NpsScale(StrEnum):
    ZERO_TO_TEN = "0-10"
    THREE_POINT = "3-point"  # Bad / Good / Excellent


class NpsCategory(StrEnum):
    DETRACTOR = "detractor"
    PASSIVE = "passive"
    PROMOTER = "promoter"


class SurveyStatus(StrEnum):
    PENDING = "pending"  # the link exists; no customer has opened it
    SENT = "sent"  # (unused: kept for rows written before surveys were built)
    OPENED = "opened"  # a customer account opened the link and holds it now
    ANSWERED = "answered"
    DECLINED = "declined"  # the customer did not consent: nothing of theirs is kept
    EXPIRED = "expired"


class AlertKind(StrEnum):
    DETRACTOR = "detractor"
    CLIENT_DETRACTOR = "client_detractor"
    FRAUD = "fraud"  # a reviewer's fraud verdict
    REPEATED_VOICE = "repeated_voice"  # one customer voice across many contacts (a new cluster)
    SLA_STREAK = "sla_streak"  # a contact's cards expired N times in a row
    EXHAUSTED = "exhausted"  # every reviewer let the contact's card expire
    REJECTION_STREAK = "rejection_streak"  # a promoter's N rejections in a row
    ANALYSIS_BACKLOG = "analysis_backlog"  # voice analyses waiting too long
    REVIEWER_IDLE = "reviewer_idle"  # a reviewer on shift sitting on open cards


class AlertStatus(StrEnum):
    OPEN = "open"
    TAKEN = "taken"
    RESOLVED = "resolved"


class OutboxStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"  # e.g. feedback withdrawn by a review's undo
