"""The console's aiohttp application: sign-in, pages, the recording, exports.

Everything lives under PREFIX, so the same application serves alone (`fieldcheck web`) or beside the
webhook. Each request that needs a person reads the session cookie, then the person's roles from the
database (services.console.viewer_for): a membership removed a minute ago already shows nothing. Every
refusal is logged as `console_refused` with its reason.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypedDict, Unpack
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import jinja2
import structlog
from aiohttp import web
from markupsafe import Markup
from sqlalchemy.ext.asyncio import AsyncSession

from infra.db import Database, create_engine
from infra.settings import Settings
from infra.storage import AudioStore, create_audio_store
from models import FlagKind, NpsCategory
from models.base import utcnow
from services import console, console_auth
from services.exports import Column, CsvSink, XlsxSink, export
from services.unit_of_work import create_database
from web import auth
from web.charts import Bar, Series, bar_chart, daily_chart
from web.i18n import pick, translator

log = structlog.get_logger(__name__)

PREFIX = "/console"
HERE = Path(__file__).resolve().parent
Clock = Callable[[], dt.datetime]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SETTINGS: web.AppKey[Settings] = web.AppKey("settings", Settings)
DATABASE: web.AppKey[Database] = web.AppKey("database", Database)
STORE: web.AppKey[AudioStore] = web.AppKey("store", object)  # type: ignore[arg-type]
TEMPLATES: web.AppKey[jinja2.Environment] = web.AppKey("templates", jinja2.Environment)
KEY: web.AppKey[bytes] = web.AppKey("session_key", bytes)
CLOCK: web.AppKey[Clock] = web.AppKey("clock", object)  # type: ignore[arg-type]

VIEWER: web.RequestKey[console.Viewer] = web.RequestKey("console_viewer", console.Viewer)
LOCALE: web.RequestKey[str] = web.RequestKey("console_locale", str)


def export_columns(locale: str) -> tuple[Column, ...]:
    """The export's columns titled in the viewer's language."""
    t = translator(locale)
    return tuple(Column(t(key), 28 if key == "promoter" else 16) for key in console.EXPORT_TITLES)


RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


def _templates() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
    )
    environment.filters["pct"] = lambda v: "—" if v is None else f"{100 * v:.0f}%"
    environment.filters["num"] = lambda v, d=1: "—" if v is None else f"{v:.{d}f}"
    return environment


class ConsoleParts(TypedDict, total=False):
    """What a caller may hand the console instead of its own (see create_console): the process's Database,
    the audio store, and the clock (the tests move it)."""

    db: Database | None
    store: AudioStore | None
    clock: Clock


def create_console_app(settings: Settings, **parts: Unpack[ConsoleParts]) -> web.Application:
    """The console alone (`fieldcheck web`, the tests): an application with the console under PREFIX."""
    app = web.Application()

    async def to_console(_request: web.Request) -> web.StreamResponse:
        raise web.HTTPPermanentRedirect(f"{PREFIX}/")

    app.router.add_get(PREFIX, to_console)
    app.add_subapp(PREFIX, create_console(settings, **parts))
    return app


def create_console(
    settings: Settings,
    *,
    db: Database | None = None,
    store: AudioStore | None = None,
    clock: Clock = utcnow,
) -> web.Application:
    """The console for one bot, to mount at PREFIX (alone, or beside the webhook: bot/app.http_app); its
    token checks initData. It reads and writes through `db`, the process's infra.db.Database (made as
    every process makes it, services.unit_of_work.create_database); without one, it makes its own and
    closes it with the application."""
    if settings.bot_token is None:
        raise ValueError("the console needs BOT_TOKEN: it checks Telegram's signature with it")
    app = web.Application(middlewares=[_security_headers])
    app[SETTINGS] = settings
    own_database = db is None
    app[DATABASE] = db or create_database(create_engine(settings.database_url))
    app[STORE] = store or create_audio_store(settings)
    app[TEMPLATES] = _templates()
    secret = settings.web_session_secret.get_secret_value() if settings.web_session_secret else None
    app[KEY] = auth.session_key(secret, settings.bot_token.get_secret_value())
    app[CLOCK] = clock
    if own_database:

        async def close(app: web.Application) -> None:
            await app[DATABASE].close()

        app.on_cleanup.append(close)
    routes = [
        web.get("/", _entry),
        web.post("/auth/telegram", _sign_in_mini_app),
        web.get("/auth/link/{token}", _link_page),
        web.post("/auth/link/{token}", _sign_in_link),
        web.post("/logout", _logout),
        web.get("/contacts", _signed_in(_contacts)),
        web.get("/api/contacts", _signed_in(_contacts_api)),
        web.get("/contacts/export.{fmt:csv|xlsx}", _signed_in(_export)),
        web.get("/contacts/{id:\\d+}", _signed_in(_contact)),
        web.get("/contacts/{id:\\d+}/audio", _signed_in(_audio)),
        web.get("/dashboard", _signed_in(_dashboard)),
        web.get("/reviewers", _signed_in(_reviewers)),
        web.get("/alerts", _signed_in(_alerts)),
        web.get("/client", _signed_in(_client, clients=True)),
        web.static("/static", HERE / "static"),
    ]
    app.add_routes(routes)
    return app


@web.middleware
async def _security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """No framing by others, no sniffing, nothing cached: every page shows personal data. (A Mini App opens
    as a top-level page in Telegram's web view, so DENY does not hinder it.)"""
    response = await handler(request)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'self'; "
        "script-src 'self'; frame-ancestors https://web.telegram.org",
    )
    return response


def _refuse(request: web.Request, status: int, reason: str, **details: Any) -> web.Response:
    log.warning(
        "console_refused", reason=reason, status=status, path=request.path, remote=request.remote, **details
    )
    if request.path.startswith(f"{PREFIX}/api/") or request.path.startswith(f"{PREFIX}/auth/telegram"):
        return web.json_response({"ok": False, "reason": reason}, status=status)
    locale = pick(request.get(LOCALE) or request.headers.get("Accept-Language"), "en")
    return _render(request, "refused.html", {"reason": reason, "status": status}, locale, status=status)


def _render(
    request: web.Request, name: str, context: dict[str, Any], locale: str, *, status: int = 200
) -> web.Response:
    viewer: console.Viewer | None = request.get(VIEWER)
    html = (
        request.app[TEMPLATES]
        .get_template(name)
        .render(
            t=translator(locale),
            locale=locale,
            prefix=PREFIX,
            viewer=viewer,
            path=request.path,
            **context,
        )
    )
    return web.Response(text=html, content_type="text/html", status=status)


def _home(viewer: console.Viewer) -> str:
    """Where a sign-in lands: a client contact's one page, everyone else's contacts."""
    return f"{PREFIX}/client" if viewer.is_client_only else f"{PREFIX}/contacts"


def _signed_in(handler: Handler, *, clients: bool = False) -> Handler:
    """The page or API call for a signed-in manager or admin (and, where `clients`, a client contact);
    anything else is refused and logged, as is what the page itself refuses (a _Refusal)."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        now = request.app[CLOCK]()
        session = auth.read_session(request.app[KEY], request.cookies.get(auth.SESSION_COOKIE), now)
        if session is None:
            reason = "no_session" if auth.SESSION_COOKIE not in request.cookies else "bad_session"
            return _refuse(request, 401, reason)
        async with request.app[DATABASE].read_session() as db:
            viewer = await console.viewer_for(db, session.telegram_id, request.app[SETTINGS].admin_ids)
        if viewer is None:
            return _refuse(request, 403, "no_console_role", telegram_id=session.telegram_id)
        if viewer.is_client_only and not clients:  # billing and NPS only: no contact, person or alert
            return _refuse(request, 403, "client_out_of_scope", telegram_id=session.telegram_id)
        request[VIEWER] = viewer
        request[LOCALE] = pick(session.locale, request.app[SETTINGS].default_locale)
        try:
            return await handler(request)
        except _Refusal as refusal:
            return refusal.response

    return guarded


def _start_session(request: web.Request, response: web.StreamResponse, telegram_id: int, locale: str) -> None:
    settings = request.app[SETTINGS]
    expires = request.app[CLOCK]() + dt.timedelta(minutes=settings.web_session_minutes)
    response.set_cookie(
        auth.SESSION_COOKIE,
        auth.issue_session(request.app[KEY], telegram_id, locale, expires),
        max_age=settings.web_session_minutes * 60,
        path=PREFIX,
        httponly=True,
        samesite="Lax",
        secure=(settings.web_public_url or "").startswith("https://"),
    )


# -- sign-in ---------------------------------------------------------------------------------------------
async def _entry(request: web.Request) -> web.StreamResponse:
    """The Mini App's start page: its script posts Telegram's initData, then opens the contacts."""
    now = request.app[CLOCK]()
    session = auth.read_session(request.app[KEY], request.cookies.get(auth.SESSION_COOKIE), now)
    if session is not None:
        async with request.app[DATABASE].read_session() as db:
            viewer = await console.viewer_for(db, session.telegram_id, request.app[SETTINGS].admin_ids)
        raise web.HTTPSeeOther(_home(viewer) if viewer else f"{PREFIX}/contacts")
    locale = pick(request.headers.get("Accept-Language"), request.app[SETTINGS].default_locale)
    return _render(request, "signin.html", {}, locale)


async def _sign_in_mini_app(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    assert settings.bot_token is not None
    form = await request.post()
    raw = str(form.get("init_data") or "")
    now = request.app[CLOCK]()
    max_age = dt.timedelta(seconds=settings.web_init_data_max_age_seconds)
    try:
        signed = auth.verify_init_data(settings.bot_token.get_secret_value(), raw, max_age, now)
    except auth.Refused as refused:
        return _refuse(request, 401, f"init_data_{refused.reason}")
    async with request.app[DATABASE].sessions() as db, db.begin():
        first = await console_auth.first_use_of_init_data(
            db, signed.init_hash, signed.auth_date + max_age + auth.CLOCK_SKEW, now=now
        )
        viewer = await console.viewer_for(db, signed.telegram_id, settings.admin_ids) if first else None
    if not first:
        return _refuse(request, 401, "init_data_replayed", telegram_id=signed.telegram_id)
    if viewer is None:
        return _refuse(request, 403, "no_console_role", telegram_id=signed.telegram_id)
    locale = pick(viewer.locale or signed.language, settings.default_locale)
    response = web.json_response({"ok": True, "next": _home(viewer)})
    _start_session(request, response, viewer.telegram_id, locale)
    log.info("console_signed_in", telegram_id=viewer.telegram_id, by="mini_app")
    return response


async def _link_page(request: web.Request) -> web.StreamResponse:
    """Shows the link's state and a button; only the button's POST spends it (a chat's link preview or
    a mail scanner fetching the URL must not sign anyone in, nor use the link up)."""
    async with request.app[DATABASE].read_session() as db:
        state = await console_auth.link_state(db, request.match_info["token"], now=request.app[CLOCK]())
    locale = pick(request.headers.get("Accept-Language"), request.app[SETTINGS].default_locale)
    if state != "valid":
        return _refuse(request, 401 if state != "unknown" else 403, f"link_{state}")
    return _render(request, "link.html", {"token": request.match_info["token"]}, locale)


async def _sign_in_link(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    now = request.app[CLOCK]()
    async with request.app[DATABASE].sessions() as db, db.begin():
        telegram_id = await console_auth.spend_link(db, request.match_info["token"], now=now)
        viewer = await console.viewer_for(db, telegram_id, settings.admin_ids) if telegram_id else None
        await console_auth.purge_links(db, now=now)
    if telegram_id is None:
        return _refuse(request, 403, "link_refused")
    if viewer is None:
        return _refuse(request, 403, "no_console_role", telegram_id=telegram_id)
    response = web.HTTPSeeOther(_home(viewer))
    _start_session(request, response, viewer.telegram_id, pick(viewer.locale, settings.default_locale))
    log.info("console_signed_in", telegram_id=viewer.telegram_id, by="link")
    raise response


async def _logout(request: web.Request) -> web.StreamResponse:
    response = web.HTTPSeeOther(f"{PREFIX}/")
    response.del_cookie(auth.SESSION_COOKIE, path=PREFIX)
    raise response


# -- pages -----------------------------------------------------------------------------------------------
def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def _date(value: str | None, default: dt.date) -> dt.date:
    try:
        return dt.date.fromisoformat(value) if value else default
    except ValueError:
        return default


async def _filter(request: web.Request, db: AsyncSession) -> tuple[console.ContactFilter, str]:
    """The page's filter and the time zone its days are in. "Today" is the zone's today: in Moscow after
    midnight, while UTC is still on yesterday, the default week must hold the night's contacts."""
    query = request.query
    zone = await console.zone_of(db, request[VIEWER], _int(query.get("project")))
    today = _today(request, zone)
    end = _date(query.get("to"), today)
    start = _date(query.get("from"), end - dt.timedelta(days=6))
    sort = query.get("sort", "new")
    chosen = console.ContactFilter(
        start=min(start, end),
        end=end,
        project_id=_int(query.get("project")),
        store=(query.get("store") or "").strip()[:200] or None,
        promoter_id=_int(query.get("promoter")),
        reviewer_id=_int(query.get("reviewer")),
        verdict=query.get("verdict") or None,
        flag=query.get("flag") or None,
        dispute=query.get("dispute") if query.get("dispute") in console.DISPUTES else None,
        nps=query.get("nps") or None,
        routed=query.get("routed") if query.get("routed") in console.ROUTES else None,
        text=(query.get("q") or "").strip()[: console.MAX_SEARCH] or None,
        sort=sort if sort in console.SORTS else "new",
        page=_int(query.get("page")) or 1,
    )
    return chosen, zone


def _today(request: web.Request, zone: str) -> dt.date:
    return request.app[CLOCK]().astimezone(ZoneInfo(zone)).date()


def _query_of(chosen: console.ContactFilter, **change: Any) -> str:
    values = {
        "from": chosen.start.isoformat(),
        "to": chosen.end.isoformat(),
        "project": chosen.project_id,
        "store": chosen.store,
        "promoter": chosen.promoter_id,
        "reviewer": chosen.reviewer_id,
        "verdict": chosen.verdict,
        "flag": chosen.flag,
        "dispute": chosen.dispute,
        "nps": chosen.nps,
        "routed": chosen.routed,
        "q": chosen.text,
        "sort": chosen.sort,
        "page": chosen.page,
    } | change
    return urlencode({k: v for k, v in values.items() if v not in (None, "")})


class _Refusal(Exception):
    """A refusal decided inside a page (a project outside the viewer's scope); `_signed_in` answers it."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def _in_scope(request: web.Request, project_id: int | None) -> int | None:
    """The project a page is asked for (None: all of the viewer's), refused (403, logged) unless it is one
    of the viewer's projects."""
    viewer: console.Viewer = request[VIEWER]
    if project_id is not None and project_id not in viewer.project_ids:
        raise _Refusal(_refuse(request, 403, "project_out_of_scope", project_id=project_id))
    return project_id


async def _contacts(request: web.Request) -> web.StreamResponse:
    viewer: console.Viewer = request[VIEWER]
    async with request.app[DATABASE].read_session() as db:
        chosen, zone = await _filter(request, db)
        _in_scope(request, chosen.project_id)
        page = await console.contact_page(db, viewer, chosen)
        choices = await console.filter_choices(db, viewer)
    context = {
        "page": page,
        "chosen": chosen,
        "choices": choices,
        "zone": zone,
        "sorts": list(console.SORTS),
        "verdicts": ["approve", "reject", "fraud", console.UNREVIEWED],
        "flags": ["any", *(k.value for k in FlagKind)],
        "disputes": list(console.DISPUTES),
        "nps_choices": [*(c.value for c in NpsCategory), console.UNANSWERED],
        "routes": list(console.ROUTES),
        "next_query": _query_of(chosen, page=page.page + 1),
        "previous_query": _query_of(chosen, page=page.page - 1),
        "export_query": _query_of(chosen, page=None),
        "local": lambda moment: console.local_time(moment, zone),
    }
    return _render(request, "contacts.html", context, request[LOCALE])


async def _contacts_api(request: web.Request) -> web.StreamResponse:
    async with request.app[DATABASE].read_session() as db:
        chosen, _zone = await _filter(request, db)
        _in_scope(request, chosen.project_id)
        page = await console.contact_page(db, request[VIEWER], chosen)
    rows = [
        {
            "id": r.id,
            "project": r.project,
            "submitted_at": r.submitted_at.isoformat(),
            "promoter": r.promoter,
            "store": r.store,
            "status": r.status,
            "verdict": r.verdict,
            "score": r.score,
            "flags": r.flags,
            "nps": r.nps,
            "routed": r.routed,
        }
        for r in page.rows
    ]
    return web.json_response({"ok": True, "page": page.page, "has_next": page.has_next, "rows": rows})


async def _export(request: web.Request) -> web.StreamResponse:
    """The filtered view as CSV or XLSX through services.exports' sinks, streamed from a reader."""
    viewer: console.Viewer = request[VIEWER]
    fmt = request.match_info["fmt"]
    async with request.app[DATABASE].read_session() as db:
        chosen, zone = await _filter(request, db)
    _in_scope(request, chosen.project_id)
    with tempfile.TemporaryDirectory(prefix="fieldcheck-console-") as folder:
        path = Path(folder) / f"contacts.{fmt}"
        columns = export_columns(request[LOCALE])
        sink = XlsxSink(path, "Contacts", columns) if fmt == "xlsx" else CsvSink(path, columns)
        async with request.app[DATABASE].reader() as connection:
            count = await export(console.export_rows(connection, viewer, chosen, zone), sink)
        log.info("console_export", telegram_id=viewer.telegram_id, rows=count, format=fmt)
        name = f"contacts-{chosen.start}-{chosen.end}.{fmt}"
        response = web.Response(
            body=await asyncio.to_thread(path.read_bytes),
            content_type="text/csv"
            if fmt == "csv"
            else "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    return response


async def _contact(request: web.Request) -> web.StreamResponse:
    viewer: console.Viewer = request[VIEWER]
    contact_id = int(request.match_info["id"])
    async with request.app[DATABASE].read_session() as db:
        detail = await console.contact_detail(db, viewer, contact_id)
        zone = await console.zone_of(db, viewer, detail.project_id if detail else None)
    if detail is None:  # another project's, or none at all: the same answer for both
        return _refuse(request, 403, "contact_out_of_scope", contact_id=contact_id)
    context = {"c": detail, "zone": zone, "local": lambda moment: console.local_time(moment, zone)}
    return _render(request, "contact.html", context, request[LOCALE])


async def _audio(request: web.Request) -> web.StreamResponse:
    """The stored recording, with byte ranges (the player seeks, and a transcript line plays from its
    start); read only after the contact's project is checked against the viewer's."""
    viewer: console.Viewer = request[VIEWER]
    contact_id = int(request.match_info["id"])
    async with request.app[DATABASE].read_session() as db:
        audio = await console.recording_of(db, viewer, contact_id)
    if audio is None:
        return _refuse(request, 403, "audio_out_of_scope", contact_id=contact_id)
    try:
        data = await asyncio.to_thread(request.app[STORE].get, audio.storage_key)
    except (FileNotFoundError, KeyError):
        raise web.HTTPNotFound() from None
    mime = audio.mime_type or "application/octet-stream"
    size = len(data)
    headers = {"Accept-Ranges": "bytes"}
    match = RANGE.match(request.headers.get("Range", ""))
    if match and (match.group(1) or match.group(2)):
        if match.group(1):
            first = int(match.group(1))
            last = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
        else:
            first, last = max(0, size - int(match.group(2))), size - 1
        if first >= size or first > last:
            raise web.HTTPRequestRangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        return web.Response(body=data[first : last + 1], status=206, content_type=mime, headers=headers)
    return web.Response(body=data, content_type=mime, headers=headers)


async def _dashboard(request: web.Request) -> web.StreamResponse:
    viewer: console.Viewer = request[VIEWER]
    project_id = _in_scope(request, _int(request.query.get("project")))
    days = min(max(_int(request.query.get("days")) or 14, 14), 92)
    t = translator(request[LOCALE])
    async with request.app[DATABASE].read_session() as db:
        zone = await console.zone_of(db, viewer, project_id)
        today = _today(request, zone)  # the days are the zone's days
        board = await console.dashboard(db, viewer, today, days=days, project_id=project_id)
        choices = await console.filter_choices(db, viewer)

    def rates(rows: list[console.Day]) -> list[Series]:
        return [
            Series(t("approval"), [d.approval_rate for d in rows], "#2a7d2e"),
            Series(t("rejection"), [d.rejection_rate for d in rows], "#b26a00"),
            Series(t("fraud"), [d.fraud_rate for d in rows], "#c62828"),
            Series(t("automatic-share"), [d.automatic_share for d in rows], "#1565c0"),
            Series(
                t("nps"),
                [None if d.nps is None else (d.nps + 100) / 200 for d in rows],
                "#6a1b9a",
                ["" if d.nps is None else f"{d.nps:.0f}" for d in rows],
            ),
        ]

    chart = daily_chart(
        [d.day.isoformat() for d in board.days],
        [d.volume for d in board.days],
        rates(board.days),
        t("chart-title"),
    )
    weekly = daily_chart(
        [d.day.isoformat() for d in board.weeks],
        [d.volume for d in board.weeks],
        rates(board.weeks),
        t("weekly-chart-title"),
    )
    colours = [
        (t("verdict-approve"), "#2a7d2e"),
        (t("verdict-reject"), "#b26a00"),
        (t("verdict-fraud"), "#c62828"),
        (t("verdict-none"), "#b0b7bf"),
    ]

    def bars(slices: list[console.Slice], title: str) -> Markup:
        drawn = [
            Bar(
                s.label,
                [s.approved, s.rejected, s.fraud, s.volume - s.reviewed],
                f"{t('nps')} {s.nps:.0f}" if s.nps is not None else "",
            )
            for s in slices
        ]
        return Markup(bar_chart(drawn, colours, title))

    context = {
        "board": board,
        "chart": Markup(chart),
        "weekly_chart": Markup(weekly),
        "breakdowns": [
            ("project", bars(board.by_project, t("by-project")), board.by_project),
            ("store", bars(board.by_store, t("by-store")), board.by_store),
            ("promoter", bars(board.by_promoter, t("by-promoter")), board.by_promoter),
        ],
        "choices": choices,
        "project_id": project_id,
        "days": days,
    }
    return _render(request, "dashboard.html", context, request[LOCALE])


async def _reviewers(request: web.Request) -> web.StreamResponse:
    viewer: console.Viewer = request[VIEWER]
    project_id = _in_scope(request, _int(request.query.get("project")))
    days = min(max(_int(request.query.get("days")) or 30, 1), 92)
    async with request.app[DATABASE].read_session() as db:
        today = _today(request, await console.zone_of(db, viewer, project_id))
        lines = await console.reviewer_lines(db, viewer, today, days=days, project_id=project_id)
        choices = await console.filter_choices(db, viewer)
    context = {"lines": lines, "choices": choices, "project_id": project_id, "days": days}
    return _render(request, "reviewers.html", context, request[LOCALE])


async def _alerts(request: web.Request) -> web.StreamResponse:
    viewer: console.Viewer = request[VIEWER]
    project_id = _in_scope(request, _int(request.query.get("project")))
    async with request.app[DATABASE].read_session() as db:
        open_alerts = await console.alert_list(db, viewer, resolved=False, project_id=project_id)
        resolved = await console.alert_list(db, viewer, resolved=True, project_id=project_id, limit=100)
        zone = await console.zone_of(db, viewer, project_id)
    context = {
        "open_alerts": open_alerts,
        "resolved": resolved,
        "project_id": project_id,
        "choices": None,
        "local": lambda moment: console.local_time(moment, zone),
        "zone": zone,
    }
    return _render(request, "alerts.html", context, request[LOCALE])


async def _client(request: web.Request) -> web.StreamResponse:
    """A client contact's page (a manager sees the same for their projects): billing and NPS by month."""
    viewer: console.Viewer = request[VIEWER]
    project_id = _int(request.query.get("project"))
    if project_id is not None and not viewer.is_admin and project_id not in console.client_scope(viewer):
        return _refuse(request, 403, "project_out_of_scope", project_id=project_id)
    months = _int(request.query.get("months"))
    months = months if months in console.CLIENT_MONTHS else 6
    t = translator(request[LOCALE])
    async with request.app[DATABASE].read_session() as db:
        view = await console.client_view(
            db, viewer, request.app[CLOCK](), months=months, project_id=project_id
        )
        choices = await console.client_choices(db, viewer)
    chart = daily_chart(
        [m.month.isoformat()[:7] for m in view.months],
        [m.validated for m in view.months],
        [
            Series(
                t("nps"),
                [None if m.nps is None else (m.nps + 100) / 200 for m in view.months],
                "#6a1b9a",
                ["" if m.nps is None else f"{m.nps:.0f}" for m in view.months],
            )
        ],
        t("client-chart-title"),
    )
    context = {
        "view": view,
        "chart": Markup(chart),
        "choices": choices,
        "project_id": project_id,
        "months": months,
        "month_choices": console.CLIENT_MONTHS,
    }
    return _render(request, "client.html", context, request[LOCALE])


def public_url(settings: Settings) -> str:
    """Where people open the console: WEB_PUBLIC_URL, else the address it listens on."""
    base = settings.web_public_url or f"http://{settings.web_host}:{settings.web_port}"
    return base.rstrip("/") + PREFIX


async def serve(settings: Settings, *, ready: Callable[[str], None] | None = None) -> None:
    """`fieldcheck web`: serve until cancelled (Ctrl-C)."""
    runner = web.AppRunner(create_console_app(settings), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.web_host, settings.web_port)
    await site.start()
    address = f"http://{settings.web_host}:{settings.web_port}{PREFIX}/"
    log.info("console_listening", address=address, public=public_url(settings))
    if ready is not None:
        ready(address)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
