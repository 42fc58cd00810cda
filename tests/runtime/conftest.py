"""Real models for the runtime tests, each loaded once per session from the imported store."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from models.runtime.api import GenerationRequest, SamplingParams, TokenDelta

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

SMOLLM = "smollm2-135m-instruct"
MINILM = "all-minilm-l6-v2"


@pytest.fixture(scope="session")
def smollm_dir(store_dir: Path) -> Path:
    return store_dir / SMOLLM


@pytest.fixture(scope="session")
def tokenizer(smollm_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm_dir)


@pytest.fixture(scope="session")
def generator(smollm_dir: Path) -> Iterator[Any]:
    """SmolLM2 in the continuous-batching generator, shared by every generation test. Its weights are packed
    whatever this CPU prefers (the served default, ``auto``, may keep them dense), so that the packed layers
    are what these tests check; ``test_packed`` compares the two."""
    from models.runtime import load
    from models.runtime.api import LoadSpec

    loaded = warmed(load(LoadSpec(SMOLLM, str(smollm_dir), "chat", max_batch=16,
                                  extra={"packed_weights": "true"})))
    yield loaded
    loaded.close()


@pytest.fixture(scope="session")
def reference_model(smollm_dir: Path) -> Any:
    """A separate plain transformers copy of SmolLM2, to compute expected outputs the usual way."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(smollm_dir, dtype=torch.float32).eval()


def warmed(generator: Any, timeout_s: float = 120.0) -> Any:
    """The generator once it has packed its weights: packing starts after a first request's first token and
    runs between steps (the model serves meanwhile, some layers still dense)."""
    run(generator, request("warm-up", (1, 2, 3), max_tokens=1))
    deadline = time.monotonic() + timeout_s
    while generator.stats()["warming_up"]:
        if time.monotonic() > deadline:
            raise TimeoutError("the weights were not packed in time")
        time.sleep(0.01)
    return generator


def chat(tokenizer: Any, text: str) -> tuple[int, ...]:
    """Prompt ids for one user message, rendered with the model's chat template."""
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                             tokenize=False)
    return tuple(tokenizer(rendered, add_special_tokens=False)["input_ids"])


class Stream:
    """Collects one sequence's deltas; ``wait`` blocks until the final one."""

    def __init__(self) -> None:
        self.deltas: list[TokenDelta] = []
        self.done = threading.Event()

    def __call__(self, delta: TokenDelta) -> None:
        self.deltas.append(delta)
        if delta.finish_reason:
            self.done.set()

    def wait(self, timeout: float = 120) -> TokenDelta:
        assert self.done.wait(timeout), "the sequence never finished"
        return self.deltas[-1]

    @property
    def text(self) -> str:
        return "".join(d.text for d in self.deltas)


def request(rid: str, ids: tuple[int, ...], max_tokens: int = 16, *, temperature: float = 0.0,
            seed: int | None = None, stop: tuple[str, ...] = (), adapter: str | None = None,
            top_p: float = 1.0) -> GenerationRequest:
    params = SamplingParams(max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed, stop=stop)
    return GenerationRequest(rid, ids, params, adapter=adapter)


def run(generator: Any, req: GenerationRequest) -> Stream:
    """Submit one request and wait for its final delta."""
    stream = Stream()
    generator.submit(req, stream)
    stream.wait()
    return stream
