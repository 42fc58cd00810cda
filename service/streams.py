"""The SSE encodings of OpenAI's streamed protocols (``service.lifecycle.Generation.stream`` writes them)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from service.lifecycle import StreamEncoding
from service.protocol import ChatCompletionChunk, ChunkChoice, ChunkDelta, Completion, CompletionChoice, Usage

if TYPE_CHECKING:
    from models.runtime.api import TokenDelta


def chat_chunks(request_id: str, choices: int, model: str, created: int) -> StreamEncoding:
    """``chat.completion.chunk`` events: a role chunk for every choice, then content and finish chunks."""

    def chunk(choices_list: list[ChunkChoice], usage: Usage | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(id=request_id, choices=choices_list, created=created, model=model, usage=usage)

    opening = chunk([ChunkChoice(index=i, delta=ChunkDelta(role="assistant", content="")) for i in range(choices)])

    def make(index: int, delta: TokenDelta) -> ChatCompletionChunk:
        piece = ChunkDelta(content=delta.text) if delta.text else ChunkDelta()
        return chunk([ChunkChoice(index=index, delta=piece, finish_reason=delta.finish_reason)])

    return StreamEncoding(opening, make, lambda usage: chunk([], usage))


def completion_chunks(request_id: str, model: str, created: int) -> StreamEncoding:
    """Streamed legacy completions: one ``text_completion`` object per delta, no opening chunk."""

    def make(index: int, delta: TokenDelta) -> Completion:
        choice = CompletionChoice(text=delta.text, index=index, finish_reason=delta.finish_reason)
        return Completion(id=request_id, choices=[choice], created=created, model=model)

    def usage(value: Usage) -> Completion:
        return Completion(id=request_id, choices=[], created=created, model=model, usage=value)

    return StreamEncoding(None, make, usage)
