"""Russian and English texts through gettext catalogs in `locales/` (msgids are stable keys)."""

from __future__ import annotations

from pathlib import Path

from aiogram.utils.i18n import I18n
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from infra.settings import PROJECT_ROOT

LOCALES_DIR = PROJECT_ROOT / "locales"
DOMAIN = "messages"
LOCALES = ("ru", "en")


def compile_catalogs(locales_dir: Path = LOCALES_DIR) -> list[Path]:
    """Build .mo files from the .po sources when they are missing or stale (no build step to forget)."""
    written = []
    for po_path in sorted(locales_dir.glob(f"*/LC_MESSAGES/{DOMAIN}.po")):
        mo_path = po_path.with_suffix(".mo")
        if mo_path.exists() and mo_path.stat().st_mtime >= po_path.stat().st_mtime:
            continue
        with po_path.open("rb") as po_file:
            catalog = read_po(po_file, locale=po_path.parent.parent.name)
        with mo_path.open("wb") as mo_file:
            write_mo(mo_file, catalog)
        written.append(mo_path)
    return written


def create_i18n(default_locale: str = "ru") -> I18n:
    compile_catalogs()
    return I18n(path=LOCALES_DIR, default_locale=default_locale, domain=DOMAIN)


def pick_locale(preferred: str | None, telegram_language: str | None, default: str) -> str:
    for candidate in (preferred, (telegram_language or "")[:2].lower()):
        if candidate in LOCALES:
            return candidate
    return default


# Each language by its own name, the same in every locale (a person who cannot read the current language
# still finds theirs), so these are not catalogue texts. One entry per catalogue in locales/.
LANGUAGE_NAMES = {"ru": "Русский", "en": "English"}
