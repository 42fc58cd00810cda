"""``meterway models ...``: upload, list and delete fine-tuned models through the server's REST API.

Client-side commands: they talk to ``METERWAY_URL`` with ``METERWAY_API_KEY``. ``upload`` shows a progress
bar and resumes a broken upload (in the same run, and in a later run of the same command).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.cli_client import client, print_json

if TYPE_CHECKING:
    import argparse


def add_model_commands(commands: Any) -> None:
    """Register ``models upload|list|get|delete`` on the ``meterway`` parser's subcommands."""
    models = commands.add_parser("models", help="fine-tuned models (through the server)").add_subparsers(
        title="models"
    )
    upload = models.add_parser("upload", help="upload a PEFT LoRA adapter or full weights (dir or archive)")
    upload.add_argument("path", type=Path)
    upload.add_argument("--base", required=True, help="catalog model the fine-tune is made from")
    upload.add_argument("--name", required=True, help="your name for it: ft:<base>:<tenant>:<name>")
    upload.add_argument(
        "--kind", choices=["lora", "full"], help="default: lora if adapter_config.json is there"
    )
    upload.add_argument("--input-price", help="decimal price per 1M input tokens (default: the base's)")
    upload.add_argument("--output-price", help="decimal price per 1M output tokens (default: the base's)")
    upload.add_argument("--tenant", help="owner tenant (admin key only)")
    upload.add_argument("--chunk-mb", type=int, default=8, help="bytes per request, in MiB")
    upload.set_defaults(run=_upload)
    listing = models.add_parser("list", help="list your fine-tuned models")
    listing.set_defaults(run=lambda a: print_json(client().get("/v1/fine_tuned_models")))
    get = models.add_parser("get", help="show one fine-tuned model")
    get.add_argument("model")
    get.set_defaults(run=lambda a: print_json(client().fine_tunes.get(a.model)))
    remove = models.add_parser("delete", help="delete a fine-tuned model")
    remove.add_argument("model")
    remove.set_defaults(run=lambda a: print_json(client().fine_tunes.delete(a.model)))


def _upload(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    if not args.path.exists():
        raise SystemExit(f"meterway: {args.path} does not exist")
    with tqdm(unit="B", unit_scale=True, unit_divisor=1024, desc=f"upload {args.name}") as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        created = client().fine_tunes.upload(
            args.path, base=args.base, name=args.name, kind=args.kind, input_price=args.input_price,
            output_price=args.output_price, tenant=args.tenant, chunk_bytes=max(1, args.chunk_mb) * 1024 * 1024,
            progress=progress)
    print(json.dumps(created.raw, indent=2))
