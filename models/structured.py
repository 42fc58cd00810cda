"""Output grammars as llguidance understands them, without torch: what the gateway validates up front and
what a worker compiles (``models.runtime.grammar``).

Kinds: ``json_schema`` (``source``: a JSON Schema as JSON text), ``json_object`` (any JSON object) and
``lark`` (a Lark grammar that may embed JSON Schemas with ``%json``: tool calls, ``service.tools``). JSON is
compact (no optional whitespace), and a schema keyword llguidance does not implement is an error, never
ignored.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import llguidance

if TYPE_CHECKING:
    from llguidance._lib import JsonCompileOptions

JSON_OPTIONS: JsonCompileOptions = {"whitespace_flexible": False, "lenient": False}
KINDS = ("json_schema", "json_object", "lark")


def grammar_text(kind: str, source: str) -> str:
    """The llguidance grammar for ``kind`` and ``source``; ``ValueError`` if ``source`` is not JSON."""
    if kind == "lark":
        return llguidance.LLMatcher.grammar_from_lark(source)
    if kind == "json_object":
        schema: Any = {"type": "object"}
    elif kind == "json_schema":
        schema = json.loads(source)
    else:
        raise ValueError(f"unknown grammar kind {kind!r}")
    return llguidance.LLMatcher.grammar_from_json_schema(schema, overrides=JSON_OPTIONS)


@lru_cache(maxsize=1024)
def validate(kind: str, source: str) -> str | None:
    """Why this grammar cannot be enforced, or None when it can (checked without a vocabulary; cached by
    grammar, as the workers cache their compiled matchers, so a repeated schema is not validated again)."""
    try:
        text = grammar_text(kind, source)
    except ValueError as exc:
        return str(exc)
    error = llguidance.LLMatcher.validate_grammar(text)
    return _readable(error) if error else None


def _readable(error: str) -> str:
    """llguidance's message without its position noise (``... at /properties/x``) trimmed of newlines."""
    return " ".join(error.split())
