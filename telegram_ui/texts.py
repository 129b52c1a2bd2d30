"""Helpers that turn domain values into translated, HTML-safe text (the wording lives in locales/)."""

from __future__ import annotations

from aiogram.utils.i18n import gettext as _

from models import ContactStatus, Role, Verdict
from services import exports
from services.audio import AudioBounds, AudioProblem
from services.intake import DisputeProblem
from services.invites import InviteProblem


def role_name(role: Role) -> str:
    return {
        Role.ADMIN: _("role-admin"),
        Role.MANAGER: _("role-manager"),
        Role.REVIEWER: _("role-reviewer"),
        Role.PROMOTER: _("role-promoter"),
        Role.CLIENT: _("role-client"),
    }[role]


def invite_problem(problem: InviteProblem) -> str:
    return {
        InviteProblem.UNKNOWN: _("invite-unknown"),
        InviteProblem.EXPIRED: _("invite-expired"),
        InviteProblem.USED_UP: _("invite-used-up"),
        InviteProblem.REVOKED: _("invite-revoked"),
        InviteProblem.PROJECT_CLOSED: _("invite-project-closed"),
    }[problem]


def contact_status(status: ContactStatus) -> str:
    return {
        ContactStatus.RECEIVED: _("status-received"),
        ContactStatus.QUEUED: _("status-queued"),
        ContactStatus.IN_REVIEW: _("status-in-review"),
        ContactStatus.REVIEWED: _("status-reviewed"),
        ContactStatus.DISPUTED: _("status-disputed"),
        ContactStatus.FINAL: _("status-final"),
    }[status]


def audio_problem(problem: AudioProblem, bounds: AudioBounds) -> str:
    texts = {
        AudioProblem.NOT_AUDIO: _("audio-not-audio"),
        AudioProblem.TOO_BIG: _("audio-too-big"),
        AudioProblem.UNDECODABLE: _("audio-undecodable"),
        AudioProblem.TOO_SHORT: _("audio-too-short"),
        AudioProblem.TOO_LONG: _("audio-too-long"),
        AudioProblem.SILENT: _("audio-silent"),
    }
    return texts[problem].format(min=_seconds(bounds.min_seconds), max=_seconds(bounds.max_seconds))


def _seconds(value: float) -> str:
    minutes, seconds = divmod(int(value), 60)
    return f"{minutes}:{seconds:02d}"


def dispute_problem(problem: DisputeProblem) -> str:
    return {
        DisputeProblem.NOT_YOURS: _("dispute-not-yours"),
        DisputeProblem.NOT_REVIEWED: _("dispute-not-reviewed"),
        DisputeProblem.WINDOW_CLOSED: _("dispute-window-closed"),
        DisputeProblem.ALREADY: _("dispute-already"),
        DisputeProblem.EMPTY_REASON: _("dispute-empty-reason"),
    }[problem]


def export_labels() -> exports.Labels:
    """An export's own words in the current language: a Russian manager's file has Russian column titles,
    totals row, yes/no, statuses and verdicts (the data itself is written as stored)."""
    columns = {c.key for c in (*exports.BILLING_COLUMNS, *exports.CONTACT_COLUMNS) if c.key}
    return exports.Labels(
        titles={key: _(f"export-col-{key}") for key in sorted(columns)},
        total=_("export-total"),
        yes=_("export-yes"),
        no=_("export-no"),
        status={status.value: contact_status(status) for status in ContactStatus},
        verdict={
            Verdict.APPROVE.value: _("export-verdict-approve"),
            Verdict.REJECT.value: _("export-verdict-reject"),
            Verdict.FRAUD.value: _("export-verdict-fraud"),
        },
    )
