"""Scheduled work (APScheduler 3). Each job opens its own DB session (from the process's Database, handed in
as an argument); `register_jobs` wires them all."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from infra.storage import create_audio_store
from jobs import customers, digest, housekeeping, manager_alerts, receipts, review, voice_alerts

if TYPE_CHECKING:
    from collections.abc import Callable

    from aiogram import Bot
    from aiogram.utils.i18n import I18n
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    from infra.db import Database
    from infra.settings import Settings


def register_jobs(
    scheduler: AsyncIOScheduler,
    *,
    settings: Settings,
    db: Database,
    bot: Bot,
    i18n: I18n,
) -> None:
    sessions = {"session_factory": db.sessions}
    work = {**sessions, "i18n": i18n}
    purge = {**sessions, "audio_store": create_audio_store(settings)}
    charts = {
        "db": db,
        "chart_store": create_audio_store(settings),
        "retention": dt.timedelta(days=settings.chart_retention_days),
    }
    digests = {"db": db, "i18n": i18n, "chart_store": create_audio_store(settings)}
    second, minute = dt.timedelta(seconds=1), dt.timedelta(minutes=1)
    # id -> (what runs, when: a daily time (UTC) or an interval, its arguments)
    jobs: dict[str, tuple[Callable[..., Any], dt.time | dt.timedelta, dict[str, Any]]] = {
        "housekeeping.forget_old_updates": (housekeeping.forget_old_updates, dt.time(3, 17), sessions),
        "housekeeping.refresh_statistics": (housekeeping.refresh_statistics, dt.time(3, 47), sessions),
        "housekeeping.roll_up_billing": (housekeeping.roll_up_billing, 30 * minute, {"db": db}),
        "housekeeping.roll_up_dashboard": (housekeeping.roll_up_dashboard, 15 * minute, {"db": db}),
        "housekeeping.purge_personal_data": (housekeeping.purge_personal_data, 60 * minute, purge),
        "housekeeping.purge_old_charts": (housekeeping.purge_old_charts, dt.time(4, 7), charts),
        "review.dispatch": (review.dispatch, 10 * second, work),
        "review.expire": (review.expire, 30 * second, work),
        "review.rereview": (review.rereview, minute, work),
        "receipts.update": (receipts.update_receipts, 15 * second, work),
        "voice.alerts": (voice_alerts.alert_repeated_voices, 15 * second, work),
        "managers.operation_alerts": (manager_alerts.alert_operations, 5 * minute, work),
        "customers.overdue_detractors": (customers.alert_overdue_detractors, minute, work),
        "customers.repeat_alerts": (customers.repeat_untaken_alerts, 5 * minute, work),
        "customers.client_surveys": (customers.send_client_surveys, 5 * minute, work),
        "customers.expire_surveys": (customers.expire_surveys, 30 * minute, sessions),
        "digest.send": (digest.send_digests, minute, digests),
    }
    # Jobs that also run this soon after start-up, not only on their schedule.
    after_start_up = {
        "housekeeping.refresh_statistics": dt.timedelta(0),  # a database migrated from old has none
        "housekeeping.roll_up_billing": minute,
        "housekeeping.roll_up_dashboard": 2 * minute,
        "digest.send": dt.timedelta(0),  # a missed digest goes out, marked late
    }
    for job_id, (func, when, kwargs) in jobs.items():
        trigger: dict[str, Any] = (
            {"trigger": "cron", "hour": when.hour, "minute": when.minute}
            if isinstance(when, dt.time)
            else {"trigger": "interval", "seconds": int(when.total_seconds())}
        )
        if job_id in after_start_up:
            trigger["next_run_time"] = dt.datetime.now(dt.UTC) + after_start_up[job_id]
        scheduler.add_job(func, id=job_id, replace_existing=True, kwargs=kwargs, **trigger)
