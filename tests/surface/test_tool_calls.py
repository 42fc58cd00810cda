"""Tool calls with the official openai client: forced, required, automatic, streamed, and a round trip."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import openai
import pytest

from tests.surface.conftest import MODEL

pytestmark = pytest.mark.slow

WEATHER = {
    "type": "object",
    "properties": {"location": {"type": "string", "maxLength": 40},
                   "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                   "days": {"type": "integer", "minimum": 1, "maximum": 7}},
    "required": ["location", "unit", "days"],
    "additionalProperties": False,
}
TIME = {"type": "object", "properties": {"timezone": {"type": "string", "maxLength": 30}},
        "required": ["timezone"], "additionalProperties": False}
TOOLS: Any = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather forecast for a place",
                                      "parameters": WEATHER}},
    {"type": "function", "function": {"name": "get_time", "description": "The time in a timezone",
                                      "parameters": TIME}},
]
ASK: Any = [{"role": "user", "content": "What will the weather be in Paris for the next 3 days?"}]
SCHEMAS = {"get_weather": WEATHER, "get_time": TIME}


async def test_a_forced_call_has_arguments_that_validate(client: openai.AsyncOpenAI) -> None:
    reply = await client.chat.completions.create(
        model=MODEL, messages=ASK, tools=TOOLS, max_tokens=60, temperature=0,
        tool_choice={"type": "function", "function": {"name": "get_weather"}})
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    calls = choice.message.tool_calls or []
    assert len(calls) == 1 and calls[0].type == "function" and calls[0].id.startswith("call_")
    assert calls[0].function.name == "get_weather"  # type: ignore[union-attr]
    jsonschema.validate(json.loads(calls[0].function.arguments), WEATHER)  # type: ignore[union-attr]


async def test_required_calls_name_a_tool_and_validate_against_it(client: openai.AsyncOpenAI) -> None:
    for parallel in (False, True):
        reply = await client.chat.completions.create(
            model=MODEL, messages=ASK, tools=TOOLS, tool_choice="required", parallel_tool_calls=parallel,
            max_tokens=120, temperature=0.8, seed=3)
        choice = reply.choices[0]
        assert choice.finish_reason == "tool_calls", choice
        calls = choice.message.tool_calls or []
        assert calls and (parallel or len(calls) == 1)
        for call in calls:
            jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])  # type: ignore[union-attr]


async def test_streamed_tool_call_deltas_reassemble_into_the_call(client: openai.AsyncOpenAI) -> None:
    kwargs: Any = {"model": MODEL, "messages": ASK, "tools": TOOLS, "max_tokens": 60, "temperature": 0,
                   "tool_choice": "required", "parallel_tool_calls": False}
    whole = (await client.chat.completions.create(**kwargs)).choices[0].message.tool_calls or []
    stream = await client.chat.completions.create(**kwargs, stream=True)
    calls: dict[int, dict[str, str]] = {}
    finish, pieces = None, 0
    async for chunk in stream:
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or []:
                pieces += 1
                call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                call["id"] += delta.id or ""
                call["name"] += (delta.function.name or "") if delta.function else ""
                call["arguments"] += (delta.function.arguments or "") if delta.function else ""
            finish = choice.finish_reason or finish
    assert finish == "tool_calls" and pieces > 2  # the arguments arrive in several pieces
    assert list(calls) == [0] and calls[0]["id"].startswith("call_")
    assert (calls[0]["name"], calls[0]["arguments"]) == (whole[0].function.name, whole[0].function.arguments)  # type: ignore[union-attr]
    jsonschema.validate(json.loads(calls[0]["arguments"]), SCHEMAS[calls[0]["name"]])


async def test_a_full_tool_round_trip(client: openai.AsyncOpenAI) -> None:
    first = await client.chat.completions.create(
        model=MODEL, messages=ASK, tools=TOOLS, max_tokens=60, temperature=0,
        tool_choice={"type": "function", "function": {"name": "get_weather"}})
    call = (first.choices[0].message.tool_calls or [])[0]
    conversation: Any = [*ASK, first.choices[0].message.model_dump(exclude_none=True),
                         {"role": "tool", "tool_call_id": call.id,
                          "content": json.dumps({"forecast": ["sunny", "rain", "sunny"], "high_c": 21})}]
    answer = await client.chat.completions.create(model=MODEL, messages=conversation, tools=TOOLS,
                                                  tool_choice="none", max_tokens=30, temperature=0)
    assert answer.choices[0].finish_reason in {"stop", "length"}
    assert answer.choices[0].message.tool_calls is None and answer.choices[0].message.content


async def test_tool_choice_none_and_auto_answer_in_text_or_valid_calls(client: openai.AsyncOpenAI) -> None:
    plain = await client.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS, tool_choice="none",
                                                 max_tokens=20, temperature=0)
    assert plain.choices[0].message.tool_calls is None and plain.choices[0].message.content
    for seed in range(3):
        auto = await client.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS, max_tokens=80,
                                                    temperature=1.0, seed=seed)
        choice = auto.choices[0]
        if choice.message.tool_calls:
            assert choice.finish_reason == "tool_calls"
            for call in choice.message.tool_calls:
                jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])  # type: ignore[union-attr]
        else:
            assert choice.message.content and not choice.message.content.startswith("<")


async def test_bad_tool_requests_are_refused_by_name(client: openai.AsyncOpenAI) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {
            "type": "array", "uniqueItems": True}}}]}, "tools[0].function.parameters"),
        ({"tools": [TOOLS[0], TOOLS[0]]}, "tools"),
    ]
    for extra, param in cases:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=5, **extra)
        assert caught.value.param == param, (extra, caught.value.body)
