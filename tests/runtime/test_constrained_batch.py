"""Constrained, penalised, biased and free rows share one continuous batch without changing each other."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from msgspec import structs

from models.runtime.api import GenerationRequest, Grammar, SamplingParams
from tests.runtime.conftest import Stream, chat, run

pytestmark = pytest.mark.slow

SCHEMA = {"type": "object", "additionalProperties": False, "required": ["city", "temperature", "sky"],
          "properties": {"city": {"type": "string", "maxLength": 20}, "temperature": {"type": "integer"},
                         "sky": {"enum": ["clear", "cloudy", "rain"]}}}


def _rows(tokenizer: Any) -> list[GenerationRequest]:
    weather = chat(tokenizer, "Report the weather in Oslo.")
    poem = chat(tokenizer, "Write a poem about the sea.")
    base = SamplingParams(max_tokens=40, temperature=0.0)
    grammar = Grammar("json_schema", json.dumps(SCHEMA))
    return [
        GenerationRequest("schema", weather, structs.replace(base, grammar=grammar, logprobs=2)),
        GenerationRequest("object", weather, structs.replace(base, grammar=Grammar("json_object"))),
        GenerationRequest("free", poem, base),
        GenerationRequest("penalised", poem, structs.replace(base, frequency_penalty=1.2, presence_penalty=0.4)),
        GenerationRequest("biased", poem, structs.replace(base, logit_bias=((tokenizer.encode(" wave")[0], 8.0),))),
        GenerationRequest("sampled", poem, structs.replace(base, temperature=0.9, seed=7, logprobs=0)),
    ]


def test_each_row_of_a_mixed_batch_gives_what_it_gives_alone(generator: Any, tokenizer: Any) -> None:
    rows = _rows(tokenizer)
    alone = {r.request_id: run(generator, r) for r in rows}
    together = {r.request_id: Stream() for r in rows}
    for r in rows:
        generator.submit(r, together[r.request_id])
    for stream in together.values():
        stream.wait()
    for rid, stream in together.items():
        assert stream.text == alone[rid].text, rid
        assert [lp.token for d in stream.deltas for lp in d.logprobs] == [
            lp.token for d in alone[rid].deltas for lp in d.logprobs]
    jsonschema.validate(json.loads(together["schema"].text), SCHEMA)
    assert isinstance(json.loads(together["object"].text), dict)
    assert len({together[k].text for k in ("free", "penalised", "biased")}) == 3  # each setting took effect
    schema_logprobs = [lp for d in together["schema"].deltas for lp in d.logprobs]
    assert len(schema_logprobs) == together["schema"].deltas[-1].completion_tokens - 1  # all but the end token
    assert all(len(lp.top) == 2 for lp in schema_logprobs)
