"""The console end to end on the embedded defaults (SQLite): sign-in, keys, the playground, usage and its
CSV against ``/v1/usage``, tenant isolation, CSRF, and a screenshot of every page."""

from __future__ import annotations

import csv
import io
import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from openai import OpenAI
from playwright.sync_api import expect

from tests.api.ledger import bill_in_the_past
from tests.console.conftest import screenshot, sign_in
from tests.finetune.conftest import train_adapter
from tests.server import ADMIN_KEY

if TYPE_CHECKING:
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


def test_finance_closes_a_period_and_downloads_its_statements(admin: Page, gateway: ServerProcess,
                                                              shots: Path) -> None:
    with gateway.admin() as api:
        api.post("/v1/prices", json={"model": "console-period-model", "input_per_million": "2.50",
                                     "output_per_million": "10", "effective_from": "2025-01-01"}).raise_for_status()
    bill_in_the_past(gateway, ["console-a"], datetime(2025, 6, 3, 8, tzinfo=UTC), "console-period-model")
    admin.goto("/console/admin")
    admin.get_by_label("Period (a month that has ended)").fill("2025-06")
    admin.get_by_role("button", name="Close period").click()
    expect(admin.locator(".notice")).to_contain_text("Period 2025-06 closed: 1 statements.")
    # 3,000 prompt tokens at 2.50 and 1,000 completion tokens at 10 per million: 0.0175, 2 cents.
    row = admin.locator("#statements tbody tr", has_text="console-a")
    expect(row).to_contain_text("0.0175 usd")
    expect(row).to_contain_text("2 (minor units)")
    screenshot(admin, shots, "admin-statements")
    with admin.expect_download() as download:
        admin.get_by_role("link", name="CSV").first.click()
    shown = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    api_rows = _api(gateway, ADMIN_KEY, "/v1/billing/periods/2025-06/statements").json()["data"]
    assert [(r["tenant"], r["cost"], r["amount_minor"]) for r in shown] == \
        [(r["tenant"], r["cost"], str(r["amount_minor"])) for r in api_rows]
    admin.get_by_label("Period (a month that has ended)").fill("2025-06")
    admin.get_by_role("button", name="Close period").click()  # once only: the API's refusal is shown
    expect(admin.locator(".error")).to_contain_text("period 2025-06 is already closed")


def test_an_adapter_uploads_with_progress_and_deletes(tenant: Page, gateway: ServerProcess, store_dir: Path,
                                                      tmp_path: Path, tenant_key: str) -> None:
    adapter = train_adapter(store_dir, tmp_path / "console-bot", steps=1)
    tenant.goto("/console/models")
    tenant.get_by_label("Name").fill("console-bot")
    tenant.get_by_label("Adapter files").set_input_files(sorted(str(p) for p in adapter.iterdir() if p.is_file()))
    tenant.get_by_role("button", name="Upload").click()
    model_id = "ft:smollm2-135m-instruct:console-a:console-bot"
    expect(tenant.locator("#up-status")).to_have_text(f"Uploaded {model_id}", timeout=60_000)
    assert float(tenant.locator("#up-progress").evaluate("p => p.value")) == 100
    tenant.wait_for_load_state()  # the page reloads with the new fine-tune listed
    expect(tenant.locator("tr", has_text=model_id)).to_have_count(2)  # in the catalog and among the fine-tunes
    row = tenant.locator("tr", has_text=model_id, has=tenant.get_by_role("button", name="Delete"))
    assert model_id in {m["id"] for m in _api(gateway, tenant_key, "/v1/fine_tuned_models").json()["data"]}
    tenant.once("dialog", lambda dialog: dialog.accept())  # "Delete ...?"
    row.get_by_role("button", name="Delete").click()
    expect(tenant.locator(".notice")).to_contain_text("Fine-tune deleted.")
    expect(tenant.locator("tr", has_text=model_id)).to_have_count(0)
    assert model_id not in {m["id"] for m in _api(gateway, tenant_key, "/v1/fine_tuned_models").json()["data"]}


def _batch(gateway: ServerProcess, key: str, lines: int, model: str, max_tokens: int) -> str:
    ai = OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)
    body = "\n".join(json.dumps({"custom_id": f"line-{i}", "method": "POST", "url": "/v1/chat/completions",
                                 "body": {"model": model, "max_tokens": max_tokens,
                                          "messages": [{"role": "user", "content": f"Count to {i}."}]}})
                     for i in range(lines))
    uploaded = ai.files.create(file=("lines.jsonl", body.encode()), purpose="batch")
    return ai.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                             completion_window="24h").id


def test_batches_show_progress_cancel_and_download_results(tenant: Page, gateway: ServerProcess,
                                                           tenant_key: str) -> None:
    done = _batch(gateway, tenant_key, 3, "meterway-echo", 4)
    ai = OpenAI(base_url=f"{gateway.url}/v1", api_key=tenant_key, max_retries=0)
    for _ in range(600):
        if ai.batches.retrieve(done).status == "completed":
            break
        time.sleep(0.1)
    tenant.goto("/console/batches")
    row = tenant.locator("tr", has_text=done)
    expect(row).to_contain_text("completed")
    expect(row).to_contain_text("3/3")
    with tenant.expect_download() as download:
        row.get_by_role("link", name="Results").click()
    results = [json.loads(line) for line in Path(download.value.path()).read_text().splitlines()]
    output = ai.files.content(str(ai.batches.retrieve(done).output_file_id)).text
    assert sorted(r["custom_id"] for r in results) == ["line-0", "line-1", "line-2"]
    assert results == [json.loads(line) for line in output.splitlines()]

    # Long enough on the real model that the cancel lands while it runs.
    running = _batch(gateway, tenant_key, 64, "smollm2-135m-instruct", 32)
    tenant.goto("/console/batches")
    tenant.locator("tr", has_text=running).get_by_role("button", name="Cancel").click()
    expect(tenant.locator(".notice")).to_contain_text("Cancelling.")
    assert ai.batches.retrieve(running).status in ("cancelling", "cancelled")
    for _ in range(600):
        if ai.batches.retrieve(running).status == "cancelled":
            break
        time.sleep(0.1)
    tenant.goto("/console/batches")
    expect(tenant.locator("tr", has_text=running)).to_contain_text("cancelled")
    expect(tenant.locator("tr", has_text=running).get_by_role("button", name="Cancel")).to_have_count(0)


def test_an_endpoint_shows_its_keys_and_each_deployments_charts(admin: Page, gateway: ServerProcess) -> None:
    with gateway.admin() as api:
        api.put("/v1/endpoints/keyed", json={"tenant": "console-a"}).raise_for_status()
        api.put("/v1/endpoints/keyed/deployments/blue", json={"model": "meterway-echo"}).raise_for_status()
        api.put("/v1/endpoints/keyed", json={"tenant": "console-a", "traffic": {"blue": 100}}).raise_for_status()
        endpoint = api.get("/v1/endpoints/keyed").json()
        keys = api.post("/v1/endpoints/keyed/keys").json()

    def call(key: str) -> int:
        response = httpx.post(f"{endpoint['scoring_uri']}/chat/completions", timeout=60,
                              headers={"Authorization": f"Bearer {key}"},
                              json={"model": "meterway-echo", "max_tokens": 2,
                                    "messages": [{"role": "user", "content": "hello"}]})
        return response.status_code

    assert call(keys["primary_key"]) == 200
    section = admin.locator("section", has=admin.locator("#ep-keyed"))
    for _ in range(100):  # the ledger consumer writes the request's entry within a moment
        admin.goto("/console/endpoints")
        if section.locator("div.charts[data-deployment=blue] svg.chart").count() == 2:
            break
        time.sleep(0.2)
    charts = section.locator("div.charts[data-deployment=blue] svg.chart")
    expect(charts.first).to_have_attribute("aria-label", "Requests per day: keyed/blue")
    expect(charts.nth(1)).to_have_attribute("aria-label", "Mean latency per day: keyed/blue")
    assert charts.first.locator("rect.bar").count() == 1  # one day, one request
    lines = _api(gateway, ADMIN_KEY, "/v1/usage", group_by="endpoint,deployment").json()["data"]
    [blue] = [line for line in lines if (line["endpoint"], line["deployment"]) == ("keyed", "blue")]
    assert blue["requests"] == 1 and blue["mean_latency_ms"] is not None  # what the latency chart draws
    section.get_by_role("button", name="Show keys").click()
    expect(admin.locator("#pk-keyed")).to_have_text(keys["primary_key"])
    expect(admin.locator("#sk-keyed")).to_have_text(keys["secondary_key"])
    admin.locator("section", has=admin.locator("#ep-keyed")).get_by_role("button", name="Regenerate primary").click()
    expect(admin.locator(".notice")).to_contain_text("The primary key of keyed was regenerated.")
    fresh = admin.locator("#pk-keyed").inner_text()
    assert fresh != keys["primary_key"] and admin.locator("#sk-keyed").inner_text() == keys["secondary_key"]
    assert call(keys["primary_key"]) == 401  # the old primary is gone at once; the secondary keeps working
    assert call(keys["secondary_key"]) == 200 and call(fresh) == 200
