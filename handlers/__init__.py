"""aiogram routers, one module per role or concern; handlers parse, call a service, reply."""

from aiogram import Router

from handlers import (
    admin,
    common,
    console,
    customer,
    errors,
    fallback,
    group_chats,
    manager,
    promoter,
    reviewer,
)


def create_routers() -> list[Router]:
    """Order matters: specific routers first, the catch-all fallback last."""
    return [
        module.create_router()
        for module in (
            errors,
            group_chats,
            customer,
            common,
            console,
            admin,
            manager,
            reviewer,
            promoter,
            fallback,
        )
    ]
