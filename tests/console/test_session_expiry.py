"""The console on PostgreSQL with a short session expiry: a sealed cookie stops working when it is older
than ``METERWAY_CONSOLE_SESSION_TTL_S``, and a forged one never works."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import expect

from tests.console.conftest import screenshot, sign_in

if TYPE_CHECKING:
    from pathlib import Path

    from playwright.sync_api import Browser

    from tests.conftest import ServerFactory
    from tests.server import ServerProcess

pytestmark = pytest.mark.slow
TTL_S = 3
# The gateway (and its PostgreSQL database) comes before the browser in each test's arguments: Playwright's
# sync API runs an event loop, and the database fixture's asyncio.run must not run inside it.


@pytest.fixture(scope="module")
def gateway(start_server: ServerFactory, module_pg_url: str) -> ServerProcess:
    return start_server(env={"METERWAY_DATABASE_URL": module_pg_url, "METERWAY_CONSOLE_SESSION_TTL_S": str(TTL_S)})


def test_the_session_expires(gateway: ServerProcess, browser: Browser, shots: Path) -> None:
    key = str(gateway.create_key("expiring", name="eve")["secret"])
    page = sign_in(browser, gateway.url, key)
    expect(page.locator("header .who")).to_have_text("expiring")
    page.goto("/console/usage")
    expect(page.locator("[data-total=requests]")).to_have_text("0")
    screenshot(page, shots, "postgres-usage")
    time.sleep(TTL_S + 1.5)
    page.goto("/console/usage")
    assert re.search(r"/console/login$", page.url)
    expect(page.get_by_label("API key")).to_be_visible()
    page.context.close()


def test_a_forged_cookie_is_refused(gateway: ServerProcess, browser: Browser) -> None:
    context = browser.new_context(base_url=gateway.url)
    context.add_cookies([{"name": "mw_console", "value": "gAAAAAforged", "url": gateway.url + "/console"}])
    page = context.new_page()
    page.goto("/console/keys")
    assert page.url.endswith("/console/login")
    context.close()
