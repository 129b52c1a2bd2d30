"""Keep each promoter's receipt current: edited in place as the contact is queued, reviewed, disputed, final."""

from __future__ import annotations

import structlog
from aiogram.utils.i18n import I18n
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import Contact, User
from telegram_ui import notify
from telegram_ui.cards import receipt_text, rendered

log = structlog.get_logger(__name__)


async def update_receipts(
    session_factory: async_sessionmaker[AsyncSession], i18n: I18n, batch: int = 500
) -> int:
    async with session_factory() as session, session.begin():
        changed = list(
            await session.scalars(
                select(Contact)
                .where(Contact.receipt_status.is_not(None), Contact.receipt_status != Contact.status)
                .order_by(Contact.id)
                .limit(batch)
            )
        )
        for contact in changed:
            promoter = await session.get(User, contact.promoter_id)
            assert promoter is not None
            text = rendered(i18n, promoter.locale, receipt_text, contact)
            await notify.queue_receipt_update(
                session, promoter.telegram_id, contact.id, text, contact.receipt_message_id
            )
            contact.receipt_status = contact.status
    if changed:
        log.info("receipts_updated", count=len(changed))
    return len(changed)
