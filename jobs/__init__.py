"""Scheduled work (APScheduler 3). Each job opens its own DB session (from the process's Database, handed in
as an argument); `register_jobs` wires them all."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from infra.storage import create_audio_store
from jobs import customers, digest, housekeeping, manager_alerts, receipts, review, voice_alerts

if TYPE_CHECKING:
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
    session_factory = db.sessions
    scheduler.add_job(
        housekeeping.forget_old_updates,
        "cron",
        hour=3,
        minute=17,
        id="housekeeping.forget_old_updates",
        replace_existing=True,
        kwargs={"session_factory": session_factory},
    )
    scheduler.add_job(
        housekeeping.refresh_statistics,
        "cron",
        hour=3,
        minute=47,
        id="housekeeping.refresh_statistics",
        replace_existing=True,
        next_run_time=dt.datetime.now(dt.UTC),  # at start-up too: a database migrated from old has none
        kwargs={"session_factory": session_factory},
    )
    scheduler.add_job(
        housekeeping.roll_up_billing,
        "interval",
        minutes=30,
        id="housekeeping.roll_up_billing",
        replace_existing=True,
        next_run_time=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1),
        kwargs={"db": db},
    )
    scheduler.add_job(
        housekeeping.roll_up_dashboard,
        "interval",
        minutes=15,
        id="housekeeping.roll_up_dashboard",
        replace_existing=True,
        next_run_time=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=2),
        kwargs={"db": db},
    )
    scheduler.add_job(
        housekeeping.purge_personal_data,
        "interval",
        hours=1,
        id="housekeeping.purge_personal_data",
        replace_existing=True,
        kwargs={"session_factory": session_factory, "audio_store": create_audio_store(settings)},
    )
    scheduler.add_job(
        housekeeping.purge_old_charts,
        "cron",
        hour=4,
        minute=7,
        id="housekeeping.purge_old_charts",
        replace_existing=True,
        kwargs={
            "db": db,
            "chart_store": create_audio_store(settings),
            "retention": dt.timedelta(days=settings.chart_retention_days),
        },
    )
    work = {"session_factory": session_factory, "i18n": i18n}
    scheduler.add_job(
        review.dispatch, "interval", seconds=10, id="review.dispatch", replace_existing=True, kwargs=work
    )
    scheduler.add_job(
        review.expire, "interval", seconds=30, id="review.expire", replace_existing=True, kwargs=work
    )
    scheduler.add_job(
        review.rereview, "interval", minutes=1, id="review.rereview", replace_existing=True, kwargs=work
    )
    scheduler.add_job(
        receipts.update_receipts,
        "interval",
        seconds=15,
        id="receipts.update",
        replace_existing=True,
        kwargs=work,
    )
    scheduler.add_job(
        voice_alerts.alert_repeated_voices,
        "interval",
        seconds=15,
        id="voice.alerts",
        replace_existing=True,
        kwargs=work,
    )
    scheduler.add_job(
        manager_alerts.alert_operations,
        "interval",
        minutes=5,
        id="managers.operation_alerts",
        replace_existing=True,
        kwargs=work,
    )
    scheduler.add_job(
        customers.alert_overdue_detractors,
        "interval",
        minutes=1,
        id="customers.overdue_detractors",
        replace_existing=True,
        kwargs=work,
    )
    scheduler.add_job(
        customers.repeat_untaken_alerts,
        "interval",
        minutes=5,
        id="customers.repeat_alerts",
        replace_existing=True,
        kwargs=work,
    )
    scheduler.add_job(
        customers.send_client_surveys,
        "interval",
        minutes=5,
        id="customers.client_surveys",
        replace_existing=True,
        kwargs=work,
    )
    scheduler.add_job(
        customers.expire_surveys,
        "interval",
        minutes=30,
        id="customers.expire_surveys",
        replace_existing=True,
        kwargs={"session_factory": session_factory},
    )
    scheduler.add_job(
        digest.send_digests,
        "interval",
        minutes=1,
        id="digest.send",
        replace_existing=True,
        next_run_time=dt.datetime.now(dt.UTC),  # at start-up too: a missed digest goes out, marked late
        kwargs={"db": db, "i18n": i18n, "chart_store": create_audio_store(settings)},
    )
