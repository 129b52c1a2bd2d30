"""The layers stay apart: domain services and models know nothing of Telegram, jobs and the Telegram adapter
never reach into the routers, and routers share code only through the adapter (issue #12)."""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable
from pathlib import Path

from infra.settings import PROJECT_ROOT

# package -> top-level packages it must not import (at module level or inside a function)
# voicelab (field simulation and evaluation, issue #28) serves bench/, the CLI and the tests: the running
# service never imports it. sandbox and telegram_standin are the offline demo and the tests' Bot API: no
# production package imports them (bot's CLI starts the sandbox when there is no token, and only it;
# its lab commands use voicelab).
# infra (settings, database, stores) is below everything: it imports no layer above it (issue #28 item 6).
OFFLINE = {"voicelab", "sandbox", "telegram_standin"}
ABOVE_INFRA = {"models", "services", "handlers", "telegram_ui", "jobs", "bot", "web"}
FORBIDDEN = {
    "infra": (ABOVE_INFRA - {"models"}) | OFFLINE | {"aiogram"},  # its stores keep ORM rows
    "models": {"handlers", "telegram_ui", "jobs", "services", "bot", "web", "aiogram"} | OFFLINE,
    "services": {"handlers", "telegram_ui", "jobs", "bot", "web", "aiogram"} | OFFLINE,
    "telegram_ui": {"handlers", "jobs", "bot", "web"} | OFFLINE,
    "jobs": {"handlers", "web"} | OFFLINE,
    "handlers": {"jobs", "bot"} | OFFLINE,  # the console's router links to web/
    "web": {"handlers", "jobs", "bot"} | OFFLINE,
    "voicelab": {"handlers", "telegram_ui", "jobs", "aiogram"},
}
BOT_MAY_START_THE_SANDBOX = {"bot/cli/__init__.py"}  # `run` without a token plays the offline demo
SHARED_HANDLER_MODULES = {"handlers.filters"}  # routers may share their filters, nothing else


def findings(check: Callable[[Path], list[tuple[int, str]]], packages: Iterable[str], says: str) -> list[str]:
    """What `check` finds in the modules of `packages`, each as "path:line" and `says` with the name found:
    a layer test's failures, where it has any."""
    return [
        f"{path.relative_to(PROJECT_ROOT)}:{line} {says.format(name)}"
        for package in sorted(packages)
        for path in sorted((PROJECT_ROOT / package).rglob("*.py"))
        for line, name in check(path)
    ]


def module(tmp_path: Path, source: str) -> Path:
    """`source` as a module file of its own: for a test that a check sees what it must."""
    path = tmp_path / "sample.py"
    path.write_text(source, encoding="utf-8")
    return path


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
    job = module(tmp_path, "def later():\n    from handlers.cards import x\n    import handlers\n")
    assert {name for _line, name in imports(job)} >= {"handlers.cards", "handlers.cards.x", "handlers"}


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
    assert findings(transaction_calls, ["handlers"], "calls {}()") == []


def test_the_check_sees_a_commit_and_a_rollback(tmp_path: Path) -> None:
    handler = module(
        tmp_path,
        "async def h(session, unit):\n    await session.commit()\n    await unit.session.rollback()\n"
        "    await unit.keep_so_far()\n",
    )
    assert transaction_calls(handler) == [(2, "commit"), (3, "rollback")]


ENGINE_LOOKUPS = {"bind", "get_bind"}  # session.bind, session.get_bind(), sessionmaker.kw["bind"]


def engine_lookups(path: Path) -> list[tuple[int, str]]:
    """Engines (or connections) dug out of a session or a session factory: an attribute `bind` or
    `get_bind` on anything, or the string "bind" (`factory.kw.get("bind")`, `getattr(session, "bind")`)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Attribute) and node.attr in ENGINE_LOOKUPS:
            found.append((node.lineno, f".{node.attr}"))
        elif isinstance(node, ast.Constant) and node.value in ENGINE_LOOKUPS:
            found.append((node.lineno, repr(node.value)))
    return found


def test_no_engine_is_dug_out_of_a_session() -> None:
    """The process's `infra.db.Database` (writer, sessions, reader, dialect) is handed to whoever needs an
    engine: handlers get `db` from aiogram's workflow data, jobs and billing as an argument (issue #28 item
    6). Only infra/ (the database itself, `sql.dialect_of`) looks at a session's bind."""
    assert findings(engine_lookups, ABOVE_INFRA | OFFLINE, "uses {}") == []


def test_the_check_sees_every_way_to_an_engine(tmp_path: Path) -> None:
    job = module(
        tmp_path,
        "async def job(session, factory):\n    engine = session.bind\n    other = session.get_bind()\n"
        '    third = factory.kw.get("bind")\n    await session.execute(x, bindparams=1)\n',
    )
    assert engine_lookups(job) == [(2, ".bind"), (3, ".get_bind"), (4, "'bind'")]


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

    from infra.settings import Settings

    documented = set(
        re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", (PROJECT_ROOT / ".env.example").read_text(), re.M)
    )
    assert [name.upper() for name in Settings.model_fields if name.upper() not in documented] == []


def _python_files() -> list[Path]:
    return [
        path
        for path in sorted(PROJECT_ROOT.rglob("*.py"))
        if not any(part.startswith(".") for part in path.relative_to(PROJECT_ROOT).parts)
    ]


def _classes_based_on(base: str) -> list[str]:
    """Every class anywhere in the project that names `base` among its bases, as "path:line Name"."""
    found = []
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.ClassDef) and any(
                (isinstance(b, ast.Name) and b.id == base)
                or (isinstance(b, ast.Attribute) and b.attr == base)
                for b in node.bases
            ):
                found.append(f"{path.relative_to(PROJECT_ROOT)}:{node.lineno} {node.name}")
    return found


def test_every_callback_data_is_in_telegram_ui_callbacks() -> None:
    """Where a button's callback data lives: one module (issue #28)."""
    assert [
        c for c in _classes_based_on("CallbackData") if not c.startswith("telegram_ui/callbacks.py:")
    ] == []


def test_every_states_group_is_in_telegram_ui_states() -> None:
    assert [c for c in _classes_based_on("StatesGroup") if not c.startswith("telegram_ui/states.py:")] == []


# Released payloads: buttons already in people's chats must still parse, so a prefix or a field never changes.
RELEASED_CALLBACKS = {
    "LangCallback": ("lang", ["code"]),
    "InviteCallback": ("inv", ["project_id", "role", "uses"]),
    "ProjectPick": ("pp", ["project_id"]),
    "FormButton": ("f", ["action", "q", "v"]),
    "DisputeButton": ("dsp", ["contact_id"]),
    "CardButton": ("c", ["action", "assignment", "k"]),
    "TakeButton": ("ct", ["assignment"]),
    "UndoButton": ("cu", ["review"]),
    "SurveyButton": ("nps", ["action", "s", "v"]),
    "ClientButton": ("cs", ["action", "s", "v"]),
    "AlertButton": ("al", ["action", "id"]),
    "AlertMuteButton": ("am", ["project", "kind", "mute"]),
    "DigestButton": ("dg", ["project", "day", "action"]),
    "ReportRangeButton": ("rr", ["project"]),
    "ReportButton": ("rp", ["project", "period"]),
    "ExportButton": ("ex", ["project", "kind", "period", "fmt"]),
}
# Conversations in progress are stored as "ClassName:state": a rename would drop them across a deploy.
RELEASED_STATES = {
    "Intake:answering",
    "Intake:recording",
    "Enrolment:recording",
    "Disputing:reason",
    "ReviewComment:text",
    "SurveyFlow:follow_up",
    "ClientFlow:follow_up",
    "Resolving:note",
    "ReportRange:dates",
}


def test_callback_prefixes_are_unique_and_released_payloads_unchanged() -> None:
    from aiogram.filters.callback_data import CallbackData

    from telegram_ui import callbacks

    classes = {
        name: value
        for name, value in vars(callbacks).items()
        if isinstance(value, type) and issubclass(value, CallbackData) and value is not CallbackData
    }
    prefixes = [cls.__prefix__ for cls in classes.values()]
    assert len(prefixes) == len(set(prefixes))
    released = {name: (cls.__prefix__, list(cls.model_fields)) for name, cls in classes.items()}
    assert {name: released.get(name) for name in RELEASED_CALLBACKS} == RELEASED_CALLBACKS


def test_released_states_keep_their_names() -> None:
    from aiogram.fsm.state import StatesGroup

    from telegram_ui import states

    names = {
        state
        for value in vars(states).values()
        if isinstance(value, type) and issubclass(value, StatesGroup) and value is not StatesGroup
        for state in value.__all_states_names__
    }
    assert names >= RELEASED_STATES


# telegram_ui modules that render only: view objects in, text and markup out, no database (issue #28 item 5).
PURE_RENDERERS = [
    "telegram_ui/callbacks.py",
    "telegram_ui/client_surveys.py",
    "telegram_ui/digest_cards.py",
    "telegram_ui/promoter_menu.py",
    "telegram_ui/report_cards.py",
    "telegram_ui/states.py",
    "telegram_ui/texts.py",
    "telegram_ui/times.py",
]


def test_pure_renderers_import_no_database() -> None:
    broken = [
        f"{module}:{line} imports {name}"
        for module in PURE_RENDERERS
        for line, name in imports(PROJECT_ROOT / module)
        if name.split(".")[0] == "sqlalchemy"
    ]
    assert broken == []


def _called_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    return call.func.attr if isinstance(call.func, ast.Attribute) else None


def test_in_telegram_ui_a_session_only_queues_messages() -> None:
    """No renderer takes a session: a telegram_ui function that does writes to the outbox (calls `enqueue`,
    or a function that does), or is a helper only such functions call. Cards and "Open contact" read their
    contact through services.contact_view and render the view."""
    functions: dict[str, ast.AsyncFunctionDef | ast.FunctionDef] = {}
    for path in sorted((PROJECT_ROOT / "telegram_ui").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                functions[f"{path.relative_to(PROJECT_ROOT)}:{node.name}"] = node
    calls = {
        key: {_called_name(n) for n in ast.walk(node) if isinstance(n, ast.Call)}
        for key, node in functions.items()
    }
    queuing = {key for key, names in calls.items() if "enqueue" in names}
    while True:  # and whatever calls those
        more = {key for key, names in calls.items() if names & {q.split(":")[1] for q in queuing}} - queuing
        if not more:
            break
        queuing |= more
    with_session = {key for key, node in functions.items() if any(a.arg == "session" for a in node.args.args)}
    helpers = {
        key
        for key in with_session - queuing
        if (callers := {k for k, names in calls.items() if key.split(":")[1] in names}) and callers <= queuing
    }
    assert sorted(with_session - queuing - helpers) == []


def test_only_the_cli_reaches_the_offline_sandbox() -> None:
    broken = [
        f"{path.relative_to(PROJECT_ROOT)}:{line} imports {name}"
        for path in sorted((PROJECT_ROOT / "bot").rglob("*.py"))
        if str(path.relative_to(PROJECT_ROOT)) not in BOT_MAY_START_THE_SANDBOX
        for line, name in imports(path)
        if name.split(".")[0] in {"sandbox", "telegram_standin"}  # the CLI's lab commands use voicelab
    ]
    assert broken == []


PRODUCTION = ["bot", "handlers", "jobs", "services", "telegram_ui", "web", "models", "infra"]


def _calls_of(name: str) -> list[str]:
    """Every production call of a function named `name`, as "path:line"."""
    return [
        f"{path.relative_to(PROJECT_ROOT)}:{node.lineno}"
        for package in PRODUCTION
        for path in sorted((PROJECT_ROOT / package).rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call) and _called_name(node) == name
    ]


def test_alerts_are_raised_only_where_they_are_also_sent() -> None:
    """Services and jobs ask for an alert (services.alerts.AlertRequest); telegram_ui.alert_cards.raise_and_send
    alone stores it and queues its copies to the managers in the same transaction (issue #28 item 3), so no
    alert is stored that nobody was sent, and none is sent twice."""
    assert [site.split(":")[0] for site in _calls_of("raise_alert")] == ["telegram_ui/alert_cards.py"]
    first_sends = [
        site for site in _calls_of("enqueue_alert") if not site.startswith("telegram_ui/alert_cards.py")
    ]
    assert [site.split(":")[0] for site in first_sends] == ["jobs/customers.py"]  # the one-hour repeat only


def test_one_queue_priority_policy() -> None:
    """A contact's place in the queue changes only in services/queue_policy.py (issue #28 item 3)."""
    writes = [
        f"{path.relative_to(PROJECT_ROOT)}:{node.lineno}"
        for package in PRODUCTION
        for path in sorted((PROJECT_ROOT / package).rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Assign | ast.AugAssign)
        and any(
            isinstance(target, ast.Attribute) and target.attr == "priority"
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        )
    ]
    assert [site.split(":")[0] for site in writes] == ["services/queue_policy.py"]


def test_row_locks_are_written_once_for_both_engines() -> None:
    """Services and jobs lock rows with plain `with_for_update()`: PostgreSQL locks, SQLite (one writer at a
    time, every transaction BEGIN IMMEDIATE) gets no FOR UPDATE from SQLAlchemy; the dialect is read through
    infra.sql.dialect_of, not dug out of a session's engine."""
    from sqlalchemy import select
    from sqlalchemy.dialects import postgresql, sqlite

    from models import Contact

    query = select(Contact.id).with_for_update(skip_locked=True)
    assert "FOR UPDATE" not in str(query.compile(dialect=sqlite.dialect()))
    assert "FOR UPDATE SKIP LOCKED" in str(query.compile(dialect=postgresql.dialect()))
    dug = [
        f"{path.relative_to(PROJECT_ROOT)}"
        for package in ["bot", "handlers", "jobs", "services", "telegram_ui", "web"]
        for path in sorted((PROJECT_ROOT / package).rglob("*.py"))
        if "get_bind().dialect" in (text := path.read_text(encoding="utf-8")) or ".bind.dialect" in text
    ]
    assert dug == []


LISTENER_CALLS = {"listen", "listens_for"}


def lazy_listener_registrations(path: Path) -> list[tuple[int, str]]:
    """Functions that declare a module global and attach SQLAlchemy listeners (`event.listen`,
    `event.listens_for`): listeners set up lazily behind a module-global "registered" flag."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        inner = list(ast.walk(node))
        flags = [name for n in inner if isinstance(n, ast.Global) for name in n.names]
        listens = any(
            isinstance(n, ast.Call)
            and (
                (isinstance(n.func, ast.Attribute) and n.func.attr in LISTENER_CALLS)
                or (isinstance(n.func, ast.Name) and n.func.id in LISTENER_CALLS)
            )
            for n in inner
        )
        if flags and listens:
            found.append((node.lineno, f"{node.name} (global {', '.join(flags)})"))
    return found


def test_session_listeners_are_declared_with_their_class() -> None:
    """The stale-day listeners of billing and the dashboard roll-up are declared once, where the session
    class is defined (services/billing.TrackedSession, services/unit_of_work.FieldcheckSession), not
    attached on first use behind a module-global flag (issue #28): a newcomer reads them beside the class."""
    broken = [
        f"{path.relative_to(PROJECT_ROOT)}:{line} {name}"
        for path in _python_files()
        for line, name in lazy_listener_registrations(path)
    ]
    assert broken == []


def test_the_check_sees_a_listener_behind_a_global_flag(tmp_path: Path) -> None:
    sample = tmp_path / "billing.py"
    sample.write_text(
        "registered = False\n\n"
        "def track_changes():\n"
        "    global registered\n"
        "    if not registered:\n"
        "        event.listen(TrackedSession, 'before_flush', marks)\n"
        "        registered = True\n\n"
        "def configure(keys):\n"
        "    global keyring\n"
        "    keyring = keys\n",
        encoding="utf-8",
    )
    assert lazy_listener_registrations(sample) == [(3, "track_changes (global registered)")]


# Where a process makes its one infra.db.Database (issue #28): the bot's runtime, the CLI's commands, the
# console when it runs without one handed in; infra.db defines the engine, the unit of work the sessions.
MAKES_ENGINES = {"bot/app.py", "bot/cli/common.py", "bot/cli/__init__.py", "web/app.py", "infra/db.py"}
MAKES_SESSION_FACTORIES = {"services/unit_of_work.py"}


def test_engines_are_made_only_where_a_process_starts() -> None:
    """Everything else takes the process's Database: a CLI command through bot/cli/common.run_database, the
    console as `db` (web/app.create_console), jobs and the outbox sender as an argument."""
    broken = []
    for package in sorted(ABOVE_INFRA | OFFLINE | {"infra"}):
        for path in sorted((PROJECT_ROOT / package).rglob("*.py")):
            where = str(path.relative_to(PROJECT_ROOT))
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
                name = _called_name(node) if isinstance(node, ast.Call) else None
                if name == "create_engine" and where not in MAKES_ENGINES:
                    broken.append(f"{where}:{node.lineno} create_engine")
                elif name == "create_session_factory" and where not in MAKES_SESSION_FACTORIES:
                    broken.append(f"{where}:{node.lineno} create_session_factory")
    assert broken == []
