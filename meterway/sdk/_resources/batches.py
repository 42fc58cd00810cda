"""``client.batches``: batch jobs over JSONL files (OpenAI's Batch API)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from meterway.sdk._resources._base import Resource, body_of
from meterway.sdk._types import Batch

if TYPE_CHECKING:
    from meterway.sdk._pages import Pages


class Batches(Resource):
    """Create, list, read and cancel batch jobs."""

    def create(self, *, input_file_id: str, endpoint: str = "/v1/chat/completions",
               completion_window: str = "24h", metadata: dict[str, str] | None = None) -> Batch:
        """A job answering every line of the uploaded file ``input_file_id`` (purpose ``batch``)."""
        body = body_of(input_file_id=input_file_id, endpoint=endpoint, completion_window=completion_window,
                       metadata=metadata)
        return self._one(Batch, "POST", "/v1/batches", json=body)

    def list(self, *, limit: int | None = None, after: str | None = None) -> Pages[Batch]:
        """Every job, newest first (``limit`` per page)."""
        return self._pages(Batch, "/v1/batches", limit=limit, after=after)

    def get(self, batch_id: str) -> Batch:
        """One job, with its request counts and (when done) its output and error files."""
        return self._one(Batch, "GET", f"/v1/batches/{batch_id}")

    def cancel(self, batch_id: str) -> Batch:
        """Stop the job; the lines already answered stay in its output."""
        return self._one(Batch, "POST", f"/v1/batches/{batch_id}/cancel")
