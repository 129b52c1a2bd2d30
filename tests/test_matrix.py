"""Who may do what (issue #13): every command, and the buttons that name a project, pressed with
hand-made callback data, by every role, a manager of another project and a stranger. The expected matrix
is pinned here and printed in docs/architecture.md ("Who may do what"); the test fails if either drifts.

  ✓  served        ✗  refused with a reason        ·  not offered to this role ("I did not understand")
"""

from __future__ import annotations

import datetime as dt

from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.app import Runtime
from infra.settings import PROJECT_ROOT
from models import AlertKind, Project, Role
from services.reports import Period
from telegram_standin import StandIn, UserClient
from telegram_standin.driver import message_text
from telegram_ui.callbacks import (
    AlertMuteButton,
    DigestAction,
    DigestButton,
    ExportButton,
    ExportKind,
    ReportButton,
    ReportRangeButton,
)
from telegram_ui.cards import rendered
from telegram_ui.i18n import create_i18n
from tests.conftest import ADMIN_ID, TOKEN
from tests.helpers import join, join_as_promoter, seed_project, text

ROLES = ("stranger", "promoter", "reviewer", "manager", "other manager", "admin")
P, R, M, OM, A = "promoter", "reviewer", "manager", "other manager", "admin"
EVERYONE = set(ROLES)
MANAGE_A = {M, A}  # a manager of project A, and the global admin (who manages every project)
COMMANDS: dict[str, tuple[set[str], set[str]]] = {  # command: (served, refused with a reason); the rest: ·
    "start": (EVERYONE, set()),
    "help": (EVERYONE, set()),
    "lang": (EVERYONE, set()),
    "cancel": (EVERYONE, set()),
    "new": ({P}, set()),
    "my": ({P}, set()),
    "enrol": ({P}, set()),
    "on": ({R}, set()),
    "off": ({R}, set()),
    "cards": ({R}, set()),
    "report": ({M, OM, A}, {"stranger", P, R}),  # each manager sees only their own projects
    "alerts": ({M, OM, A}, {"stranger", P, R}),
    "billing": ({M, OM, A}, {"stranger", P, R}),
    "export": ({M, OM, A}, {"stranger", P, R}),
    "newproject": ({A}, set()),
    "projects": ({A}, set()),
    "invite": ({A}, set()),
}
BUTTONS = ("digest: promoters", "report: yesterday", "report: dates", "export: billing", "alerts: mute")
OUTCOME = {"served": "✓", "refused": "✗", "not offered": "·"}


def button_data(name: str, project: int) -> str:
    """Callback data as the bot would make it for project A, typed by whoever presses it."""
    today = dt.date.today()
    return {
        "digest: promoters": DigestButton(
            project=project, day=today.toordinal(), action=DigestAction.PROMOTERS
        ),
        "report: yesterday": ReportButton(project=project, period=Period.YESTERDAY),
        "report: dates": ReportRangeButton(project=project),
        "export: billing": ExportButton(project=project, kind=ExportKind.BILLING),
        "alerts: mute": AlertMuteButton(project=project, kind=AlertKind.FRAUD, mute=True),
    }[name].pack()


def expected_command(command: str, role: str) -> str:
    served, refused = COMMANDS[command]
    return "served" if role in served else "refused" if role in refused else "not offered"


def expected_button(role: str) -> str:
    return "served" if role in MANAGE_A else "refused"


def matrix_markdown() -> str:
    rows = ["| | " + " | ".join(ROLES) + " |", "| --- |" + " --- |" * len(ROLES)]
    rows += [
        f"| /{c} | " + " | ".join(OUTCOME[expected_command(c, r)] for r in ROLES) + " |" for c in COMMANDS
    ]
    rows += [
        f"| button {b} | " + " | ".join(OUTCOME[expected_button(r)] for r in ROLES) + " |" for b in BUTTONS
    ]
    return "\n".join(rows)


async def _people(
    tg: StandIn, sessions: async_sessionmaker[AsyncSession]
) -> tuple[Project, dict[str, UserClient]]:
    project_a = await seed_project(sessions, "Alpha")
    project_b = await seed_project(sessions, "Beta")
    return project_a, {
        "stranger": tg.user(4242, "Stranger", token=TOKEN, language_code="en"),
        P: await join_as_promoter(tg, sessions, project_a),
        R: await join(tg, sessions, project_a, Role.REVIEWER, 3101, "Rita"),
        M: await join(tg, sessions, project_a, Role.MANAGER, 3201, "Maria"),
        OM: await join(tg, sessions, project_b, Role.MANAGER, 3301, "Boris"),
        A: tg.user(ADMIN_ID, "Anna", token=TOKEN, language_code="en"),
    }


async def _until_cancelled(person: UserClient) -> list[str]:
    """/cancel, then every message up to its answer: the next step starts from a clean slate. (A promoter with
    no form open is told there is nothing to cancel: issue #27 item 14.)"""
    answers = {text(key) for key in ("cancelled-generic", "intake-cancelled", "intake-nothing-to-cancel")}
    await person.send_command("cancel")
    texts = []
    while True:
        said = message_text(await person.next_message())
        if said in answers:
            break
        texts.append(said)
    return texts


async def test_every_command_and_project_button_against_every_role(
    app: Runtime, tg: StandIn, sessions: async_sessionmaker[AsyncSession]
) -> None:
    project_a, people = await _people(tg, sessions)
    i18n = create_i18n()
    refusals = {rendered(i18n, "en", lambda key=key: _(key)) for key in REFUSALS}
    not_offered = rendered(i18n, "en", lambda: _("fallback-message"))
    seen: dict[tuple[str, str], str] = {}
    for role, person in people.items():
        for command in COMMANDS:
            person.skip_pending()
            await person.send_command(command)
            first = message_text(await person.next_message())
            seen[(command, role)] = (
                "not offered" if first == not_offered else "refused" if first in refusals else "served"
            )
            if role == OM and command in ("report", "alerts"):
                assert "Alpha" not in "\n".join([first, *await _until_cancelled(person)])  # only their own
            else:
                await _until_cancelled(person)
        for name in BUTTONS:
            last = person.bot_messages()[-1]
            query = await person.press(last, data=button_data(name, project_a.id))
            answer = await person.callback_answer(query)
            refused = answer.get("show_alert") and answer.get("text") in refusals
            seen[(f"button {name}", role)] = "refused" if refused else "served"
            await _until_cancelled(person)
    expected = {(c, r): expected_command(c, r) for c in COMMANDS for r in ROLES}
    expected |= {(f"button {b}", r): expected_button(r) for b in BUTTONS for r in ROLES}
    assert seen == expected


REFUSALS = (
    "report-not-manager",
    "alert-not-manager",
    "export-not-manager",
    "admin-global-only",
    "button-forbidden",
)


def test_the_matrix_in_the_docs_is_the_tested_one() -> None:
    docs = (PROJECT_ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert matrix_markdown() in docs, (
        "docs/architecture.md: paste the output of tests.test_matrix.matrix_markdown()"
    )
