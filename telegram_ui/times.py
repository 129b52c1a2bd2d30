"""Times as a person reads them: in the project's time zone, with the zone named.

Every moment is stored in UTC; nobody in the field reads UTC. A time shown to a person is converted to the
zone of the project it belongs to (`Project.timezone`, Europe/Moscow by default): Telegram tells a bot nothing
about a user's own zone, and the bot asks nobody, so the project's zone is the person's zone as far as the
bot knows. The zone is always named, so a reader elsewhere is never misled: "22:54 MSK", "09:00 CET",
and "UTC+05" where the zone has no letters of its own.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from models.base import utcnow


def zone_of(name: str | None) -> dt.tzinfo:
    """The zone by its IANA name; UTC for an unknown or missing name (never an error in front of a person)."""
    try:
        return ZoneInfo(name) if name else dt.UTC
    except (ZoneInfoNotFoundError, ValueError):
        return dt.UTC


def zone_label(local: dt.datetime) -> str:
    """The zone's own abbreviation (MSK, CET, UTC) or, where the database has only an offset ("+05"), UTC+05."""
    name = local.tzname() or ""
    if name.isalpha():
        return name
    offset = local.utcoffset() or dt.timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours:02d}" + (f":{rest:02d}" if rest else "")


def local_time(moment: dt.datetime, zone: str | None, *, now: dt.datetime | None = None) -> str:
    """A moment of today (in that zone) as "22:54 MSK"; of another day as "07.05.2030 00:10 MSK"."""
    tz = zone_of(zone)
    local = moment.astimezone(tz)
    today = (now or utcnow()).astimezone(tz).date()
    shown = local.strftime("%H:%M") if local.date() == today else local.strftime("%d.%m.%Y %H:%M")
    return f"{shown} {zone_label(local)}"


def local_datetime(moment: dt.datetime, zone: str | None) -> str:
    """A moment with its date, always: "14.05.2030 22:54 MSK" (an invite's expiry, days ahead)."""
    local = moment.astimezone(zone_of(zone))
    return f"{local.strftime('%d.%m.%Y %H:%M')} {zone_label(local)}"
