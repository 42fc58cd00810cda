"""The console end to end on the embedded defaults (SQLite): sign-in, keys, the playground, usage and its
CSV against ``/v1/usage``, tenant isolation, CSRF, and a screenshot of every page."""

from __future__ import annotations

import csv
import io
import re
import time
from typing import TYPE_CHECKING

import httpx
import pytest
from playwright.sync_api import expect

from tests.console.conftest import screenshot, sign_in
from tests.server import ADMIN_KEY

if TYPE_CHECKING:
    from pathlib import Path

    from playwright.sync_api import Browser, Page

    from tests.conftest import ServerFactory
    from tests.server import ServerProcess

pytestmark = pytest.mark.slow
PAGES = ("", "/usage", "/keys", "/models", "/endpoints", "/batches", "/playground")


@pytest.fixture(scope="module")
def gateway(start_server: ServerFactory) -> ServerProcess:
    return start_server()


@pytest.fixture(scope="module")
def tenant_key(gateway: ServerProcess) -> str:
    return str(gateway.create_key("console-a", name="alice")["secret"])


@pytest.fixture(scope="module")
def other_key(gateway: ServerProcess) -> str:
    return str(gateway.create_key("console-b", name="bob")["secret"])


@pytest.fixture(scope="module")
def tenant(browser: Browser, gateway: ServerProcess, tenant_key: str) -> Page:
    return sign_in(browser, gateway.url, tenant_key)


@pytest.fixture(scope="module")
def admin(browser: Browser, gateway: ServerProcess) -> Page:
    return sign_in(browser, gateway.url, ADMIN_KEY)


def _api(gateway: ServerProcess, key: str, path: str, **params: str) -> httpx.Response:
    response = httpx.get(f"{gateway.url}{path}", params=params, headers={"Authorization": f"Bearer {key}"},
                         timeout=30)
    response.raise_for_status()
    return response


def test_sign_in_sets_a_cookie_page_scripts_cannot_read(tenant: Page, gateway: ServerProcess) -> None:
    expect(tenant.get_by_role("heading", name="Overview")).to_be_visible()
    expect(tenant.locator("header .who")).to_have_text("console-a")
    cookie = next(c for c in tenant.context.cookies() if c["name"] == "mw_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert "mw_console" not in tenant.evaluate("document.cookie")
    assert "mw-" not in cookie["value"]  # the key is sealed, not merely signed


def test_a_wrong_key_is_refused(browser: Browser, gateway: ServerProcess) -> None:
    page = browser.new_page(base_url=gateway.url)
    page.goto("/console/login")
    page.get_by_label("API key").fill("mw-not-a-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("refused")
    page.close()


def test_a_new_key_shows_its_secret_once(admin: Page, gateway: ServerProcess) -> None:
    admin.goto("/console/keys")
    admin.get_by_label("Tenant").fill("console-c")
    admin.get_by_label("Name", exact=True).fill("carol")
    admin.get_by_role("button", name="Create").click()
    secret = admin.locator("#secret").inner_text()
    assert secret.startswith("mw-")
    assert _api(gateway, secret, "/v1/models").status_code == 200  # the secret shown is the key
    admin.reload()
    expect(admin.locator("#secret")).to_have_count(0)
    assert secret not in admin.content()
    expect(admin.locator("#keys")).to_contain_text("carol")


def test_the_playground_streams_and_the_usage_page_follows(tenant: Page, gateway: ServerProcess,
                                                           tenant_key: str, shots: Path) -> None:
    tenant.goto("/console/playground")
    tenant.get_by_label("Model").select_option("meterway-echo")
    tenant.get_by_label("Max tokens").fill("16")
    tenant.get_by_label("Message").fill("hello from the console")
    tenant.get_by_role("button", name="Send").click()
    expect(tenant.locator("#chat-usage[data-done]")).to_contain_text("cost", timeout=30_000)
    assert tenant.locator("#chat-answer").inner_text().strip()
    screenshot(tenant, shots, "playground-answered")
    deadline = time.monotonic() + 30
    while True:  # the ledger consumer writes the request within its interval
        tenant.goto("/console/usage")
        if tenant.locator("[data-total=requests]").inner_text() != "0" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    expect(tenant.locator("[data-total=requests]")).to_have_text("1")
    bars = tenant.locator("svg.chart rect.bar")
    assert bars.count() >= 2  # one bar in each of the two charts
    report = _api(gateway, tenant_key, "/v1/usage", start=_start(tenant), group_by="day,model").json()
    assert tenant.locator("[data-total=cost]").inner_text().split()[0] == report["total"]["cost"]
    assert tenant.locator("[data-total=tokens]").inner_text() == str(report["total"]["total_tokens"])


def _start(page: Page) -> str:
    return str(page.get_by_label("From").input_value())


def test_the_csv_is_the_api_report_shown(tenant: Page, gateway: ServerProcess, tenant_key: str) -> None:
    tenant.goto("/console/usage?by=key&bucket=hour")
    assert tenant.locator("svg.chart rect.bar").count() >= 2
    with tenant.expect_download() as download:
        tenant.get_by_role("link", name="Download CSV").click()
    downloaded = download.value.path().read_text()
    api = _api(gateway, tenant_key, "/v1/usage", start=_start(tenant), group_by="hour,key", format="csv").text
    assert downloaded == api
    rows = list(csv.DictReader(io.StringIO(downloaded)))
    assert len(rows) == tenant.locator("#usage-table tbody tr").count()
    assert rows and all(row["key"] for row in rows)


def test_an_empty_range_says_no_usage(tenant: Page) -> None:
    tenant.goto("/console/usage?start=2001-01-01&end=2001-01-02")
    expect(tenant.get_by_text("No usage in this range").first).to_be_visible()
    expect(tenant.locator("svg.chart")).to_have_count(0)


def test_a_tenant_cannot_read_another_tenants_usage_by_editing_the_url(tenant: Page, other_key: str) -> None:
    response = tenant.goto("/console/usage?tenant=console-b")
    assert response is not None and response.status == 404
    expect(tenant.get_by_role("alert")).to_contain_text("console-b")
    tenant.goto("/console/keys")
    expect(tenant.locator("#keys")).not_to_contain_text("bob")
    expect(tenant.locator("#keys")).to_contain_text("alice")


def test_the_admin_sees_every_tenant(admin: Page) -> None:
    admin.goto("/console/keys")
    expect(admin.locator("#keys")).to_contain_text("alice")
    expect(admin.locator("#keys")).to_contain_text("bob")
    admin.goto("/console/usage?tenant=console-a")
    expect(admin.locator("[data-total=requests]")).not_to_have_text("0")


def test_a_state_change_without_the_csrf_token_is_refused(tenant: Page, gateway: ServerProcess,
                                                          tenant_key: str) -> None:
    tenant.goto("/console/keys")
    key_id = tenant.locator("#keys tbody tr[data-key]").first.get_attribute("data-key")
    plain = tenant.request.post(f"/console/keys/{key_id}/revoke", form={"x": "1"}, max_redirects=0)
    assert plain.status == 403
    forged = tenant.request.post(f"/console/keys/{key_id}/revoke", form={"csrf": "forged"}, max_redirects=0)
    assert forged.status == 403
    status = tenant.evaluate("""async (id) => (await fetch(`/console/keys/${id}/rotate`, {method: "POST"})).status""",
                             key_id)
    assert status == 403
    chat = tenant.request.post("/console/playground/chat", data={"model": "meterway-echo", "messages": []})
    assert chat.status == 403
    assert _api(gateway, tenant_key, "/v1/models").status_code == 200  # the key still works


def test_sign_out_ends_the_session(browser: Browser, gateway: ServerProcess, tenant_key: str) -> None:
    page = sign_in(browser, gateway.url, tenant_key)
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r".*/console/login$"))
    page.goto("/console/keys")
    assert page.url.endswith("/console/login")
    page.context.close()


def test_every_page_renders(tenant: Page, admin: Page, shots: Path) -> None:
    for name, page in (("tenant", tenant), ("admin", admin)):
        for path in (*PAGES, *(("/admin",) if name == "admin" else ())):
            response = page.goto(f"/console{path}")
            assert response is not None and response.status == 200, path
            expect(page.locator("main h1")).to_be_visible()
            screenshot(page, shots, f"{name}{path.replace('/', '-') or '-overview'}")
    response = tenant.goto("/console/admin")
    assert response is not None and response.status == 200  # the page renders, the API gives it nothing
    expect(tenant.locator("main")).to_contain_text("No tenants")
    tenant.set_viewport_size({"width": 390, "height": 844})
    tenant.goto("/console/usage")
    screenshot(tenant, shots, "tenant-usage-phone")


def test_the_traffic_split_always_sums_to_100(admin: Page, gateway: ServerProcess) -> None:
    with gateway.admin() as api:
        api.put("/v1/endpoints/split", json={"tenant": "console-a"}).raise_for_status()
        for name in ("blue", "green"):
            api.put(f"/v1/endpoints/split/deployments/{name}", json={"model": "meterway-echo"}).raise_for_status()
        api.put("/v1/endpoints/split", json={"tenant": "console-a", "traffic": {"blue": 100}}).raise_for_status()
    admin.goto("/console/endpoints")
    sliders = admin.locator("form[action='/console/endpoints/split/traffic'] input[type=range]")
    sliders.nth(1).fill("30")
    values = [int(sliders.nth(i).input_value()) for i in range(2)]
    assert values == [70, 30]
    admin.get_by_role("button", name="Save split").click()
    expect(admin.locator("p.notice")).to_contain_text("saved")
    with gateway.admin() as api:
        assert api.get("/v1/endpoints/split").json()["traffic"] == {"blue": 70, "green": 30}
