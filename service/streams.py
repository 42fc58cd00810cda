"""The SSE encodings of OpenAI's streamed protocols (``service.lifecycle.Generation.stream`` writes them).

Each encoding keeps per-choice state where the protocol needs it: tool-call deltas are cut out of the
streamed text (``service.tools.CallStream``), completion log probabilities carry their text offsets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from service.lifecycle import StreamEncoding
from service.protocol import (
    ChatCompletionChunk,
    ChunkChoice,
    ChunkDelta,
    Completion,
    CompletionChoice,
    FunctionCallDelta,
    ToolCallDelta,
    Usage,
)
from service.responses import chat_logprobs, completion_logprobs
from service.tools import CallStream

if TYPE_CHECKING:
    from models.runtime.api import TokenDelta
    from service.jobs import Plan


def chat_chunks(plan: Plan, choices: int, model: str, created: int) -> StreamEncoding:
    """``chat.completion.chunk`` events: a role chunk for every choice, then content (or tool-call) and
    finish chunks."""
    request_id = plan.request_id
    calls = [CallStream(plan.tools) for _ in range(choices)] if plan.tools is not None else None

    def chunk(choices_list: list[ChunkChoice], usage: Usage | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(id=request_id, choices=choices_list, created=created, model=model,
                                   system_fingerprint=plan.model.fingerprint, usage=usage)

    opening = chunk([ChunkChoice(index=i, delta=ChunkDelta(role="assistant", content="")) for i in range(choices)])

    def make(index: int, delta: TokenDelta) -> ChatCompletionChunk | None:
        logprobs = chat_logprobs(delta.logprobs) if plan.logprobs and delta.logprobs else None
        finish = delta.finish_reason
        piece = ChunkDelta(content=delta.text) if delta.text else ChunkDelta()
        if calls is not None:
            content, made = calls[index].feed(delta.text)
            piece = ChunkDelta(content=content or None, tool_calls=[
                ToolCallDelta(index=i, id=call_id, type="function" if call_id else None,
                              function=FunctionCallDelta(name=name, arguments=arguments))
                for i, call_id, name, arguments in made] or None)
            if finish == "stop" and calls[index].called:
                finish = "tool_calls"
        if piece.content is None and piece.tool_calls is None and finish is None and logprobs is None:
            return None
        return chunk([ChunkChoice(index=index, delta=piece, logprobs=logprobs, finish_reason=finish)])

    return StreamEncoding(opening, make, lambda usage: chunk([], usage))


def completion_chunks(plan: Plan, model: str, created: int) -> StreamEncoding:
    """Streamed legacy completions: one ``text_completion`` object per delta, no opening chunk."""
    request_id = plan.request_id
    offsets: dict[int, int] = {}

    def make(index: int, delta: TokenDelta) -> Completion:
        logprobs = None
        if plan.logprobs:
            logprobs = completion_logprobs(delta.logprobs, offsets.get(index, 0))
            offsets[index] = offsets.get(index, 0) + sum(len(e.token) for e in delta.logprobs)
        choice = CompletionChoice(text=delta.text, index=index, logprobs=logprobs, finish_reason=delta.finish_reason)
        return Completion(id=request_id, choices=[choice], created=created, model=model,
                          system_fingerprint=plan.model.fingerprint)

    def usage(value: Usage) -> Completion:
        return Completion(id=request_id, choices=[], created=created, model=model,
                          system_fingerprint=plan.model.fingerprint, usage=value)

    return StreamEncoding(None, make, usage)
