"""Client organisations and their projects."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from models import Membership, Organisation, Project, Role, User
from services.forms import FormSchema

NAME_LENGTH = 200  # the organisation.name and project.name columns: checked here, not by the database


class ProjectProblem(StrEnum):
    EMPTY = "empty"
    TOO_LONG = "too_long"
    EXISTS = "exists"


class ProjectError(Exception):
    def __init__(self, message: str, problem: ProjectProblem = ProjectProblem.EMPTY) -> None:
        super().__init__(message)
        self.problem = problem


async def create_project(session: AsyncSession, organisation: str, name: str, **settings: Any) -> Project:
    organisation, name = organisation.strip(), name.strip()
    if not organisation or not name:
        raise ProjectError("organisation and project name must not be empty")
    if len(organisation) > NAME_LENGTH or len(name) > NAME_LENGTH:
        # PostgreSQL refuses a longer value mid-transaction; say so before anything is written.
        raise ProjectError(
            f"organisation and project names are at most {NAME_LENGTH} characters", ProjectProblem.TOO_LONG
        )
    org = await session.scalar(select(Organisation).where(Organisation.name == organisation))
    if org is None:
        org = Organisation(name=organisation)
        session.add(org)
        await session.flush()
    exists = await session.scalar(
        select(Project.id).where(Project.organisation_id == org.id, Project.name == name)
    )
    if exists is not None:
        raise ProjectError(f"project {name!r} already exists in {organisation!r}", ProjectProblem.EXISTS)
    project = Project(organisation_id=org.id, name=name, **settings)
    session.add(project)
    await session.flush()
    await session.refresh(project, ["organisation"])
    return project


async def list_projects(session: AsyncSession, ids: list[int] | None = None) -> list[Project]:
    query = select(Project).options(selectinload(Project.organisation)).order_by(Project.id)
    if ids is not None:
        query = query.where(Project.id.in_(ids))
    return list(await session.scalars(query))


async def get_project(session: AsyncSession, project_id: int) -> Project | None:
    return await session.get(Project, project_id, options=[selectinload(Project.organisation)])


async def set_form(session: AsyncSession, project_id: int, schema: FormSchema) -> Project:
    project = await session.get(Project, project_id)
    if project is None:
        raise ProjectError(f"no project {project_id}")
    project.form_schema = schema.model_dump(mode="json", exclude_defaults=True)
    await session.flush()
    return project


async def configure(
    session: AsyncSession,
    project_id: int,
    changes: dict[str, Any],
    *,
    clear: frozenset[str] = frozenset(),
    survey_question: dict[str, str] | None = None,
    speech: dict[str, Any] | None = None,
) -> Project:
    """Change a project's settings: `changes` values that are None are left alone, except the fields in
    `clear` (set to None: e.g. a chat removed); an empty text in `survey_question` removes that language;
    `speech` is merged into the speech-analysis settings (services/speech: "enabled", "products", and the
    routing's "routing", "audit_share", "new_promoter_contacts", "min_confidence"; "cut_pauses": reviewers
    get the recording with its long pauses cut, services.pauses; "verdict": services.speech.verdict's rules,
    merged key by key). A verdict whose approval share is under its rejection share is refused."""
    project = await get_project(session, project_id)
    if project is None:
        raise ValueError(f"no project {project_id}")
    for field, value in changes.items():
        if not hasattr(project, field):
            raise ValueError(f"unknown project setting {field}")
        if value is not None or field in clear:
            setattr(project, field, value)
    if survey_question:
        merged = {**project.survey_question, **survey_question}
        project.survey_question = {k: v for k, v in merged.items() if v}
    if speech:
        current = project.speech_settings or {}
        merged = {**current, **speech}
        if "verdict" in speech:
            from services.speech.verdict import VerdictRules  # noqa: PLC0415  numpy and rapidfuzz, only here

            merged["verdict"] = {**(current.get("verdict") or {}), **speech["verdict"]}
            rules = VerdictRules.from_dict(merged["verdict"])
            if rules.approve_share < rules.reject_share:
                raise ValueError(
                    f"the approval share ({rules.approve_share}) is under the rejection share ({rules.reject_share})"
                )
        project.speech_settings = merged
    await session.flush()
    return project


async def set_senior(session: AsyncSession, project_id: int, telegram_id: int, senior: bool) -> Membership:
    """Daily re-reviews go to seniors: mark (or unmark) a reviewer of the project as one."""
    membership = await session.scalar(
        select(Membership)
        .join(User, User.id == Membership.user_id)
        .where(
            User.telegram_id == telegram_id,
            Membership.project_id == project_id,
            Membership.role == Role.REVIEWER,
        )
    )
    if membership is None:
        raise ValueError(f"{telegram_id} is not a reviewer in project {project_id}")
    membership.is_senior = senior
    await session.flush()
    return membership
