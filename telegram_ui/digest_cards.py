"""The daily digest as a message: short text with changes against the previous 7 days, and its chart."""

from __future__ import annotations

import datetime as dt

from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.i18n import get_i18n
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder
from aiogram.utils.text_decorations import html_decoration as hd

from models import FlagKind
from services.automatic import AuditReview, CriterionAudit
from services.capacity import MEASURED, OVERHEAD_MINUTES, REVIEW_DAYS, Capacity
from services.digest import Digest, OpenFlag, PromoterRank
from services.forms import localized
from services.speech.routing import RESTORE, RETURN
from telegram_ui.callbacks import DigestAction, DigestButton
from telegram_ui.cards import flag_name


def digest_keyboard(project_id: int, day: dt.date) -> InlineKeyboardMarkup:
    """The detail one press away, under the short digest text."""
    keyboard = InlineKeyboardBuilder()
    for action, label in (
        (DigestAction.CONTACTS, _("btn-digest-contacts")),
        (DigestAction.PROMOTERS, _("btn-digest-promoters")),
        (DigestAction.FLAGS, _("btn-digest-flags")),
        (DigestAction.PREVIOUS, _("btn-digest-previous")),
    ):
        keyboard.button(
            text=label, callback_data=DigestButton(project=project_id, day=day.toordinal(), action=action)
        )
    keyboard.adjust(2)
    return keyboard.as_markup()


def open_flags_text(day: dt.date, flags: list[OpenFlag]) -> str:
    if not flags:
        return _("digest-flags-none").format(day=day.strftime("%d.%m.%Y"))
    lines = [_("digest-flags-title").format(day=day.strftime("%d.%m.%Y"), count=len(flags))]
    for flag in flags[:30]:
        kinds = ", ".join(flag_name(FlagKind(k)) for k in flag.kinds)
        lines.append(f"• #{flag.contact_id} {hd.quote(flag.promoter)}: {kinds}")
    if len(flags) > 30:
        lines.append(_("report-more-rows").format(count=len(flags) - 30))
    return "\n".join(lines)


def _change(value: float, base: float) -> str:
    if not base:
        return ""
    return f" ({(value - base) / base:+.0%})"


def _rate(rate: float | None) -> str:
    return "—" if rate is None else f"{rate:.0%}"


def _rate_change(rate: float | None, base: float | None) -> str:
    if rate is None or base is None:
        return ""
    return f" ({(rate - base) * 100:+.0f} pp)"


def _ranks(ranks: list[PromoterRank]) -> str:
    return ", ".join(f"{hd.quote(r.name)} {r.approval_rate:.0%} ({r.reviewed})" for r in ranks)


def _flag_label(kind: str) -> str:
    """ "no_customer (likely)" as the card names it: the flag's words, then how sure it was."""
    base, _space, sure = kind.partition(" ")
    name = flag_name(FlagKind(base)) if base in set(FlagKind) else base
    return f"{name} {sure}".strip()


def capacity_lines(capacity: Capacity | None) -> list[str]:
    """Who decided the period's contacts, what waits now and the reviewer-hours it needs (digest, /report)."""
    if capacity is None:
        return []
    if capacity.minutes_source == MEASURED:
        source = _("capacity-source-reviews").format(count=capacity.reviews_measured, days=REVIEW_DAYS)
    else:
        source = _("capacity-source-estimate").format(overhead=f"{OVERHEAD_MINUTES:g}")
    return [
        _("capacity-routing").format(
            automatic=capacity.automatic, people=capacity.to_people, decided=capacity.decided_by_people
        ),
        _("capacity-queue").format(
            waiting=capacity.waiting,
            hours=f"{capacity.queue_hours:.1f}",
            minutes=f"{capacity.minutes_per_contact:.1f}",
            source=source,
        ),
    ]


def _criterion_audit(criterion: CriterionAudit, locale: str) -> str:
    name = localized(criterion.text, locale) if criterion.text else criterion.key
    return f"{hd.quote(name)} {_rate(criterion.agreement)} ({criterion.pairs})"


def audit_lines(audit: AuditReview | None) -> list[str]:
    """Reviewers' audit verdicts against the machine's (routing on only): the window's agreement, kappa,
    precision and recall; criteria under the bar; criteria handed back to people or back to the machine."""
    if audit is None:
        return []
    overall, bar = audit.overall, f"{audit.bar:.0%}"
    if not overall.pairs:
        return [_("digest-audit-none").format(days=audit.days)]
    lines = [
        _("digest-audit").format(
            days=audit.days,
            pairs=overall.pairs,
            agreement=_rate(overall.agreement),
            kappa="—" if overall.kappa is None else f"{overall.kappa:.2f}",
            precision=_rate(overall.precision),
            recall=_rate(overall.recall),
        )
    ]
    locale = get_i18n().current_locale
    changed = {change.criterion: change.change for change in audit.changes}
    by_key = {c.key: c for c in audit.criteria}

    def shown(keys: list[str]) -> str:
        return ", ".join(_criterion_audit(by_key[key], locale) for key in keys)

    returned = [k for k, change in changed.items() if change == RETURN]
    restored = [k for k, change in changed.items() if change == RESTORE]
    still = [c.key for c in audit.criteria if c.returned and c.key not in changed]
    below = [
        c.key
        for c in audit.criteria
        if not c.returned and c.key not in changed and c.agreement is not None and c.agreement < audit.bar
    ]
    if below:
        lines.append(
            _("digest-audit-below").format(bar=bar, min_pairs=audit.min_pairs, criteria=shown(below))
        )
    if returned:
        lines.append(_("digest-audit-returned").format(bar=bar, criteria=shown(returned)))
    if restored:
        lines.append(_("digest-audit-restored").format(bar=bar, criteria=shown(restored)))
    if still:
        lines.append(_("digest-audit-still").format(criteria=shown(still)))
    return lines


def digest_text(digest: Digest) -> str:
    t, b = digest.today, digest.baseline
    lines = [
        _("digest-title").format(project=hd.quote(digest.project_name), day=digest.day.strftime("%d.%m.%Y")),
    ]
    if digest.late:
        lines.append(_("digest-late"))
    lines += [
        _("digest-volume").format(
            received=f"{t.received:g}", change=_change(t.received, b.received), reviewed=f"{t.reviewed:g}"
        ),
        _("digest-verdicts").format(
            approved=f"{t.approved:g}", rejected=f"{t.rejected:g}", fraud=f"{t.fraud:g}"
        ),
        _("digest-quality").format(
            rate=_rate(t.approval_rate),
            change=_rate_change(t.approval_rate, b.approval_rate),
            score="—" if t.average_score is None else f"{t.average_score:.0f}",
        ),
        _("digest-speed").format(
            minutes="—" if t.median_minutes_to_verdict is None else f"{t.median_minutes_to_verdict:.0f}",
            sla=f"{t.sla_breaches:g}",
        ),
    ]
    lines += capacity_lines(digest.capacity)
    lines += audit_lines(digest.audit)
    if digest.reviewer_counts:
        shown = ", ".join(f"{hd.quote(name)} {n}" for name, n in digest.reviewer_counts[:8])
        lines.append(_("digest-reviewers").format(reviewers=shown))
    if digest.disputes_opened or digest.disputes_resolved:
        lines.append(
            _("digest-disputes").format(opened=digest.disputes_opened, resolved=digest.disputes_resolved)
        )
    if digest.criteria:
        locale = get_i18n().current_locale
        shown = ", ".join(
            f"{hd.quote(localized(c.text, locale))} {c.average:.0%} · {c.pass_rate:.0%}"
            for c in digest.criteria
        )
        lines.append(_("digest-criteria").format(criteria=shown))
    if t.flags:
        shown = ", ".join(f"{flag_name(FlagKind(kind))} {n}" for kind, n in sorted(t.flags.items()))
        lines.append(_("digest-flags").format(flags=shown))
    if digest.flag_precision:
        shown = ", ".join(f"{_flag_label(kind)} {ok}/{n}" for kind, n, ok in digest.flag_precision)
        lines.append(_("digest-flag-precision").format(flags=shown))
    if digest.open_clusters:
        lines.append(_("digest-open-clusters").format(count=digest.open_clusters))
    if digest.kappa:
        shown = ", ".join(
            f"{hd.quote(name)} {'—' if k is None else f'{k:.2f}'} ({pairs})"
            for name, k, pairs in digest.kappa
        )
        lines.append(_("digest-kappa").format(reviewers=shown))
    if digest.nps_responses:
        lines.append(_("digest-nps").format(nps=f"{digest.nps:+.0f}", responses=digest.nps_responses))
        lines += [f"  «{hd.quote(text[:150])}»" for _category, text in digest.verbatims]
    else:
        lines.append(_("digest-nps-none"))
    if digest.top:
        lines.append(_("digest-top").format(promoters=_ranks(digest.top)))
    if digest.bottom:
        lines.append(_("digest-bottom").format(promoters=_ranks(digest.bottom)))
    if digest.open_alerts:
        lines.append(_("digest-open-alerts").format(count=digest.open_alerts))
    return "\n".join(lines)


def chart_labels() -> dict[str, str]:
    return {
        "contacts": _("chart-contacts"),
        "approval": _("chart-approval"),
        "fraud": _("chart-fraud"),
        "title": _("chart-title"),
    }
