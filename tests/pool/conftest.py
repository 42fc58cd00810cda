"""Pools over the real imported store: each test gets its own pool (own workers, own metrics registry)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import pytest
from prometheus_client import CollectorRegistry

from meterway.settings import PoolSettings
from models.catalog import ModelSpec, load_catalog
from models.pool.api import GenerationJob, ModelState
from models.pool.local import LocalPool
from models.runtime.api import SamplingParams, TokenDelta

if TYPE_CHECKING:
    from pathlib import Path

SMOLLM = "smollm2-135m-instruct"
SMOLLM_BF16 = "smollm2-135m-instruct-bf16"
MINILM = "all-minilm-l6-v2"
ECHO = "meterway-echo"

PoolFactory = Callable[..., Awaitable[LocalPool]]


@pytest.fixture(scope="session")
def catalog() -> list[ModelSpec]:
    return load_catalog(include_test_model=True)


@pytest.fixture(scope="session")
def specs(catalog: list[ModelSpec]) -> dict[str, ModelSpec]:
    return {spec.id: spec for spec in catalog}


@pytest.fixture(scope="session")
def prompt_ids(store_dir: Path) -> tuple[int, ...]:
    """A chat prompt tokenized the way the gateway does it (the tokenizers library), long answer expected."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(store_dir / SMOLLM / "tokenizer.json"))
    rendered = ("<|im_start|>user\nTell me a long story about a cat who sails the sea.<|im_end|>\n"
                "<|im_start|>assistant\n")
    return tuple(tokenizer.encode(rendered).ids)


@pytest.fixture
async def make_pool(store_dir: Path, catalog: list[ModelSpec]) -> AsyncIterator[PoolFactory]:
    """Build started pools (``PoolSettings`` overrides, optionally another catalog); all closed afterwards."""
    pools: list[LocalPool] = []

    async def build(models: list[ModelSpec] | None = None, **overrides: Any) -> LocalPool:
        # One torch thread per worker and no standby by default: the machine is small and shared.
        settings = PoolSettings(**{"threads": 1, "standby": False, **overrides})
        served = catalog if models is None else models
        pool = LocalPool(settings, store_dir, served, registry=CollectorRegistry())
        await pool.start()
        pools.append(pool)
        return pool

    yield build
    for pool in pools:
        await pool.close()


def job(spec: ModelSpec, prompt: tuple[int, ...], max_tokens: int = 4) -> GenerationJob:
    """A greedy generation job with a fresh request id."""
    return GenerationJob(f"req-{uuid.uuid4().hex}", spec, prompt,
                         SamplingParams(max_tokens=max_tokens, temperature=0.0))


async def collect(pool: LocalPool, generation: GenerationJob) -> list[TokenDelta]:
    """Every delta of one job, to its final one (a stream that stalls for two minutes fails the test)."""
    async with asyncio.timeout(120):
        return [delta async for delta in pool.generate(generation)]


async def wait_for_state(pool: LocalPool, model_id: str, state: ModelState, timeout: float = 60.0) -> None:
    """Poll the pool until ``model_id`` reaches ``state`` (loads and unloads happen in the background)."""
    deadline = time.monotonic() + timeout
    while pool.state(model_id) is not state:
        assert time.monotonic() < deadline, f"{model_id} stayed {pool.state(model_id)}, never {state}"
        await asyncio.sleep(0.05)
