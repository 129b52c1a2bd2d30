"""Queries of what happened in a project during a UTC period [start, end), shared by the daily digest,
/report, capacity, NPS, exports and the dashboard's roll-up so that they count the same rows."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, select

from models import Assignment, AssignmentStatus, Contact, Project, Review


def submitted_in(project_id: int, start: dt.datetime, end: dt.datetime) -> ColumnElement[bool]:
    """The project's contacts submitted in [start, end): the period a contact counts in (the index
    ix_contact_project_submitted serves it)."""
    return and_(Contact.project_id == project_id, Contact.submitted_at >= start, Contact.submitted_at < end)


def reviews_in(project: Project, start: dt.datetime, end: dt.datetime, *columns: Any) -> Select[Any]:
    """Reviews that stand (not undone), written in [start, end), of the project's contacts."""
    rows = _of_contacts(project, start, end, *columns, table=Review, stamp=Review.created_at)
    return rows.where(Review.undone_at.is_(None))


def sla_breaches_in(project: Project, start: dt.datetime, end: dt.datetime, *columns: Any) -> Select[Any]:
    """Cards of the project's contacts that expired unreviewed (an SLA breach), closed in [start, end)."""
    rows = _of_contacts(project, start, end, *columns, table=Assignment, stamp=Assignment.closed_at)
    return rows.where(Assignment.status == AssignmentStatus.EXPIRED)


def _of_contacts(
    project: Project,
    start: dt.datetime,
    end: dt.datetime,
    *columns: Any,
    table: type[Review | Assignment],
    stamp: Any,
) -> Select[Any]:
    """`columns` of the rows of `table` (each of one contact) of the project's contacts, `stamp`ed in
    [start, end)."""
    return (
        select(*columns)
        .select_from(table)
        .join(Contact, Contact.id == table.contact_id)
        .where(Contact.project_id == project.id, stamp >= start, stamp < end)
    )
