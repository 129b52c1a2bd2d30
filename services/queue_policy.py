"""The review queue's one priority policy: what moves a contact ahead of others, and the order in which
queued contacts are dealt to reviewers. Every change of `Contact.priority` goes through `move_ahead`."""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from models import Contact


class Ahead(IntEnum):
    """Why a contact goes ahead, and by how much (the steps add up: a duplicate with voice flags is +15)."""

    DUPLICATE_RECORDING = 10  # the very file was sent before: a person should see it first
    VOICE_FLAGS = 5  # the voice check raised a flag (self-recording, repeated customer, colleague)
    WAITED_ALREADY = 1  # a reviewer let it expire or handed it back: ahead of fresh work of the same kind


def move_ahead(contact: Contact, reason: Ahead) -> None:
    contact.priority += int(reason)


def queue_order() -> tuple[Any, ...]:
    """Highest priority first, then the longest waiting; the id breaks ties so every worker sees one order."""
    return (Contact.priority.desc(), Contact.queued_at, Contact.id)
