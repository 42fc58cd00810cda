"""The console routes that pass a body through instead of rendering: the playground's event stream, the
adapter upload and a batch's results. Each streams to or from the REST API, never holding the whole body."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from litestar import Request, Response, get, post
from litestar.response import Stream

from console.web import Console
from meterway.sdk import APIError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from console.session import Session

MAX_TOKENS = 512
MILLION = Decimal(1_000_000)


@post("/playground/chat", status_code=200)
async def chat(request: Request[Any, Any, Any], console: Console) -> Stream:
    """``POST /v1/chat/completions`` streamed with usage; the API's events pass through as they come."""
    session = console.checked(request)
    asked = json.loads(await request.body() or b"{}")
    body = {"model": str(asked.get("model", "")), "messages": list(asked.get("messages", [])), "stream": True,
            "stream_options": {"include_usage": True}, "max_tokens": min(int(asked.get("max_tokens") or 128),
                                                                         MAX_TOKENS)}
    return Stream(_events(request, console, session, body), media_type="text/event-stream",
                  headers={"cache-control": "no-store"})


async def _events(request: Request[Any, Any, Any], console: Console, session: Session,
                  body: dict[str, Any]) -> AsyncIterator[bytes]:
    """The API's events as they come, then a ``meterway_cost`` event: the answer's usage at the model's price."""
    async with console.gateway.for_session(request, session) as client:
        try:
            model = await client.request("GET", f"/v1/models/{body['model']}")
            usage = UsageWatch()
            async with client.stream("POST", "/v1/chat/completions", json=body) as response:
                async for chunk in response.aiter_raw():
                    usage.feed(chunk)
                    yield chunk
            if usage.found:
                yield usage.cost_event(model, console.currency)
        except APIError as exc:
            error = {"error": {"message": exc.message, "code": exc.code, "status": exc.status_code}}
            yield f"data: {json.dumps(error)}\n\n".encode()


class UsageWatch:
    """Finds the usage chunk (``stream_options.include_usage``) in the bytes of an event stream."""

    def __init__(self) -> None:
        self._buffer = b""
        self.found: dict[str, int] = {}

    def feed(self, chunk: bytes) -> None:
        *lines, self._buffer = (self._buffer + chunk).split(b"\n")
        for line in lines:
            if line.startswith(b"data: {") and b'"usage"' in line:
                usage = json.loads(line[6:]).get("usage")
                self.found = usage if isinstance(usage, dict) else self.found

    def cost_event(self, model: dict[str, Any], currency: str) -> bytes:
        prompt, completion = int(self.found.get("prompt_tokens", 0)), int(self.found.get("completion_tokens", 0))
        cost = (prompt * Decimal(model.get("input_price_per_million", "0"))
                + completion * Decimal(model.get("output_price_per_million", "0"))) / MILLION
        event = {"meterway_cost": f"{cost.normalize():f}", "currency": currency, "prompt_tokens": prompt,
                 "completion_tokens": completion}
        return f"data: {json.dumps(event)}\n\n".encode()


@post("/models/upload", status_code=201, request_max_body_size=None)
async def upload_adapter(request: Request[Any, Any, Any], console: Console) -> Response[Any]:
    """The browser's multipart form, streamed on to ``POST /v1/fine_tuned_models`` as it arrives."""
    session = console.checked(request)
    headers = {"content-type": request.headers.get("content-type", "")}
    if "content-length" in request.headers:
        headers["content-length"] = request.headers["content-length"]
    try:
        async with console.gateway.for_session(request, session) as client:
            created = await client.request("POST", "/v1/fine_tuned_models", content=request.stream(),
                                           headers=headers)
    except APIError as exc:
        return Response({"error": {"message": exc.message}}, status_code=exc.status_code)
    return Response(created, status_code=201)


@get("/batches/{batch_id:str}/results")
async def batch_results(batch_id: str, request: Request[Any, Any, Any], console: Console) -> Response[Any]:
    """A batch's output file (JSONL), from the files API."""
    session = console.session(request)
    async with console.gateway.for_session(request, session) as client:
        batch = await client.request("GET", f"/v1/batches/{batch_id}")
        file_id = batch.get("output_file_id")
        if not file_id:
            return Response("no results yet", status_code=404, media_type="text/plain")
        content = await client.request("GET", f"/v1/files/{file_id}/content")
    text = content if isinstance(content, str) else json.dumps(content)
    return Response(text, media_type="application/jsonl",
                    headers={"content-disposition": f'attachment; filename="{batch_id}.jsonl"'})


stream_handlers = [chat, upload_adapter, batch_results]
