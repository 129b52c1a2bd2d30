"""A period report as a message: the digest's figures for the period, then per-promoter and per-store
tables (the busiest first; the exports carry every row)."""

from __future__ import annotations

from aiogram.utils.i18n import gettext as _
from aiogram.utils.text_decorations import html_decoration as hd

from models import FlagKind
from services.reports import NO_STORE, TABLE_ROWS, Period, Report, Row
from telegram_ui.cards import flag_name
from telegram_ui.digest_cards import capacity_lines


def period_name(period: Period) -> str:
    return {
        Period.TODAY: _("period-today"),
        Period.YESTERDAY: _("period-yesterday"),
        Period.WEEK: _("period-week"),
        Period.MONTH: _("period-30-days"),
        Period.THIS_MONTH: _("period-this-month"),
    }[period]


def _table(rows: list[Row]) -> list[str]:
    lines = [
        _("report-row").format(
            name=hd.quote(r.name[:40]),
            received=r.received,
            reviewed=r.reviewed,
            rate="—" if r.approval_rate is None else f"{r.approval_rate:.0%}",
        )
        for r in rows[:TABLE_ROWS]
    ]
    if len(rows) > TABLE_ROWS:
        lines.append(_("report-more-rows").format(count=len(rows) - TABLE_ROWS))
    return lines


def report_text(report: Report) -> str:
    f = report.figures
    span = report.first.strftime("%d.%m.%Y")
    if report.last != report.first:
        span += "–" + report.last.strftime("%d.%m.%Y")
    lines = [
        _("report-title").format(project=hd.quote(report.project_name), span=span),
        _("report-volume").format(received=f"{f.received:g}", reviewed=f"{f.reviewed:g}"),
        _("digest-verdicts").format(
            approved=f"{f.approved:g}", rejected=f"{f.rejected:g}", fraud=f"{f.fraud:g}"
        ),
        _("digest-quality").format(
            rate="—" if f.approval_rate is None else f"{f.approval_rate:.0%}",
            change="",
            score="—" if f.average_score is None else f"{f.average_score:.0f}",
        ),
        _("digest-speed").format(
            minutes="—" if f.median_minutes_to_verdict is None else f"{f.median_minutes_to_verdict:.0f}",
            sla=f"{f.sla_breaches:g}",
        ),
        *capacity_lines(report.capacity),
    ]
    if f.flags:
        shown = ", ".join(f"{flag_name(FlagKind(kind))} {n}" for kind, n in sorted(f.flags.items()))
        lines.append(_("digest-flags").format(flags=shown))
    if report.nps_responses:
        lines.append(_("digest-nps").format(nps=f"{report.nps:+.0f}", responses=report.nps_responses))
    else:
        lines.append(_("report-nps-none"))
    if report.promoters:
        lines += ["", _("report-promoters"), *_table(report.promoters)]
    if any(row.name != NO_STORE for row in report.stores):  # a form without a store question: no such table
        lines += ["", _("report-stores"), *_table(report.stores)]
    if not report.promoters:
        lines += ["", _("report-empty")]
    return "\n".join(lines)
