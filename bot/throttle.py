"""Flood control at the door: a token bucket per person, applied before an update is stored or handled.

Why at the door: a throttled update used to cost a full write transaction (stored in the inbox, claimed,
the sender loaded) before the dispatcher's last middleware dropped it, so a flood cost the database what
real work costs. Here it costs a dictionary lookup and, once per flood, a short notice.
Recordings always go through: each one is a contact someone is paid for.
"""

from __future__ import annotations

import time
from typing import Any

RECORDING_KEYS = ("voice", "audio", "document", "video_note")


def sender_of(payload: dict[str, Any]) -> dict[str, Any]:
    """The `from` of a Bot API update payload (stored payloads say `from_user`: aiogram's model_dump)."""
    for kind in ("message", "edited_message", "callback_query", "inline_query", "my_chat_member"):
        source = payload.get(kind)
        if isinstance(source, dict):
            sender = source.get("from") or source.get("from_user")
            return sender if isinstance(sender, dict) else {}
    return {}


def carries_a_recording(payload: dict[str, Any]) -> bool:
    message = payload.get("message")
    return isinstance(message, dict) and any(message.get(key) for key in RECORDING_KEYS)


class Throttle:
    def __init__(self, rate_per_second: float, burst: int) -> None:
        self.rate, self.burst = rate_per_second, burst
        self._buckets: dict[int, tuple[float, float, bool]] = {}  # user -> (tokens, last time, warned)

    def admit(self, payload: dict[str, Any]) -> tuple[bool, bool]:
        """(admitted, tell): tell is True for the first update refused in a flood (it gets one notice)."""
        user_id = sender_of(payload).get("id")
        if not isinstance(user_id, int) or self.rate <= 0 or carries_a_recording(payload):
            return True, False
        now = time.monotonic()
        tokens, last, warned = self._buckets.get(user_id, (float(self.burst), now, False))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens >= 1:
            self._buckets[user_id] = (tokens - 1, now, False)
            return True, False
        self._buckets[user_id] = (tokens, now, True)
        if len(self._buckets) > 100_000:  # bound memory on a long-running process
            self._buckets.clear()
        # A press always gets its answer (the spinner stops); a flood of texts gets one notice.
        return False, "callback_query" in payload or not warned
