"""OpenAI response bodies from a generation's outcome: messages or tool calls, and log probabilities."""

from __future__ import annotations

from typing import TYPE_CHECKING

from service.protocol import (
    AssistantMessage,
    ChatChoice,
    ChoiceLogprobs,
    CompletionChoice,
    CompletionLogprobs,
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
    from service.jobs import Plan


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
