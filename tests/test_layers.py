"""The layers stay apart: domain services and models know nothing of Telegram, jobs and the Telegram adapter
never reach into the routers, and routers share code only through the adapter (issue #12)."""

from __future__ import annotations

import ast
from pathlib import Path

from bot.config import PROJECT_ROOT

# package -> top-level packages it must not import (at module level or inside a function)
# voicelab (field simulation and evaluation, issue #28) serves bench/, the CLI and the tests: the running
# service never imports it.
FORBIDDEN = {
    "models": {"handlers", "telegram_ui", "jobs", "services", "bot", "aiogram", "voicelab"},
    "services": {"handlers", "telegram_ui", "jobs", "bot", "aiogram", "voicelab"},
    "telegram_ui": {"handlers", "jobs", "bot", "voicelab"},
    "jobs": {"handlers", "voicelab"},
    "handlers": {"voicelab"},
    "voicelab": {"handlers", "telegram_ui", "jobs", "aiogram"},
}
SHARED_HANDLER_MODULES = {"handlers.filters"}  # routers may share their filters, nothing else


def imports(path: Path) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def test_no_layer_imports_what_it_must_not() -> None:
    broken = []
    for package, forbidden in FORBIDDEN.items():
        for path in sorted((PROJECT_ROOT / package).rglob("*.py")):
            for line, name in imports(path):
                if name.split(".")[0] in forbidden:
                    broken.append(f"{path.relative_to(PROJECT_ROOT)}:{line} imports {name}")
    assert broken == []


def test_routers_do_not_import_each_other() -> None:
    """A router split into a package (handlers/promoter/) may import its own modules, no other router's."""
    broken = []
    for path in sorted((PROJECT_ROOT / "handlers").rglob("*.py")):
        if path.parent.name == "handlers" and path.name == "__init__.py":  # it assembles the routers
            continue
        own = ".".join(path.relative_to(PROJECT_ROOT).with_suffix("").parts[:2])
        for line, name in imports(path):
            module = ".".join(name.split(".")[:2])
            if name.split(".")[0] == "handlers" and module not in SHARED_HANDLER_MODULES | {own}:
                broken.append(f"{path.relative_to(PROJECT_ROOT)}:{line} imports {name}")
    assert broken == []
    assert broken == []


def test_the_check_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    sample = tmp_path / "job.py"
    sample.write_text(
        "def later():\n    from handlers.cards import x\n    import handlers\n", encoding="utf-8"
    )
    assert {name for _line, name in imports(sample)} >= {"handlers.cards", "handlers.cards.x", "handlers"}


def transaction_calls(path: Path) -> list[tuple[int, str]]:
    """Calls of a method named commit or rollback, on anything (`session.commit()`, `x.y.rollback()`)."""
    return [
        (node.lineno, node.func.attr)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in {"commit", "rollback"}
    ]


def test_handlers_never_commit_or_roll_back() -> None:
    """Where an update's work commits is the unit's business (services/unit_of_work.py, issue #28): a
    handler keeps what must stand with `unit.keep_so_far()` and does slow I/O in
    `unit.outside_transaction()`."""
    broken = [
        f"{path.relative_to(PROJECT_ROOT)}:{line} calls {name}()"
        for path in sorted((PROJECT_ROOT / "handlers").rglob("*.py"))
        for line, name in transaction_calls(path)
    ]
    assert broken == []


def test_the_check_sees_a_commit_and_a_rollback(tmp_path: Path) -> None:
    sample = tmp_path / "handler.py"
    sample.write_text(
        "async def h(session, unit):\n    await session.commit()\n    await unit.session.rollback()\n"
        "    await unit.keep_so_far()\n",
        encoding="utf-8",
    )
    assert transaction_calls(sample) == [(2, "commit"), (3, "rollback")]


def test_test_modules_share_code_only_through_conftest_and_helpers() -> None:
    broken = [
        f"{path.name}:{line} imports {name}"
        for path in sorted((PROJECT_ROOT / "tests").rglob("test_*.py"))
        for line, name in imports(path)
        if name.startswith("tests.test_")
    ]
    assert broken == []


def test_every_setting_is_documented_in_env_example() -> None:
    import re

    from bot.config import Settings

    documented = set(
        re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", (PROJECT_ROOT / ".env.example").read_text(), re.M)
    )
    assert [name.upper() for name in Settings.model_fields if name.upper() not in documented] == []
