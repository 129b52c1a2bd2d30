"""Every text key used in code exists in Russian and English, non-empty, with the same placeholders."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from bot.app import BOT_COMMANDS
from infra.settings import PROJECT_ROOT
from telegram_ui.i18n import LANGUAGE_NAMES, LOCALES, LOCALES_DIR, create_i18n, pick_locale

CODE_DIRS = ("bot", "handlers", "services", "jobs", "telegram_ui")
KEY_CALL = re.compile(r"""\b_{1,2}\(\s*["']([a-z0-9-]+)["']""")


def _used_keys() -> set[str]:
    keys: set[str] = set()
    for folder in CODE_DIRS:
        for path in (PROJECT_ROOT / folder).rglob("*.py"):
            keys |= set(KEY_CALL.findall(path.read_text(encoding="utf-8")))
    keys |= {f"cmd-{name}" for name in BOT_COMMANDS}  # built in bot.app.set_commands
    return keys


def _catalog(locale: str) -> dict[str, str]:
    with (LOCALES_DIR / locale / "LC_MESSAGES" / "messages.po").open("rb") as po_file:
        return {str(m.id): str(m.string) for m in read_po(po_file) if m.id}


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_code_uses_text_keys() -> None:
    assert len(_used_keys()) > 20  # the scanner itself works


@pytest.mark.parametrize("locale", LOCALES)
def test_every_used_key_is_translated(locale: str) -> None:
    catalog = _catalog(locale)
    missing = sorted(k for k in _used_keys() if not catalog.get(k, "").strip())
    assert missing == []


def test_placeholders_agree_between_languages() -> None:
    ru, en = _catalog("ru"), _catalog("en")
    assert set(ru) == set(en)
    differing = sorted(k for k in ru if _fields(ru[k]) != _fields(en[k]))
    assert differing == []


def test_runtime_translation_and_locale_choice(tmp_path: Path) -> None:
    i18n = create_i18n("ru")
    with i18n.context(), i18n.use_locale("en"):
        assert i18n.gettext("role-reviewer") == "reviewer"
    with i18n.context(), i18n.use_locale("ru"):
        assert i18n.gettext("role-reviewer") == "оценщик"
    assert pick_locale(None, "en-GB", "ru") == "en"
    assert pick_locale(None, "de", "ru") == "ru"
    assert pick_locale("ru", "en", "en") == "ru"


def test_every_locale_has_a_language_button() -> None:
    """/lang offers each catalogue's language by its own name, and nothing else."""
    assert set(LANGUAGE_NAMES) == set(LOCALES) == set(create_i18n().available_locales)
