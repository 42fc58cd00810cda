"""OpenAI response bodies from a generation's outcome: messages or tool calls, and log probabilities."""

from __future__ import annotations

import base64
import struct
import time
from typing import TYPE_CHECKING

from service.protocol import (
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChoiceLogprobs,
    Completion,
    CompletionChoice,
    CompletionLogprobs,
    Embedding,
    EmbeddingList,
    EmbeddingUsage,
    FunctionCall,
    TokenLogprob,
    ToolCall,
    TopLogprob,
)
from service.tools import new_call_id, parse_calls

if TYPE_CHECKING:
    from collections.abc import Sequence

    from models.runtime import api
    from service.inference import Choice
    from service.jobs import EmbeddingPlan, Plan
    from service.lifecycle import Generation, Outcome


def chat_choice(choice: Choice, plan: Plan) -> ChatChoice:
    """One chat choice: its text, or the tool calls it made (``finish_reason: tool_calls``)."""
    text = "".join(choice.text)
    finish = choice.finish_reason or "stop"
    logprobs = chat_logprobs(choice.logprobs) if plan.logprobs else None
    calls = parse_calls(plan.tools, text) if plan.tools is not None and finish in ("stop", "length") else None
    if calls is None:
        return ChatChoice(index=choice.index, message=AssistantMessage(content=text), logprobs=logprobs,
                          finish_reason=finish)
    message = AssistantMessage(content=None, tool_calls=[
        ToolCall(id=new_call_id(), function=FunctionCall(name=name, arguments=arguments))
        for name, arguments in calls])
    return ChatChoice(index=choice.index, message=message, logprobs=logprobs,
                      finish_reason="tool_calls" if finish == "stop" else finish)


def completion_choice(choice: Choice, plan: Plan) -> CompletionChoice:
    logprobs = completion_logprobs(choice.logprobs, 0) if plan.logprobs else None
    return CompletionChoice(text="".join(choice.text), index=choice.index, logprobs=logprobs,
                            finish_reason=choice.finish_reason or "stop")


def chat_logprobs(entries: Sequence[api.TokenLogprob]) -> ChoiceLogprobs:
    """Chat's shape: one entry per token, with its bytes and top alternatives."""
    return ChoiceLogprobs(content=[
        TokenLogprob(token=e.token, logprob=e.logprob, bytes=list(e.bytes),
                     top_logprobs=[TopLogprob(token=t.token, logprob=t.logprob, bytes=list(t.bytes)) for t in e.top])
        for e in entries])


def completion_logprobs(entries: Sequence[api.TokenLogprob], offset: int) -> CompletionLogprobs:
    """The legacy shape: parallel lists; ``offset`` is where this piece starts in the choice's text."""
    offsets = []
    for entry in entries:
        offsets.append(offset)
        offset += len(entry.token)
    return CompletionLogprobs(tokens=[e.token for e in entries], token_logprobs=[e.logprob for e in entries],
                              top_logprobs=[{t.token: t.logprob for t in e.top} for e in entries],
                              text_offset=offsets)


def chat_completion(request_id: str, generation: Generation, outcome: Outcome) -> ChatCompletion:
    """The body of a finished chat completion (the online route's and a batch line's)."""
    plan = generation.plan
    return ChatCompletion(id=request_id, choices=[chat_choice(c, plan) for c in outcome.choices],
                          created=int(time.time()), model=plan.model.id, system_fingerprint=generation.fingerprint,
                          usage=outcome.usage)


def completion(request_id: str, generation: Generation, outcome: Outcome) -> Completion:
    """The body of a finished legacy completion."""
    plan = generation.plan
    return Completion(id=request_id, choices=[completion_choice(c, plan) for c in outcome.choices],
                      created=int(time.time()), model=plan.model.id, system_fingerprint=generation.fingerprint,
                      usage=outcome.usage)


def embedding_list(plan: EmbeddingPlan, vectors: list[list[float]], encoding: str) -> EmbeddingList:
    """The body of an embeddings request: one vector per input, as floats or base64 little-endian float32."""
    items = [Embedding(embedding=_encode_vector(v, encoding), index=i) for i, v in enumerate(vectors)]
    usage = EmbeddingUsage(prompt_tokens=plan.prompt_tokens, total_tokens=plan.prompt_tokens)
    return EmbeddingList(data=items, model=plan.model.id, usage=usage)


def _encode_vector(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector
