"""Fine-tunes as catalog entries (SQLite and PostgreSQL): what the gateway and the pool are handed."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from meterway.db import Database
from models.finetune.catalog import resolve, tenant_models
from service.auth import Principal
from tests.finetune.conftest import BASE, dir_files, lora_fields, multipart

FT_ID = f"ft:{BASE}:acme:support-bot"


async def test_lora_fine_tune_resolves_for_its_tenant_only(
    make_server: Any, database_url: str, adapter_dir: Path
) -> None:
    import asyncio

    server = make_server(database_url=database_url)

    def upload() -> Any:
        with server.client() as client:
            return client.post(
                "/v1/fine_tuned_models",
                **multipart(lora_fields(output_price_per_million="0.123456789012"), dir_files(adapter_dir)),
            )

    assert (await asyncio.to_thread(upload)).status_code == 201
    database = Database.connect(database_url)
    try:
        async with database.sessions() as session:
            spec = await resolve(session, FT_ID, Principal("acme", "k1"))
            as_admin = await resolve(session, FT_ID, Principal(None, None, is_admin=True))
            as_other = await resolve(session, FT_ID, Principal("globex", "k2"))
            unknown = await resolve(session, f"ft:{BASE}:acme:nope", Principal("acme", "k1"))
            catalog_id = await resolve(session, BASE, Principal("acme", "k1"))
            own, others, every = (
                await tenant_models(session, "acme"),
                await tenant_models(session, "globex"),
                await tenant_models(session, None),
            )
    finally:
        await database.close()
    assert spec is not None and as_admin == spec
    assert as_other is None and unknown is None and catalog_id is None
    assert (spec.tenant, spec.base, spec.task, spec.owned_by) == ("acme", BASE, "chat", "acme")
    assert spec.output_price_per_million == Decimal("0.123456789012")
    assert spec.input_price_per_million == Decimal("0.05")  # the base's price when none is given
    assert spec.adapter_path is not None and not Path(spec.adapter_path).is_absolute()
    assert (server.store / spec.adapter_path / "adapter_config.json").exists()
    assert spec.visible_to("acme") and not spec.visible_to("globex")
    assert own == [spec] and others == [] and every == [spec]
