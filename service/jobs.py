"""Validation: an OpenAI request becomes a ``Plan`` of generation jobs, or a clear 400.

Everything a request claims is checked here, before any model runs: the model's task, the context window
(prompt + completion), the sampling ranges, the number of choices. Token counts come from the model's own
tokenizer; the engine later reports what it really produced, and that is what billing uses.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from meterway.errors import ContextTooLong, InvalidRequest, NotFound
from models.pool.api import EmbeddingJob, GenerationJob
from models.runtime.api import SamplingParams
from service.inference import SERVERLESS, Placement
from service.surface import Options, chat_options, completion_options, refuse_chat_fields, refuse_unsupported
from service.tools import ToolPlan, call_text, plan_tools, tool_prompt

if TYPE_CHECKING:
    from collections.abc import Sequence

    from models.catalog import ModelSpec
    from models.tokenizer import PromptTokenizer
    from service.protocol import ChatCompletionRequest, ChatMessage, CompletionRequest, EmbeddingRequest

MAX_STOP_SEQUENCES = 4


@dataclass(frozen=True)
class Plan:
    """A validated generation request: one job per (prompt, choice)."""

    request_id: str
    endpoint: str
    model: ModelSpec
    jobs: tuple[GenerationJob, ...]
    prompt_tokens: int  # counted once per prompt, not per choice, as OpenAI bills
    reserved_completion_tokens: int
    stream: bool
    include_usage: bool
    tools: ToolPlan | None = None  # the request offered tools (its output may hold calls)
    logprobs: bool = False  # log probabilities go into the response
    user: str | None = None  # the caller's end user, recorded with the usage event
    placement: Placement = SERVERLESS  # the endpoint and deployment it is metered under

    @property
    def reserved_tokens(self) -> int:
        return self.prompt_tokens + self.reserved_completion_tokens

    def placed(self, placement: Placement, group: str | None) -> Plan:
        """This plan metered under ``placement``, its jobs run on ``group``'s dedicated instances (if named);
        a batch line's jobs run in the background (``GenerationJob.background``)."""
        background = placement.batch is not None
        return replace(self, placement=placement,
                       jobs=tuple(replace(job, group=group, background=background) for job in self.jobs))


@dataclass(frozen=True)
class EmbeddingPlan:
    """A validated embedding request."""

    request_id: str
    model: ModelSpec
    job: EmbeddingJob
    prompt_tokens: int
    placement: Placement = SERVERLESS

    def placed(self, placement: Placement, group: str | None) -> EmbeddingPlan:
        """As ``Plan.placed``."""
        return replace(self, placement=placement,
                       job=replace(self.job, group=group, background=placement.batch is not None))


def new_request_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def plan_chat(request: ChatCompletionRequest, model: ModelSpec, tokenizer: PromptTokenizer, *,
              request_id: str, max_n: int) -> Plan:
    """Validate a chat completion request against ``model``."""
    _require_task(model, "chat", "chat completions")
    refuse_chat_fields(request)
    tools = plan_tools(request)
    options = chat_options(request, tokenizer, tools.grammar if tools else None)
    native = tokenizer.takes_tools
    messages = [_message_dict(i, m, native) for i, m in enumerate(request.messages)]
    if tools is not None and not native:
        messages.insert(0, {"role": "system", "content": tool_prompt(tools.functions)})
    try:
        prompt = tokenizer.encode_chat(messages, tools.for_template() if tools is not None and native else None)
    except ValueError as exc:
        raise InvalidRequest(str(exc), param="messages") from exc
    max_tokens = request.max_completion_tokens or request.max_tokens
    plan = _plan(request_id, "chat.completions", model, [prompt], request, max_tokens, max_n, "messages", options)
    return replace(plan, tools=tools, logprobs=options.logprobs >= 0)


def plan_completion(request: CompletionRequest, model: ModelSpec, tokenizer: PromptTokenizer, *,
                    request_id: str, max_n: int) -> Plan:
    """Validate a legacy completion request: one or several prompts, text or token ids."""
    _require_task(model, "chat", "completions")
    refuse_unsupported(request)
    options = completion_options(request, tokenizer)
    prompts = [_prompt_ids(p, tokenizer) for p in _prompt_list(request.prompt)]
    if not prompts or len(prompts) > 16:
        raise InvalidRequest("'prompt' must hold between 1 and 16 prompts.", param="prompt")
    if any(not ids for ids in prompts):  # the engine needs a token to start from; OpenAI's BOS is model-specific
        raise InvalidRequest("Each prompt must hold at least one token; an empty prompt gives the model nothing "
                             "to continue.", param="prompt")
    plan = _plan(request_id, "completions", model, prompts, request, request.max_tokens, max_n, "prompt", options)
    return replace(plan, logprobs=options.logprobs >= 0)


def plan_embeddings(request: EmbeddingRequest, model: ModelSpec, tokenizer: PromptTokenizer, *,
                    request_id: str) -> EmbeddingPlan:
    """Validate an embedding request: each input within the model's context."""
    _require_task(model, "embedding", "embeddings")
    refuse_unsupported(request)
    if request.dimensions is not None:
        raise InvalidRequest("'dimensions' is not supported by this model.", param="dimensions")
    inputs = [_prompt_ids(p, tokenizer) for p in _prompt_list(request.input, "input")]
    if not inputs or len(inputs) > 2048 or any(not ids for ids in inputs):
        raise InvalidRequest("'input' must hold 1 to 2048 non-empty inputs.", param="input")
    for index, ids in enumerate(inputs):
        if len(ids) > model.context_length:
            raise ContextTooLong(f"This model's maximum context length is {model.context_length} tokens, "
                                 f"however input {index} has {len(ids)} tokens.", param="input")
    job = EmbeddingJob(request_id, model, tuple(tuple(ids) for ids in inputs))
    return EmbeddingPlan(request_id, model, job, sum(len(ids) for ids in inputs))


def _plan(request_id: str, endpoint: str, model: ModelSpec, prompts: list[list[int]],
          request: ChatCompletionRequest | CompletionRequest, max_tokens: int | None, max_n: int,
          prompt_param: str, options: Options) -> Plan:
    if request.n > max_n:
        raise InvalidRequest(f"'n' must be at most {max_n}.", param="n")
    if model.builtin and options != Options():
        raise InvalidRequest(f"The model '{model.id}' echoes its prompt: it does not take penalties, "
                             "logit_bias, logprobs, tools or response_format.", param="model",
                             code="model_not_supported")
    longest = max(len(p) for p in prompts)
    room = model.context_length - longest
    if room < 1 or (max_tokens is not None and max_tokens > room):
        asked = f" and {max_tokens} in the completion" if max_tokens else ""
        raise ContextTooLong(f"This model's maximum context length is {model.context_length} tokens. However, "
                             f"you requested {longest + (max_tokens or 0)} tokens ({longest} in the "
                             f"{prompt_param}{asked}). Please reduce the length of the {prompt_param} or "
                             f"completion.", param=prompt_param)
    limit = max_tokens or room
    stop = _stop(request.stop)
    temperature = model.default_temperature if request.temperature is None else request.temperature
    top_p = model.default_top_p if request.top_p is None else request.top_p
    jobs = []
    for p_index, prompt in enumerate(prompts):
        for choice in range(request.n):
            seed = None if request.seed is None else request.seed + choice
            params = SamplingParams(max_tokens=limit, temperature=temperature, top_p=top_p, seed=seed, stop=stop,
                                    presence_penalty=options.presence_penalty,
                                    frequency_penalty=options.frequency_penalty, logit_bias=options.logit_bias,
                                    logprobs=options.logprobs, grammar=options.grammar)
            jobs.append(GenerationJob(f"{request_id}/{p_index * request.n + choice}", model, tuple(prompt),
                                      params))
    stream_options = request.stream_options
    return Plan(request_id, endpoint, model, tuple(jobs), sum(len(p) for p in prompts), limit * len(jobs),
                request.stream, bool(request.stream and stream_options and stream_options.include_usage),
                user=request.user)


def _require_task(model: ModelSpec, task: str, what: str) -> None:
    """OpenAI answers 404 for a model of another kind on an endpoint; so does meterway."""
    if model.task != task:
        raise NotFound(f"The model '{model.id}' does not support {what}: it is a {model.task} model.",
                       param="model", code="model_not_supported")


def _message_dict(index: int, message: ChatMessage, native_tools: bool) -> dict[str, Any]:
    """One message for the chat template; tool calls written as the model writes them (``service.tools``)
    unless the template renders them itself."""
    content = message.content
    if isinstance(content, list):
        if any(part.type != "text" or part.text is None for part in content):
            raise InvalidRequest("Only text content parts are supported.", param=f"messages[{index}].content")
        content = "".join(part.text or "" for part in content)
    out: dict[str, Any] = {"role": "system" if message.role == "developer" else message.role,
                           "content": content or ""}
    if message.tool_calls and message.role != "assistant":
        raise InvalidRequest("Only assistant messages carry 'tool_calls'.", param=f"messages[{index}].tool_calls")
    if message.role == "tool":
        if not message.tool_call_id:
            raise InvalidRequest("A 'tool' message needs the 'tool_call_id' it answers.",
                                 param=f"messages[{index}].tool_call_id")
        out["tool_call_id"] = message.tool_call_id
    elif message.tool_call_id is not None:
        raise InvalidRequest("Only 'tool' messages carry 'tool_call_id'.", param=f"messages[{index}].tool_call_id")
    if message.tool_calls and native_tools:
        out["tool_calls"] = [{"id": c.id, "type": "function", "function": {
            "name": c.function.name, "arguments": _arguments(index, c.function.arguments)}}
            for c in message.tool_calls]
    elif message.tool_calls:
        out["content"] += "".join(call_text(c.function.name, json.dumps(_arguments(index, c.function.arguments)))
                                  for c in message.tool_calls)
    if message.name is not None:
        out["name"] = message.name
    return out


def _arguments(index: int, arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except ValueError as exc:
        raise InvalidRequest("A tool call's 'arguments' must be a JSON string.",
                             param=f"messages[{index}].tool_calls") from exc


def _prompt_list(prompt: str | list[Any], param: str = "prompt") -> list[str | list[int]]:
    if isinstance(prompt, str):
        return [prompt]
    if prompt and all(isinstance(p, int) and not isinstance(p, bool) for p in prompt):
        return [list(prompt)]
    if all(isinstance(p, str) for p in prompt):
        return list(prompt)
    if all(isinstance(p, list) and p and all(isinstance(t, int) and not isinstance(t, bool) for t in p)
           for p in prompt):
        return list(prompt)
    raise InvalidRequest(f"'{param}' must be a string, a list of strings, a list of token ids, or a list of "
                         "lists of token ids.", param=param)


def _prompt_ids(prompt: str | Sequence[int], tokenizer: PromptTokenizer) -> list[int]:
    if isinstance(prompt, str):
        return tokenizer.encode(prompt)
    if any(not isinstance(t, int) or t < 0 for t in prompt):
        raise InvalidRequest("Token ids must be non-negative integers.", param="prompt")
    return list(prompt)


def _stop(stop: str | list[str] | None) -> tuple[str, ...]:
    sequences = [stop] if isinstance(stop, str) else list(stop or [])
    if len(sequences) > MAX_STOP_SEQUENCES or any(not s for s in sequences):
        raise InvalidRequest(f"'stop' takes up to {MAX_STOP_SEQUENCES} non-empty sequences.", param="stop")
    return tuple(sequences)
