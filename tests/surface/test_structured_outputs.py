"""``response_format`` with the official openai client: outputs that parse and validate, refusals up front."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import openai
import pytest

from tests.surface.conftest import MODEL

pytestmark = pytest.mark.slow

PERSON = {"type": "object", "additionalProperties": False, "required": ["name", "age", "address"],
          "properties": {"name": {"type": "string", "maxLength": 30}, "age": {"type": "integer", "minimum": 0},
                         "address": {"type": "object", "additionalProperties": False,
                                     "required": ["city", "country"],
                                     "properties": {"city": {"type": "string", "maxLength": 30},
                                                    "country": {"type": "string", "maxLength": 30}}}}}
RECIPE = {"type": "object", "additionalProperties": False, "required": ["title", "difficulty", "steps"],
          "properties": {"title": {"type": "string", "maxLength": 40},
                         "difficulty": {"enum": ["easy", "medium", "hard"]},
                         "steps": {"type": "array", "minItems": 1, "maxItems": 3,
                                   "items": {"type": "string", "maxLength": 40}}}}
CHOICE = {"anyOf": [{"type": "object", "properties": {"yes": {"const": True}}, "required": ["yes"],
                     "additionalProperties": False},
                    {"type": "object", "properties": {"no": {"type": "string", "maxLength": 20}},
                     "required": ["no"], "additionalProperties": False}]}


def _schema_format(name: str, schema: dict[str, Any]) -> Any:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


@pytest.mark.parametrize(("name", "schema", "ask"), [
    ("person", PERSON, "Describe a person who lives in Lisbon."),
    ("recipe", RECIPE, "Give me a recipe for pancakes."),
    ("choice", CHOICE, "Do you like tea?"),
])
async def test_json_schema_outputs_validate(client: openai.AsyncOpenAI, name: str, schema: dict[str, Any],
                                            ask: str) -> None:
    for temperature in (0.0, 1.0):
        reply = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": ask}], max_tokens=120, temperature=temperature,
            seed=1, response_format=_schema_format(name, schema))
        choice = reply.choices[0]
        assert choice.finish_reason == "stop", choice
        jsonschema.validate(json.loads(choice.message.content or ""), schema)


async def test_json_object_parses_also_streamed_and_with_several_choices(client: openai.AsyncOpenAI) -> None:
    messages: Any = [{"role": "user", "content": "Reply in JSON with a greeting."}]
    reply = await client.chat.completions.create(model=MODEL, messages=messages, max_tokens=60, temperature=1.0,
                                                 n=2, seed=5, response_format={"type": "json_object"})
    assert len(reply.choices) == 2
    for choice in reply.choices:
        assert isinstance(json.loads(choice.message.content or ""), dict) and choice.finish_reason == "stop"
    stream = await client.chat.completions.create(model=MODEL, messages=messages, max_tokens=60, temperature=0,
                                                  stream=True, response_format={"type": "json_object"})
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert isinstance(json.loads(text), dict)


async def test_schemas_the_engine_cannot_enforce_are_refused_up_front(client: openai.AsyncOpenAI) -> None:
    for schema in ({"type": "array", "uniqueItems": True}, {"not": {"type": "string"}}, {"type": "strin"},
                   {"type": "string", "format": "no-such-format"}):
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                                 max_tokens=5, response_format=_schema_format("x", schema))
        assert caught.value.param == "response_format.json_schema.schema", caught.value.body
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                             max_tokens=5, response_format={"type": "json_schema"})  # type: ignore[typeddict-item]
    assert caught.value.param == "response_format.json_schema"
