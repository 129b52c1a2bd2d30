"""Helpers that turn domain values into translated, HTML-safe text (the wording lives in locales/)."""

from __future__ import annotations

from aiogram.utils.i18n import gettext as _

from models import Role
from services.invites import InviteProblem


def role_name(role: Role) -> str:
    return {
        Role.ADMIN: _("role-admin"),
        Role.MANAGER: _("role-manager"),
        Role.REVIEWER: _("role-reviewer"),
        Role.PROMOTER: _("role-promoter"),
    }[role]


def invite_problem(problem: InviteProblem) -> str:
    return {
        InviteProblem.UNKNOWN: _("invite-unknown"),
        InviteProblem.EXPIRED: _("invite-expired"),
        InviteProblem.USED_UP: _("invite-used-up"),
        InviteProblem.REVOKED: _("invite-revoked"),
        InviteProblem.PROJECT_CLOSED: _("invite-project-closed"),
    }[problem]
