"""Penalties, logit_bias, log probabilities, ``user`` and the refusal of every field meterway does not do."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import TYPE_CHECKING, Any

import httpx
import openai
import pytest
import torch

from tests.surface.conftest import MODEL

if TYPE_CHECKING:
    from pathlib import Path

    from tests.server import ServerProcess

pytestmark = pytest.mark.slow
POEM: Any = [{"role": "user", "content": "Write a poem about the sea."}]


@pytest.fixture(scope="module")
def reference(store_dir: Path) -> tuple[Any, Any]:
    """SmolLM2 in plain transformers, to check the served log probabilities against a direct forward pass."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = store_dir / MODEL
    return AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def _repeats(tokens: list[str]) -> int:
    return sum(count - 1 for count in Counter(tokens).values())


async def _tokens(client: openai.AsyncOpenAI, **extra: Any) -> list[str]:
    reply = await client.chat.completions.create(model=MODEL, messages=POEM, max_tokens=48, temperature=0,
                                                 logprobs=True, **extra)
    return [entry.token for entry in (reply.choices[0].logprobs.content or [])]  # type: ignore[union-attr]


async def test_penalties_repeat_fewer_tokens_in_chat_streams_and_completions(client: openai.AsyncOpenAI) -> None:
    free = _repeats(await _tokens(client))
    assert _repeats(await _tokens(client, frequency_penalty=1.5)) < free
    assert _repeats(await _tokens(client, presence_penalty=1.5)) < free
    stream = await client.chat.completions.create(model=MODEL, messages=POEM, max_tokens=48, temperature=0,
                                                  frequency_penalty=1.5, stream=True)
    streamed = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    whole = await client.chat.completions.create(model=MODEL, messages=POEM, max_tokens=48, temperature=0,
                                                 frequency_penalty=1.5)
    assert streamed == whole.choices[0].message.content
    prompt = "The sea, the sea, the sea"
    plain = await client.completions.create(model=MODEL, prompt=prompt, max_tokens=32, temperature=0, logprobs=0)
    penalised = await client.completions.create(model=MODEL, prompt=prompt, max_tokens=32, temperature=0,
                                                logprobs=0, frequency_penalty=2.0)
    assert _repeats(penalised.choices[0].logprobs.tokens) < _repeats(plain.choices[0].logprobs.tokens)  # type: ignore[union-attr,arg-type]


async def test_logit_bias_forces_and_bans_tokens(client: openai.AsyncOpenAI, reference: tuple[Any, Any]) -> None:
    tokenizer, _ = reference
    banana = tokenizer.encode(" banana", add_special_tokens=False)[0]
    forced = await client.completions.create(model=MODEL, prompt="I like", max_tokens=4, temperature=0,
                                             logit_bias={str(banana): 100})
    assert forced.choices[0].text == " banana" * 4
    first = (await client.completions.create(model=MODEL, prompt="I like", max_tokens=1, temperature=0,
                                             logprobs=0)).choices[0]
    banned = tokenizer.encode(first.text, add_special_tokens=False)[0]
    other = await client.completions.create(model=MODEL, prompt="I like", max_tokens=1, temperature=0,
                                            logit_bias={str(banned): -100})
    assert other.choices[0].text != first.text
    with pytest.raises(openai.BadRequestError) as caught:
        await client.completions.create(model=MODEL, prompt="I like", max_tokens=1, logit_bias={"99999999": 5})
    assert caught.value.param == "logit_bias"


async def test_logprobs_agree_with_a_direct_forward_pass(client: openai.AsyncOpenAI,
                                                         reference: tuple[Any, Any]) -> None:
    tokenizer, model = reference
    reply = await client.chat.completions.create(model=MODEL, messages=POEM, max_tokens=12, temperature=0,
                                                 logprobs=True, top_logprobs=5)
    content = reply.choices[0].logprobs.content or []  # type: ignore[union-attr]
    assert len(content) == reply.usage.completion_tokens  # type: ignore[union-attr]
    ids = tokenizer.apply_chat_template(POEM, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    sequence = ids["input_ids"]
    with torch.inference_mode():
        for entry in content:
            expected = torch.log_softmax(model(sequence).logits[0, -1].float(), dim=-1)
            values, top = expected.topk(5)
            token = int(top[0])  # greedy: the engine chose this very token
            assert bytes(entry.bytes or []) == tokenizer.convert_tokens_to_string(
                [tokenizer.convert_ids_to_tokens(token)]).encode()
            assert entry.logprob == pytest.approx(float(values[0]), abs=2e-3)
            assert [t.logprob for t in entry.top_logprobs] == pytest.approx(values.tolist(), abs=2e-3)
            assert entry.top_logprobs[0].token == entry.token
            sequence = torch.cat([sequence, torch.tensor([[token]])], dim=1)
    stream = await client.chat.completions.create(model=MODEL, messages=POEM, max_tokens=12, temperature=0,
                                                  logprobs=True, top_logprobs=5, stream=True)
    streamed = [e async for c in stream if c.choices and c.choices[0].logprobs
                for e in c.choices[0].logprobs.content or []]
    assert [(e.token, round(e.logprob, 4)) for e in streamed] == [(e.token, round(e.logprob, 4)) for e in content]


async def test_completion_logprobs_in_the_legacy_shape(client: openai.AsyncOpenAI) -> None:
    reply = await client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=8, temperature=0,
                                            logprobs=3)
    logprobs = reply.choices[0].logprobs
    assert logprobs is not None and len(logprobs.tokens or []) == 8
    assert "".join(logprobs.tokens or []) == reply.choices[0].text
    assert all(len(top) == 3 for top in logprobs.top_logprobs or [])
    assert logprobs.text_offset == [sum(len(t) for t in (logprobs.tokens or [])[:i]) for i in range(8)]
    stream = await client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=8, temperature=0,
                                             logprobs=3, stream=True)
    tokens = [t async for c in stream if c.choices and c.choices[0].logprobs
              for t in c.choices[0].logprobs.tokens or []]
    assert tokens == logprobs.tokens


async def test_unknown_and_unsupported_fields_are_refused_by_name(client: openai.AsyncOpenAI) -> None:
    chat: list[tuple[dict[str, Any], str]] = [
        ({"extra_body": {"frobnicate": 1}}, "frobnicate"),
        ({"extra_body": {"messages": [{"role": "user", "content": "hi", "colour": "red"}]}}, "messages[0].colour"),
        ({"audio": {"voice": "alloy", "format": "mp3"}}, "audio"),
        ({"reasoning_effort": "low"}, "reasoning_effort"),
        ({"metadata": {"a": "b"}}, "metadata"),
        ({"store": True}, "store"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"functions": [{"name": "f", "parameters": {}}]}, "functions"),
        ({"prediction": {"type": "content", "content": "x"}}, "prediction"),
        ({"modalities": ["text", "audio"]}, "modalities"),
    ]
    for extra, param in chat:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                                 max_tokens=2, **extra)
        assert caught.value.param == param, (extra, caught.value.body)
        if "extra_body" in extra:
            assert caught.value.message.endswith(f"Unrecognized request argument supplied: {param}")
    for extra, param in [({"extra_body": {"nonsense": True}}, "nonsense"), ({"best_of": 3}, "best_of"),
                         ({"suffix": "x"}, "suffix"), ({"echo": True}, "echo")]:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.completions.create(model=MODEL, prompt="hi", max_tokens=2, **extra)
        assert caught.value.param == param, (extra, caught.value.body)
    with pytest.raises(openai.BadRequestError) as caught:
        await client.embeddings.create(model="all-minilm-l6-v2", input="hi", extra_body={"pooling": "cls"})
    assert caught.value.param == "pooling"
    with pytest.raises(openai.NotFoundError) as caught:
        await client.chat.completions.create(model="all-minilm-l6-v2", messages=[{"role": "user", "content": "x"}],
                                             tools=[{"type": "function", "function": {"name": "f"}}])
    assert caught.value.param == "model" and "does not support chat completions" in caught.value.message


async def test_user_is_recorded_and_reports_group_by_it(server: ServerProcess) -> None:
    tenant = f"users-{uuid.uuid4().hex[:8]}"
    client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=str(server.create_key(tenant)["secret"]),
                                max_retries=0)
    reply = await client.chat.completions.create(model=MODEL, messages=POEM, max_tokens=3, user="alice")
    await client.chat.completions.create(model=MODEL, messages=POEM, max_tokens=2, user="bob")
    await client.embeddings.create(model="all-minilm-l6-v2", input="hello", user="alice")
    assert reply.system_fingerprint and reply.system_fingerprint.startswith("fp_")
    from tests.api.ledger import ledger_rows

    await ledger_rows(server, [reply.id])
    async with httpx.AsyncClient(base_url=server.url, headers={"authorization": f"Bearer {client.api_key}"}) as http:
        for _ in range(150):  # the ledger consumer writes the events a moment after they are served
            report = (await http.get("/v1/usage", params={"group_by": "user,model"})).json()
            if sum(line["requests"] for line in report["data"]) == 3:
                break
            await asyncio.sleep(0.2)
    lines = {(line["user"], line["model"]): line["requests"] for line in report["data"]}
    assert lines == {("alice", MODEL): 1, ("bob", MODEL): 1, ("alice", "all-minilm-l6-v2"): 1}
