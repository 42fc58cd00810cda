"""Tool calls: how tools reach the prompt, the grammar a call is decoded under, and reading calls back.

Calls are decoded under a grammar, so that what comes back always parses and validates against the
function's JSON Schema:

- ``tool_choice`` naming a function: the output *is* that function's arguments (its ``parameters`` schema);
- ``required``: one call (or, with ``parallel_tool_calls``, one or more), each written
  ``<tool_call>{"name":"…","arguments":{…}}</tool_call>`` with the arguments under that function's schema;
- ``auto`` (the default with tools): either such calls or plain text (which then cannot start with ``<``);
- ``none``: the tools are not offered and nothing is constrained.

Models whose chat template takes ``tools`` get them through it; others get the documented system prompt of
``tool_prompt`` (README, "Tool calls").
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from meterway.errors import InvalidRequest
from models.runtime.api import Grammar
from models.structured import JSON_OPTIONS, validate

if TYPE_CHECKING:
    from service.protocol import ChatCompletionRequest, FunctionDefinition

OPEN, CLOSE = "<tool_call>", "</tool_call>"
_CALL = re.compile(re.escape(OPEN) + r"(.*?)" + re.escape(CLOSE), re.DOTALL)
_HEAD = re.compile(r'\{"name":"((?:[^"\\]|\\.)*)","arguments":')


@dataclass(frozen=True)
class ToolPlan:
    """What a request's tools mean for its prompt, its grammar and its output."""

    mode: str  # "named", "required" or "auto"
    functions: tuple[FunctionDefinition, ...]
    named: str | None
    parallel: bool
    grammar: Grammar

    def for_template(self) -> list[dict[str, Any]]:
        return [{"type": "function", "function": _function_dict(f)} for f in self.functions]


def plan_tools(request: ChatCompletionRequest) -> ToolPlan | None:
    """Validate ``tools``, ``tool_choice`` and ``parallel_tool_calls``; None when no tool is offered."""
    if not request.tools:
        if request.tool_choice not in (None, "none"):
            raise InvalidRequest("'tool_choice' is only allowed when 'tools' are specified.", param="tool_choice")
        if request.parallel_tool_calls is not None:
            raise InvalidRequest("'parallel_tool_calls' is only allowed when 'tools' are specified.",
                                 param="parallel_tool_calls")
        return None
    functions = tuple(tool.function for tool in request.tools)
    names = [f.name for f in functions]
    if len(set(names)) != len(names):
        raise InvalidRequest("Tool function names must be unique.", param="tools")
    for index, function in enumerate(functions):
        if error := validate("json_schema", json.dumps(_parameters(function))):
            raise InvalidRequest(f"Invalid schema for function '{function.name}': {error}",
                                 param=f"tools[{index}].function.parameters")
    choice = request.tool_choice or "auto"
    if choice == "none":
        return None
    parallel = request.parallel_tool_calls is not False
    if not isinstance(choice, str):
        if choice.function.name not in names:
            raise InvalidRequest(f"Tool choice '{choice.function.name}' is not one of the tools.",
                                 param="tool_choice")
        named = next(f for f in functions if f.name == choice.function.name)
        grammar = Grammar("json_schema", json.dumps(_parameters(named)))
        return ToolPlan("named", functions, named.name, False, grammar)
    return ToolPlan(choice, functions, None, parallel, Grammar("lark", _calls_grammar(functions, choice, parallel)))


def tool_prompt(functions: tuple[FunctionDefinition, ...]) -> str:
    """The system prompt that offers ``functions`` to a model whose template does not take tools."""
    listing = "\n".join(json.dumps(_function_dict(f), ensure_ascii=False) for f in functions)
    return ("You can call functions. Each is described by a JSON object with its name, description and "
            f"JSON Schema parameters:\n{listing}\nTo call a function, answer with "
            f'{OPEN}{{"name":"<function name>","arguments":{{<arguments>}}}}{CLOSE}; '
            "otherwise answer in plain text.")


def call_text(name: str, arguments: str) -> str:
    """An earlier assistant call as the model writes it (for conversations that replay tool calls)."""
    return f'{OPEN}{{"name":{json.dumps(name)},"arguments":{arguments}}}{CLOSE}'


def new_call_id() -> str:
    return f"call_{secrets.token_hex(12)}"


def parse_calls(plan: ToolPlan, text: str) -> list[tuple[str, str]] | None:
    """The (name, arguments) calls in a finished output, or None when it is plain text."""
    if plan.mode == "named":
        return [(plan.named or "", text)]
    if not text.startswith(OPEN):
        return None
    calls = []
    for body in _CALL.findall(text):
        head = _HEAD.match(body)
        if head is None or not body.endswith("}"):
            return None
        calls.append((json.loads(f'"{head.group(1)}"'), body[head.end():-1]))
    return calls or None


Call = tuple[int, str | None, str | None, str]  # index, id (first delta), name (first delta), arguments


class CallStream:
    """Turns one choice's streamed text into content or tool-call deltas (OpenAI's streamed shape)."""

    def __init__(self, plan: ToolPlan) -> None:
        self._plan = plan
        self._buffer = ""
        self._calls = 0
        self._in_args = False
        self._text_mode = False  # ``auto`` chose to answer in plain text

    @property
    def called(self) -> bool:
        return self._calls > 0

    def feed(self, text: str) -> tuple[str, list[Call]]:
        """The content and the call deltas ready to send once ``text`` has arrived."""
        if self._plan.mode == "named":
            return "", self._named(text)
        if self._text_mode:
            return text, []
        self._buffer += text
        if not self._calls and not self._in_args and self._buffer and not self._buffer.startswith("<"):
            self._text_mode, content, self._buffer = True, self._buffer, ""
            return content, []
        out: list[Call] = []
        while self._next_call(out):
            pass
        return "", out

    def _next_call(self, out: list[Call]) -> bool:
        """Move the buffer on by one call header or arguments piece; False when it must wait for more."""
        if not self._in_args:
            head = _HEAD.match(self._buffer, len(OPEN)) if self._buffer.startswith(OPEN) else None
            if head is None:
                return False
            self._buffer = self._buffer[head.end():]
            self._in_args = True
            out.append((self._calls, new_call_id(), json.loads(f'"{head.group(1)}"'), ""))
            self._calls += 1
        end = self._buffer.find("}" + CLOSE)
        if end < 0:  # hold back what could be the start of the closing tag
            safe = len(self._buffer) - len(CLOSE) - 1
            if safe > 0:
                out.append((self._calls - 1, None, None, self._buffer[:safe]))
                self._buffer = self._buffer[safe:]
            return False
        if end:
            out.append((self._calls - 1, None, None, self._buffer[:end]))
        self._buffer = self._buffer[end + 1 + len(CLOSE):]
        self._in_args = False
        return True

    def _named(self, text: str) -> list[Call]:
        if not self._calls:
            self._calls = 1
            return [(0, new_call_id(), self._plan.named, text)]
        return [(0, None, None, text)] if text else []


def _calls_grammar(functions: tuple[FunctionDefinition, ...], mode: str, parallel: bool) -> str:
    """A Lark grammar for tagged calls, each a compact JSON object under its function's schema."""
    rules = []
    for index, function in enumerate(functions):
        schema = {"type": "object", "properties": {"name": {"const": function.name},
                                                   "arguments": _parameters(function)},
                  "required": ["name", "arguments"], "additionalProperties": False,
                  "x-guidance": JSON_OPTIONS}
        rules.append(f"f{index}: %json {json.dumps(schema)}")
    alternatives = " | ".join(f"f{i}" for i in range(len(functions)))
    calls = "call+" if parallel else "call"
    start = f"start: {calls}" if mode == "required" else f"start: {calls} | TEXT\nTEXT: /[^<][\\s\\S]*/"
    return "\n".join([start, f'call: "{OPEN}" ({alternatives}) "{CLOSE}"', *rules])


def _parameters(function: FunctionDefinition) -> dict[str, Any]:
    return function.parameters if function.parameters is not None else {"type": "object", "properties": {}}


def _function_dict(function: FunctionDefinition) -> dict[str, Any]:
    out: dict[str, Any] = {"name": function.name}
    if function.description:
        out["description"] = function.description
    out["parameters"] = _parameters(function)
    return out
