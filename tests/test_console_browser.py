"""The console in a real browser (issue #26): Debian's chromium, driven by Playwright, opens the console as
Telegram opens a Mini App (initData in the URL fragment, signed here with the test bot's token), filters the
contacts (by verdict, and those decided automatically), opens one and loads its recording, sees the
dashboard's charts and a forged initData refused; a client contact lands on their billing and NPS page. Screenshots go to the
test's artefacts folder. Skipped only where /usr/bin/chromium is missing (scripts/setup installs it)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from infra.db import Database
from infra.settings import Settings
from infra.storage import LocalAudioStore
from models import Contact, ContactStatus, Membership, Role, User, Verdict
from models.base import utcnow
from tests.conftest import TOKEN
from tests.helpers import free_port, seed_project, seed_promoter, sign_init_data, stored_contact, wav_bytes
from web.app import create_console_app

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
MANAGER_TG, CLIENT_TG = 4001, 4003


@pytest.fixture
async def console_url(
    settings: Settings, db: Database, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> AsyncIterator[tuple[str, list[int]]]:
    project = await seed_project(sessions, "Tasting")
    async with sessions() as session, session.begin():
        manager = User(telegram_id=MANAGER_TG, first_name="Mila", locale="en")
        session.add(manager)
        await session.flush()
        session.add(Membership(user_id=manager.id, project_id=project.id, role=Role.MANAGER))
        klara = User(telegram_id=CLIENT_TG, first_name="Klara", locale="en")
        session.add(klara)
        await session.flush()
        session.add(Membership(user_id=klara.id, project_id=project.id, role=Role.CLIENT))
    promoter = await seed_promoter(sessions, project, 4002, "Pavel")
    store = LocalAudioStore(tmp_path / "audio")
    t = np.linspace(0, 3, 48_000, endpoint=False)
    ids = []
    for n, verdict in enumerate((Verdict.APPROVE, Verdict.FRAUD, None)):
        cid = await stored_contact(
            sessions, store, project, promoter, wav_bytes(0.3 * np.sin(2 * np.pi * (220 + 40 * n) * t))
        )
        async with sessions() as session, session.begin():
            contact = await session.get(Contact, cid)
            assert contact is not None
            contact.final_verdict = verdict
            contact.form_answers = {"store": f"Store {n}"}
            if verdict is not None:
                contact.status = ContactStatus.REVIEWED
            if verdict == Verdict.APPROVE:
                contact.routed_to = "automatic"  # speech routing decided it
        ids.append(cid)
    runner = web.AppRunner(create_console_app(settings, db=db, store=store))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/console/", ids
    finally:
        await runner.cleanup()


def mini_app_address(base: str, init_data: str) -> str:
    """As Telegram opens a Mini App: the signed initData in the fragment, beside the client's version."""
    return f"{base}#tgWebAppData={quote(init_data, safe='')}&tgWebAppVersion=8.0&tgWebAppPlatform=tdesktop"


async def test_a_manager_filters_opens_and_hears_a_contact_in_chromium(
    console_url: tuple[str, list[int]], tmp_path: Path
) -> None:
    from playwright.async_api import async_playwright

    base, (approved, fraud, _pending) = console_url
    artefacts = tmp_path / "artefacts"
    artefacts.mkdir()
    now = int(utcnow().timestamp())
    genuine = sign_init_data(TOKEN, {"id": MANAGER_TG, "first_name": "Mila", "language_code": "en"}, now)
    forged = sign_init_data("654321:not-our-bot", {"id": MANAGER_TG, "first_name": "Mila"}, now)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"],
        )
        try:
            refused = await browser.new_page()
            await refused.goto(mini_app_address(base, forged))
            error = refused.locator("#signin-error")
            await error.wait_for(state="visible")
            assert await error.get_attribute("data-reason") == "init_data_forged"
            await refused.screenshot(path=str(artefacts / "forged-refused.png"))

            page = await browser.new_page()
            await page.goto(mini_app_address(base, genuine))
            await page.wait_for_url("**/console/contacts")
            rows = page.locator("#contacts tbody tr[data-contact]")
            assert await rows.count() == 3
            await page.screenshot(path=str(artefacts / "contacts.png"), full_page=True)

            await page.select_option("select[name=verdict]", "fraud")
            await page.click("#apply")
            await page.wait_for_url("**verdict=fraud**")
            assert [await r.get_attribute("data-contact") for r in await rows.all()] == [str(fraud)]
            await page.screenshot(path=str(artefacts / "contacts-fraud.png"), full_page=True)

            await page.select_option("select[name=verdict]", "")
            await page.select_option("select[name=routed]", "automatic")
            await page.click("#apply")
            await page.wait_for_url("**routed=automatic**")
            assert [await r.get_attribute("data-contact") for r in await rows.all()] == [str(approved)]
            await page.go_back()

            await page.click(f"a[href='/console/contacts/{fraud}']")
            await page.wait_for_url(f"**/console/contacts/{fraud}")
            duration = await page.eval_on_selector(
                "#player",
                """player => new Promise(resolve => {
                    if (player.readyState >= 1) { resolve(player.duration); return; }
                    player.addEventListener("loadedmetadata", () => resolve(player.duration));
                    player.addEventListener("error", () => resolve(-1));
                    player.load();
                })""",
            )
            assert duration == pytest.approx(3.0, abs=0.1)  # the stored 3-second recording, through the API
            played = await page.eval_on_selector("#player", "player => player.play().then(() => true)")
            assert played is True
            await page.screenshot(path=str(artefacts / "contact.png"), full_page=True)

            await _dashboard_and_client_page(browser, page, base, now, artefacts)
        finally:
            await browser.close()
    assert {p.name for p in artefacts.iterdir()} == {
        "forged-refused.png",
        "contacts.png",
        "contacts-fraud.png",
        "contact.png",
        "dashboard.png",
        "client.png",
    }


async def _dashboard_and_client_page(browser: Any, page: Any, base: str, now: int, artefacts: Path) -> None:
    """The manager's dashboard draws its charts; the client contact, in a browser context of her own, lands
    on her billing and NPS page and is offered nothing else."""
    await page.goto(base + "dashboard")
    await page.locator("svg.chart").first.wait_for()
    assert await page.locator("svg.chart").count() == 5  # days, weeks, projects, stores, promoters
    stores = page.locator("#by-store svg.bars")
    assert await stores.is_visible() and "Store 1" in await stores.inner_html()
    assert await page.locator("#automatic-this-week").inner_text() == "50%"
    await page.screenshot(path=str(artefacts / "dashboard.png"), full_page=True)

    klara = await (await browser.new_context()).new_page()  # her own cookies
    mine = sign_init_data(TOKEN, {"id": CLIENT_TG, "first_name": "Klara", "language_code": "en"}, now)
    await klara.goto(mini_app_address(base, mine))
    await klara.wait_for_url("**/console/client")
    assert await klara.locator("#client-total td").first.inner_text() == "1"  # the approved one
    assert await klara.locator("nav.top a").count() == 1
    await klara.screenshot(path=str(artefacts / "client.png"), full_page=True)
