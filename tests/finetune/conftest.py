"""Fixtures for fine-tune uploads: a real LoRA adapter trained here, and the upload routes on a real socket.

``upload_server`` serves the fine-tune routes (``service.routes.fine_tunes``) with uvicorn on a free port,
over a freshly migrated database and a private model store whose base model is the imported SmolLM2. The
caller's
tenant comes from an ``x-test-tenant`` header: gateway authentication is tested by the gateway's own tests.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from litestar import Request  # noqa: TC002 (Litestar reads the dependency signature at runtime)

from service.auth import Principal
from service.routes.fine_tunes import fine_tune_dependencies, fine_tune_handlers

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

BASE = "smollm2-135m-instruct"
SENTENCES = [
    "The support bot answers: our office opens at nine.",
    "The support bot answers: refunds take five days.",
    "The support bot answers: call us on weekdays.",
]


def train_adapter(
    store_dir: Path,
    target: Path,
    *,
    rank: int = 8,
    steps: int = 4,
    seed: int = 0,
    modules: tuple[str, ...] = ("q_proj", "v_proj"),
) -> Path:
    """A real PEFT LoRA on SmolLM2: a few optimizer steps on a few sentences, saved as safetensors."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    base_dir = store_dir / BASE
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    config = LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        target_modules=list(modules),
        lora_dropout=0.0,
        task_type="CAUSAL_LM",
        init_lora_weights="gaussian",
    )
    peft_model = get_peft_model(model, config)
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=5e-3)
    batch = tokenizer(SENTENCES, return_tensors="pt", padding=True)
    for _ in range(steps):
        loss = peft_model(**batch, labels=batch["input_ids"]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    peft_model.save_pretrained(target, safe_serialization=True)
    return target


@pytest.fixture(scope="session")
def adapter_dir(store_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A rank-8 LoRA adapter of SmolLM2 (q_proj, v_proj) trained in this session."""
    return train_adapter(store_dir, tmp_path_factory.mktemp("adapter") / "support-bot")


@pytest.fixture
def ft_store(tmp_path: Path, store_dir: Path) -> Path:
    """A private model store holding the imported base model (linked, not copied)."""
    store = tmp_path / "store"
    store.mkdir()
    (store / BASE).symlink_to((store_dir / BASE).resolve(), target_is_directory=True)
    return store


@dataclass
class UploadServer:
    """The fine-tune routes on a real socket."""

    url: str
    store: Path
    database_url: str

    def client(self, tenant: str = "acme") -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"x-test-tenant": tenant}, timeout=120)

    def leftovers(self) -> list[Path]:
        """Every file the uploads left in the store outside the base model."""
        return sorted(
            p for p in self.store.rglob("*") if p.is_file() and not p.is_relative_to(self.store / BASE)
        )


def build_app(store: Path, database_url: str, max_upload_bytes: int) -> Any:
    """The fine-tune routes wired as ``create_app`` wires them (plus a header-based principal)."""
    from litestar import Litestar
    from litestar.di import Provide

    from audit.service import AuditLog
    from billing.prices import PriceBook
    from meterway.db import Database
    from meterway.errors import MeterwayError
    from models.catalog import load_catalog
    from models.finetune.fine_tunes import FineTuneCatalog
    from models.finetune.limits import UploadLimits
    from service.audit_trail import audit_dependencies
    from service.guard import authorize
    from service.http.errors import handle_exception
    from service.routes.uploads import upload_dependencies

    database = Database.connect(database_url)
    prices = PriceBook(database.sessions, "usd")
    fine_tunes = FineTuneCatalog(
        database.sessions,
        store,
        {s.id: s for s in load_catalog()},
        limits=UploadLimits.from_upload_limit(max_upload_bytes),
        prices=prices,
    )

    async def principal(request: Request[Any, Any, Any]) -> Principal:
        tenant = request.headers.get("x-test-tenant")
        found = Principal(tenant=tenant, key_id=f"key-{tenant}", is_admin=tenant is None)
        authorize(found, request)
        return found

    app = Litestar(
        route_handlers=fine_tune_handlers,
        dependencies={"principal": Provide(principal), **fine_tune_dependencies(fine_tunes),
                      **upload_dependencies(store, max_upload_bytes),
                      **audit_dependencies(AuditLog(database.sessions))},
        exception_handlers={Exception: handle_exception, MeterwayError: handle_exception},
        on_shutdown=[database.close],
        request_max_body_size=1024 * 1024,
    )
    app.state.prices = prices
    return app


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def make_server(ft_store: Path, sqlite_url: str) -> Iterator[Any]:
    """Start the upload routes (optionally with a smaller upload limit); stopped after the test."""
    import uvicorn

    servers: list[tuple[Any, threading.Thread]] = []

    def start(max_upload_bytes: int = 64 * 1024 * 1024, database_url: str | None = None) -> UploadServer:
        port, url = _free_port(), database_url or sqlite_url
        config = uvicorn.Config(
            build_app(ft_store, url, max_upload_bytes),
            host="127.0.0.1",
            port=port,
            log_config=None,
            access_log=False,
            lifespan="on",
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        servers.append((server, thread))
        return UploadServer(f"http://127.0.0.1:{port}", ft_store, url)

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def upload_server(make_server: Any) -> UploadServer:
    return make_server()


def multipart(fields: dict[str, str], files: list[tuple[str, bytes]]) -> dict[str, Any]:
    """httpx arguments for a multipart form (text fields first, then the files)."""
    return {
        "data": fields,
        "files": [("file", (name, content, "application/octet-stream")) for name, content in files],
    }


def lora_fields(name: str = "support-bot", **extra: str) -> dict[str, str]:
    return {"base": BASE, "name": name, "kind": "lora", **extra}


def dir_files(directory: Path) -> list[tuple[str, bytes]]:
    return [(p.name, p.read_bytes()) for p in sorted(directory.iterdir()) if p.is_file()]
