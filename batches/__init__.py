"""Batch jobs (OpenAI's Batch API): durable state, leased work, exactly-once lines (``batches.service``)."""
