"""Period close and statements over REST, through the SDK: the admin closes a month that has ended, finance reads
its statements (a tenant only its own), and every refusal is the API's error."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from meterway import ConflictError, NotFoundError, PermissionDeniedError
from tests.api.ledger import bill_in_the_past

pytestmark = pytest.mark.usefixtures("server")
MONTH = "2025-03"  # long over, and no other test bills in it
START = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)
MODEL = "periods-test-model"  # its own price entry, so no other test's model changes price


def test_finance_closes_a_month_and_reads_its_statements(server, admin, tenant, tenant_client) -> None:
    other = f"{tenant}-other"
    admin.prices.create(model=MODEL, input_per_million="0.40", output_per_million="1.60",
                        effective_from="2025-01-01")
    bill_in_the_past(server, [tenant, other], START, MODEL)
    with pytest.raises(NotFoundError):  # not closed yet: no statements
        tenant_client.periods.statements(MONTH)
    with pytest.raises(PermissionDeniedError):  # closing is the admin's
        tenant_client.periods.close(MONTH)

    closed = {s.tenant: s for s in admin.periods.close(MONTH)}
    mine = closed[tenant]
    # 3,000 prompt and 1,000 completion tokens at 0.40 / 1.60 per million.
    assert (mine.requests, mine.prompt_tokens, mine.completion_tokens) == (2, 3000, 1000)
    assert Decimal(mine.cost) == Decimal("0.0028") and mine.amount_minor == 0  # rounded once, to cents
    assert MONTH in {p.period for p in admin.periods.list()}
    with pytest.raises(ConflictError) as again:
        admin.periods.close(MONTH)
    assert again.value.code == "period_closed"
    with pytest.raises(ConflictError) as running:
        admin.periods.close(datetime.now(UTC).strftime("%Y-%m"))
    assert running.value.code == "period_not_ended"

    [own] = tenant_client.periods.statements(MONTH)
    assert own.raw == mine.raw  # the tenant reads the same frozen statement, and only its own
    with pytest.raises(NotFoundError):
        tenant_client.periods.statements(MONTH, tenant=other)
    rows = list(csv.DictReader(io.StringIO(admin.periods.statements_csv(MONTH))))
    assert {row["tenant"]: row["cost"] for row in rows if row["tenant"] in closed} == \
        {name: s.cost for name, s in closed.items()}
