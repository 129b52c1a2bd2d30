"""A local Telegram Bot API stand-in: the real aiogram bot talks to it over HTTP in tests and the sandbox.

`StandIn` runs the server and is the driver: it acts as users and groups (text, commands, voice, audio,
documents, contacts, button presses), reads what the bot sent, and injects faults (429, 5xx).
"""

from telegram_standin.driver import GroupClient, StandIn, UserClient
from telegram_standin.state import ApiError

__all__ = ["ApiError", "GroupClient", "StandIn", "UserClient"]
