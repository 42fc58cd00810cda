"""Contract tests: the official openai client against a running meterway on the real SmolLM2."""

from __future__ import annotations

from typing import TYPE_CHECKING

import openai
import pytest
from transformers import AutoTokenizer

if TYPE_CHECKING:
    from tests.server import ServerProcess

pytestmark = pytest.mark.slow
MODEL = "smollm2-135m-instruct"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def hf_tokenizer(store_dir):  # type: ignore[no-untyped-def]
    return AutoTokenizer.from_pretrained(store_dir / MODEL)


def _prompt_tokens(hf_tokenizer, messages) -> int:  # type: ignore[no-untyped-def]
    ids = hf_tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    return len(ids["input_ids"] if hasattr(ids, "keys") else ids)


@pytest.mark.battery(14)
async def test_chat_answers_from_the_real_model(client: openai.AsyncOpenAI, hf_tokenizer) -> None:  # type: ignore[no-untyped-def]
    reply = await client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=12, temperature=0)
    assert "Paris" in (reply.choices[0].message.content or "")
    assert reply.object == "chat.completion" and reply.model == MODEL
    assert reply.choices[0].finish_reason in {"stop", "length"}
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == _prompt_tokens(hf_tokenizer, QUESTION)
    completion_ids = hf_tokenizer(reply.choices[0].message.content, add_special_tokens=False)["input_ids"]
    # The engine's count includes the end-of-turn token when the model stops by itself.
    extra = 1 if reply.choices[0].finish_reason == "stop" else 0
    assert reply.usage.completion_tokens == len(completion_ids) + extra
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


async def test_usage_reports_prompt_tokens_from_the_prefix_cache_and_bills_them_all(  # type: ignore[no-untyped-def]
        client: openai.AsyncOpenAI, hf_tokenizer) -> None:
    question = [{"role": "user", "content": "Name one planet of the solar system, please."}]
    prompt = _prompt_tokens(hf_tokenizer, question)
    await client.chat.completions.create(model=MODEL, messages=question, max_tokens=2, temperature=0)
    again = await client.chat.completions.create(model=MODEL, messages=question, max_tokens=2, temperature=0)
    assert again.usage is not None and again.usage.prompt_tokens_details is not None
    cached = again.usage.prompt_tokens_details.cached_tokens or 0
    # The same prompt again: every token before its last came from the cache (the last gives the logits).
    assert cached == prompt - 1
    assert again.usage.prompt_tokens == prompt  # cached tokens are still prompt tokens, billed as such
    stream = await client.chat.completions.create(model=MODEL, messages=question, max_tokens=2, temperature=0,
                                                  stream=True, stream_options={"include_usage": True})
    usages = [chunk.usage async for chunk in stream if chunk.usage is not None]
    assert [u.prompt_tokens_details.cached_tokens for u in usages if u.prompt_tokens_details] == [cached]


async def test_default_sampling_follows_the_model_card(client: openai.AsyncOpenAI) -> None:
    # No temperature or top_p given: the catalog's defaults for SmolLM2 (0.2 and 0.9, from its model card) apply
    # instead of OpenAI's 1.0, so an unparameterised call samples exactly like one that names them.
    async def ask(**sampling: float) -> str:
        reply = await client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=12, seed=11,
                                                     **sampling)
        return reply.choices[0].message.content or ""

    default = await ask()
    assert default == await ask(temperature=0.2, top_p=0.9)


@pytest.mark.battery(14)
async def test_stream_with_usage_matches_the_unstreamed_answer(client: openai.AsyncOpenAI) -> None:
    plain = await client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=10, temperature=0)
    stream = await client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=10, temperature=0,
                                                  stream=True, stream_options={"include_usage": True})
    pieces, usages, finishes = [], [], []
    async for chunk in stream:
        if chunk.usage is not None:
            usages.append(chunk.usage)
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            if choice.finish_reason:
                finishes.append(choice.finish_reason)
    assert "".join(pieces) == plain.choices[0].message.content
    assert len(usages) == 1 and usages[0] == plain.usage
    assert finishes == [plain.choices[0].finish_reason]


@pytest.mark.battery(14)
async def test_stream_without_usage_has_no_usage_chunk(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=4, stream=True)
    chunks = [chunk async for chunk in stream]
    assert chunks and all(chunk.usage is None for chunk in chunks)


async def test_sampling_parameters_are_honoured(client: openai.AsyncOpenAI) -> None:
    async def ask(**kwargs: object) -> str:
        reply = await client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=8, **kwargs)
        return reply.choices[0].message.content or ""

    seeded = [await ask(temperature=1.0, top_p=0.9, seed=7) for _ in range(2)]
    assert seeded[0] == seeded[1]
    stopped = await client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=12, temperature=0,
                                                   stop=["Paris"])
    assert "Paris" not in (stopped.choices[0].message.content or "")
    assert stopped.choices[0].finish_reason == "stop"
    short = await client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=2, temperature=0)
    assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens == 2  # type: ignore[union-attr]


async def test_legacy_completions(client: openai.AsyncOpenAI) -> None:
    reply = await client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=6,
                                            temperature=0)
    assert reply.object == "text_completion" and reply.choices[0].text
    assert reply.usage is not None and reply.usage.completion_tokens <= 6
    stream = await client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=6,
                                             temperature=0, stream=True)
    text = "".join([chunk.choices[0].text async for chunk in stream if chunk.choices])
    assert text == reply.choices[0].text
    for empty in ("", [""], []):  # found by schemathesis: an empty prompt was a 500 from the worker
        with pytest.raises(openai.BadRequestError) as refused:
            await client.completions.create(model=MODEL, prompt=empty, max_tokens=2)
        assert refused.value.param == "prompt"


async def test_models_list_and_retrieve(client: openai.AsyncOpenAI) -> None:
    listed = {model.id: model for model in (await client.models.list()).data}
    assert {MODEL, "all-minilm-l6-v2"} <= set(listed)
    assert listed[MODEL].model_extra and listed[MODEL].model_extra["state"] in {"cold", "loading", "ready"}
    retrieved = await client.models.retrieve(MODEL)
    assert retrieved.id == MODEL and retrieved.owned_by
    with pytest.raises(openai.NotFoundError) as caught:
        await client.models.retrieve("no-such-model")
    assert caught.value.body["code"] == "model_not_found"  # type: ignore[index]


async def test_azure_style_api_key_header(server: ServerProcess, tenant_key: str) -> None:
    azure = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0,
                               default_headers={"api-key": tenant_key, "Authorization": ""})
    assert (await azure.models.list()).data
