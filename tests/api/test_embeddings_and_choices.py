"""Embeddings through the official client, and several choices or prompts in one request."""

from __future__ import annotations

import asyncio
import base64
import math
import struct
from typing import TYPE_CHECKING

import openai
import pytest
from tokenizers import Tokenizer

from tests.api.ledger import ledger_rows

if TYPE_CHECKING:
    from tests.server import ServerProcess

pytestmark = pytest.mark.slow
EMBEDDER = "all-minilm-l6-v2"


async def test_embeddings_usage_equals_the_tokenizer_count(server: ServerProcess, client: openai.AsyncOpenAI,
                                                           store_dir) -> None:  # type: ignore[no-untyped-def]
    texts = ["The cat sits on the mat.", "A kitten is sitting on a rug.", "Quarterly revenue grew by 4%."]
    reply = await client.embeddings.create(model=EMBEDDER, input=texts)
    tokenizer = Tokenizer.from_file(str(store_dir / EMBEDDER / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    assert reply.usage.prompt_tokens == sum(len(tokenizer.encode(t).ids) for t in texts)
    vectors = [item.embedding for item in sorted(reply.data, key=lambda d: d.index)]
    assert all(len(v) == 384 and math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-4) for v in vectors)

    def cosine(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.2
    single = await client.embeddings.create(model=EMBEDDER, input="The cat sits on the mat.")
    assert single.data[0].embedding == pytest.approx(vectors[0], abs=1e-5)
    encoded = await client.embeddings.create(model=EMBEDDER, input="The cat sits on the mat.",
                                             encoding_format="base64")
    raw = base64.b64decode(str(encoded.data[0].embedding))
    assert list(struct.unpack(f"<{len(raw) // 4}f", raw)) == pytest.approx(vectors[0], abs=1e-5)

    for _ in range(50):
        rows = (await ledger_rows(server, [], timeout_s=0))["all"]
        billed = [r for r in rows if r["endpoint"] == "embeddings" and r["completion_tokens"] == 0]
        if len(billed) >= 3:
            break
        await asyncio.sleep(0.2)
    assert sorted(r["prompt_tokens"] for r in billed)[-1] == reply.usage.prompt_tokens


async def test_embedding_errors(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as too_long:
        await client.embeddings.create(model=EMBEDDER, input="word " * 600)
    assert too_long.value.code == "context_length_exceeded"
    with pytest.raises(openai.NotFoundError) as wrong_task:
        await client.embeddings.create(model="smollm2-135m-instruct", input="hello")
    assert wrong_task.value.code == "model_not_supported"


async def test_n_choices_and_several_prompts(client: openai.AsyncOpenAI) -> None:
    chat = await client.chat.completions.create(model="smollm2-135m-instruct", n=2, max_tokens=4, seed=3,
                                                temperature=1.0,
                                                messages=[{"role": "user", "content": "Say something."}])
    assert [c.index for c in chat.choices] == [0, 1]
    assert chat.usage is not None and chat.usage.completion_tokens <= 8
    legacy = await client.completions.create(model="meterway-echo", prompt=["one two", "three four five"],
                                             max_tokens=3)
    assert sorted(c.index for c in legacy.choices) == [0, 1]
    assert legacy.usage is not None and legacy.usage.prompt_tokens == 5 and legacy.usage.completion_tokens == 6
