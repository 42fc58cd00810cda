"""``meterway batch``: submit a JSONL file of requests as a batch job, watch it, cancel it, fetch its results.

    meterway batch submit requests.jsonl --endpoint /v1/chat/completions [--wait]
    meterway batch list | show ID | cancel ID | results ID -o out.jsonl [--errors]

Every command talks to the server at METERWAY_URL with METERWAY_API_KEY (the Files and Batch API, as the
openai SDK would); ``--wait`` shows a progress bar of answered lines until the job ends.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from service.cli_client import client, print_json

if TYPE_CHECKING:
    import argparse

    from meterway import Client
    from meterway.sdk import Batch

ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
FINISHED = ("completed", "failed", "expired", "cancelled")
POLL_S = 1.0


def add_batch_commands(commands: Any) -> None:
    """Register ``batch submit|list|show|cancel|results``."""
    verbs = commands.add_parser("batch", help="batch jobs over JSONL files (OpenAI's Batch API)").add_subparsers(
        title="batch")
    submit = verbs.add_parser("submit", help="upload a JSONL file and create a batch job from it")
    submit.add_argument("file", type=Path)
    submit.add_argument("--endpoint", choices=ENDPOINTS, default=ENDPOINTS[0])
    submit.add_argument("--wait", action="store_true", help="show progress until the job ends")
    submit.set_defaults(run=lambda a: _with(a, _submit))
    verbs.add_parser("list", help="your batch jobs, newest first").set_defaults(
        run=lambda a: _with(a, lambda http, _a: print_json(http.get("/v1/batches"))))
    for name, method, suffix in (("show", "GET", ""), ("cancel", "POST", "/cancel")):
        verb = verbs.add_parser(name, help=f"{name} one batch job")
        verb.add_argument("id")
        verb.set_defaults(run=lambda a, m=method, s=suffix: _with(
            a, lambda http, b: print_json(http.request(m, f"/v1/batches/{b.id}{s}"))))
    results = verbs.add_parser("results", help="download a finished job's output (or error) file")
    results.add_argument("id")
    results.add_argument("-o", "--output", type=Path, required=True)
    results.add_argument("--errors", action="store_true", help="the error file instead of the output")
    results.set_defaults(run=lambda a: _with(a, _results))


def _with(args: argparse.Namespace, action: Any) -> None:
    with client() as http:
        action(http, args)


def _submit(http: Client, args: argparse.Namespace) -> None:
    try:
        content = args.file.read_bytes()
    except OSError as exc:
        raise SystemExit(f"meterway: {args.file}: {exc}") from None
    uploaded = http.files.create(content, purpose="batch", filename=args.file.name)
    batch = http.batches.create(input_file_id=uploaded.id, endpoint=args.endpoint)
    print(f"batch {batch.id}: {batch.status} (file {uploaded.id})", file=sys.stderr)
    print_json(http.batches.get(batch.id) if not args.wait else _watch(http, batch.id))


def _watch(http: Client, batch_id: str) -> Batch:
    """Poll the job with a progress bar of answered lines; the job as it ended."""
    with tqdm(desc=batch_id, unit="line", file=sys.stderr) as bar:
        while True:
            batch = http.batches.get(batch_id)
            counts = batch.request_counts or {}
            bar.total = counts["total"] or None
            bar.n = counts["completed"] + counts["failed"]
            bar.set_postfix(status=batch.status, failed=counts["failed"])
            bar.refresh()
            if batch.status in FINISHED:
                return batch
            time.sleep(POLL_S)


def _results(http: Client, args: argparse.Namespace) -> None:
    batch = http.batches.get(args.id)
    field = "error_file_id" if args.errors else "output_file_id"
    if not batch[field]:
        raise SystemExit(f"meterway: batch {args.id} ({batch.status}) has no {field.removesuffix('_id')}")
    with http.stream("GET", f"/v1/files/{batch[field]}/content") as response, args.output.open("wb") as out:
        for chunk in response.iter_bytes():
            out.write(chunk)
    print(f"{args.output}: {field.removesuffix('_file_id')} of {args.id}", file=sys.stderr)
