"""The outbox's dedupe keys, for whoever writes a message and whoever looks it up again (an edit of a
receipt finds the receipt by its key, an alert's copies are found by a LIKE pattern, an undo cancels the
feedback by its key). The strings are exactly those that rows already stored carry: change one and the
stored rows no longer match (a message queued twice, an edit that finds nothing)."""

from __future__ import annotations

import datetime as dt


def receipt(contact_id: int) -> str:
    """The promoter's receipt for a contact (edited in place as the contact moves on)."""
    return f"receipt:{contact_id}"


def survey_code(contact_id: int) -> str:
    return f"survey-qr:{contact_id}"


def automatic_feedback(contact_id: int) -> str:
    return f"automatic:{contact_id}"


FEEDBACK_ANY = "feedback:%"  # LIKE pattern: every review's feedback


def feedback(review_id: int) -> str:
    """A review's feedback to the promoter, queued until the undo window has passed."""
    return f"feedback:{review_id}"


def card_voice(assignment_id: int) -> str:
    return f"card-voice:{assignment_id}"


def card_form(assignment_id: int, part: int) -> str:
    return f"card-form:{assignment_id}:{part}"


def card(assignment_id: int) -> str:
    return f"card:{assignment_id}"


def card_closed(reason: str, assignment_id: int) -> str:
    """An open card edited to say why it closed (`reason`: telegram_ui.cards.CardClosed's value)."""
    return f"{reason}:{assignment_id}"


def offer(assignment_id: int) -> str:
    return f"offer:{assignment_id}"


def alert_copy(alert_id: int, chat_id: int, *, repeat: bool = False) -> str:
    """One managers' chat's copy of an alert (or of its one repetition)."""
    return f"alert{'-repeat' if repeat else ''}:{alert_id}:{chat_id}"


def alert_copies(alert_id: int) -> tuple[str, str]:
    """LIKE patterns of every copy of an alert, first and repeated (see alert_copy)."""
    return f"alert:{alert_id}:%", f"alert-repeat:{alert_id}:%"


def alert_thanks(alert_id: int) -> str:
    return f"alert-thanks:{alert_id}"


def client_survey(survey_id: int, *, reminder: bool) -> str:
    return f"client-survey:{survey_id}:{'reminder' if reminder else 'first'}"


def digest(project_id: int, day: dt.date, chat_id: int) -> str:
    return f"digest:{project_id}:{day.isoformat()}:{chat_id}"


def digest_chart(project_id: int, day: dt.date, chat_id: int) -> str:
    return f"{digest(project_id, day, chat_id)}:chart"
