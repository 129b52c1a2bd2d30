"""The console's texts: the `console` gettext domain in locales/ (beside the bot's `messages`), per person."""

from __future__ import annotations

import functools
from collections.abc import Callable

from babel.messages.pofile import read_po

from telegram_ui.i18n import LOCALES, LOCALES_DIR

DOMAIN = "console"


@functools.cache
def catalog(locale: str) -> dict[str, str]:
    """msgid -> text for one language, read once per process from its .po source."""
    with (LOCALES_DIR / locale / "LC_MESSAGES" / f"{DOMAIN}.po").open("rb") as po_file:
        return {str(m.id): str(m.string) for m in read_po(po_file) if m.id and m.string}


def pick(locale: str | None, default: str) -> str:
    code = (locale or "")[:2].lower()
    return code if code in LOCALES else default


def translator(locale: str) -> Callable[[str], str]:
    """t(key): the text in `locale`, else the English one, else the key (a missing text shows, not crashes)."""
    own, english = catalog(locale), catalog("en")

    def t(key: str) -> str:
        return own.get(key) or english.get(key) or key

    return t


def text(locale: str, key: str) -> str:
    return translator(pick(locale, "en"))(key)
