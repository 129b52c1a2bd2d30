"""Who is asking: Mini App initData checked as Telegram specifies, and the console's own session cookie.

initData (https://core.telegram.org/bots/webapps#validating-data-received-via-the-mini-app): every field but
`hash`, sorted and joined by newlines, HMAC-SHA-256 under the key HMAC-SHA-256("WebAppData", bot token);
aiogram's `safe_parse_webapp_init_data` does exactly that. On top: `auth_date` must be recent, and one
initData signs in once (services.console_auth remembers its hash until it is stale anyway).

The session is a signed cookie, not a server table: `<telegram id>.<expiry>.<locale>.<HMAC>`. It says who,
never what they may see: roles are read from the database on every request (services.console.viewer_for).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass

from aiogram.utils.web_app import safe_parse_webapp_init_data

SESSION_COOKIE = "fc_console"
CLOCK_SKEW = dt.timedelta(minutes=1)  # an auth_date this far ahead of our clock is still believed


class Refused(Exception):
    """A sign-in that must not succeed; `reason` goes to the log and to the caller's status code."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class MiniAppSignIn:
    telegram_id: int
    language: str | None
    init_hash: str
    auth_date: dt.datetime


def verify_init_data(token: str, raw: str, max_age: dt.timedelta, now: dt.datetime) -> MiniAppSignIn:
    """The person Telegram vouches for, or Refused("forged" | "stale" | "future" | "no_user")."""
    if not raw or len(raw) > 8192:
        raise Refused("forged")
    try:
        data = safe_parse_webapp_init_data(token, raw)
    except (ValueError, TypeError):
        raise Refused("forged") from None
    auth_date = data.auth_date if data.auth_date.tzinfo else data.auth_date.replace(tzinfo=dt.UTC)
    if now - auth_date > max_age:
        raise Refused("stale")
    if auth_date - now > CLOCK_SKEW:
        raise Refused("future")
    if data.user is None:
        raise Refused("no_user")
    return MiniAppSignIn(data.user.id, data.user.language_code, data.hash, auth_date)


def session_key(secret: str | None, bot_token: str) -> bytes:
    """The cookie's signing key: WEB_SESSION_SECRET, else one derived from the bot token (never the token
    itself, which also signs initData)."""
    if secret:
        return hashlib.sha256(secret.encode()).digest()
    return hmac.new(b"fieldcheck-console-session", bot_token.encode(), hashlib.sha256).digest()


def _mac(key: bytes, payload: str) -> str:
    digest = hmac.new(key, payload.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def issue_session(key: bytes, telegram_id: int, locale: str, expires_at: dt.datetime) -> str:
    payload = f"{telegram_id}.{int(expires_at.timestamp())}.{locale}"
    return f"{payload}.{_mac(key, payload)}"


@dataclass(frozen=True)
class Session:
    telegram_id: int
    locale: str
    expires_at: dt.datetime


def read_session(key: bytes, cookie: str | None, now: dt.datetime) -> Session | None:
    """The session the cookie carries, if its signature holds and it has not expired."""
    if not cookie or cookie.count(".") != 3:
        return None
    payload, mac = cookie.rsplit(".", 1)
    if not hmac.compare_digest(_mac(key, payload), mac):
        return None
    telegram_id, expiry, locale = payload.split(".")
    try:
        expires_at = dt.datetime.fromtimestamp(int(expiry), dt.UTC)
        who = int(telegram_id)
    except ValueError:
        return None
    if expires_at <= now:
        return None
    return Session(who, locale, expires_at)
