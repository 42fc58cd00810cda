"""The reliability and security battery, rows 1-18 of ``../shared/brief/targets.md``, as one command.

    python -m bench.battery            # every row at full scale, a table of figures and pass marks
    python -m bench.battery --write    # the same, and the results into docs/reliability.md
    python -m bench.battery --suite    # at the suite's (smaller) scale

Each row is one or more tests marked ``battery(n)`` (``tests/battery.py``); this runs exactly those with
``METERWAY_TEST_BATTERY_SCALE=full`` and reads back each test's outcome and recorded figures. The services a
row stops under load (PostgreSQL, NATS) are private instances the tests start on their own ports
(``tests/private_services.py``), never the machine's shared ones. Rows whose capability has not landed yet
are listed with the issue that brings them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "reliability.md"

ROWS: dict[int, tuple[str, str]] = {
    1: ("Ledger conservation",
         "Σ ledger tokens == Σ usage returned (abandoned: tokens generated); one entry per request id"),
    2: ("Limits across replicas",
         "admitted ≤ limit in every key-window; ≥ 90% admitted; every 429 has Retry-After and x-ratelimit-*"),
    3: ("Budget race", "≤ 10 admitted; spend ≤ budget"),
    4: ("Client disconnects mid-stream", "billed tokens == generated; concurrency slots released"),
    5: ("Worker kill -9 mid-stream", "stream ends with an error event; next request served; no double charge"),
    6: ("Ledger consumer killed repeatedly", "0 lost, 0 duplicated events"),
    7: ("Database or bus unreachable under load", "no request served unbilled; backlog drains afterwards"),
    8: ("Stripe export replayed after a crash", "Stripe total == ledger total; identifiers unique"),
    9: ("Schema-driven fuzzing (schemathesis)", "no 5xx; responses match the schema; no route ignores auth"),
    10: ("Tenant isolation", "another tenant's object is a 404, always; admin routes 403 to tenant keys"),
    11: ("Key hygiene", "no plaintext key in database, logs or errors; revoked key refused"),
    12: ("Malicious uploads", "all refused with a clear 4xx; nothing written outside a temporary area"),
    13: ("Unbounded input", "refused before the model runs; other tenants unaffected"),
    14: ("Usage equals tokenizer", "counts identical; exactly one usage chunk"),
    15: ("Server killed mid-batch, restarted", "every line answered exactly once; billed == answered"),
    16: ("Mirror deployment killed or overloaded",
         "no primary request fails or slows past goal 7; mirrored tokens never billed"),
    17: ("Token attacks", "all 401; none reaches a model or a ledger"),
    18: ("Traffic and limits changed from two replicas",
         "traffic always sums to 100; no request routed to a deleted deployment"),
}
PENDING: dict[int, str] = {}  # rows whose capability has not landed yet: row -> the issue that brings it


def run_battery(full: bool, extra: list[str]) -> tuple[list[dict[str, Any]], int, float]:
    """Run the marked tests; their JSON lines, pytest's exit code and the wall time."""
    with tempfile.NamedTemporaryFile("r", suffix=".jsonl", delete=False) as out:
        path = Path(out.name)
    env = {**os.environ, "METERWAY_TEST_BATTERY_OUT": str(path)}
    if full:
        env["METERWAY_TEST_BATTERY_SCALE"] = "full"
    started = time.monotonic()
    code = subprocess.call([sys.executable, "-m", "pytest", "-q", "-m", "battery", "-p", "no:cacheprovider",
                            *extra], cwd=REPO, env=env)
    elapsed = time.monotonic() - started
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    path.unlink()
    return lines, code, elapsed


def summarise(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One result per row: tests passed / run, the figures each test recorded, and the verdict."""
    outcomes: dict[int, list[str]] = defaultdict(list)
    figures: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for line in lines:
        if "outcome" in line:
            outcomes[line["row"]].append(line["outcome"])
        else:
            figures[line["row"]].append({"test": line["test"].split("::")[-1], **line["figures"]})
    rows = []
    for number, (title, mark) in ROWS.items():
        results = outcomes.get(number, [])
        if number in PENDING and not results:
            verdict = f"not yet: {PENDING[number]}"
        elif not results:
            verdict = "NOT RUN"
        else:
            verdict = "pass" if all(r == "passed" for r in results) else "FAIL"
        rows.append({"row": number, "title": title, "mark": mark, "verdict": verdict,
                     "tests": f"{results.count('passed')}/{len(results)}", "figures": figures.get(number, [])})
    return rows


def _figure_text(figures: list[dict[str, Any]]) -> str:
    parts = []
    for entry in figures:
        numbers = ", ".join(f"{k} {v}" for k, v in entry.items() if k != "test")
        parts.append(f"{entry['test']}: {numbers}")
    return "; ".join(parts) or "(pass/fail only)"


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| # | Row | Tests passed | Figures | Pass mark | Verdict |", "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['row']} | {row['title']} | {row['tests']} | {_figure_text(row['figures'])} | "
                     f"{row['mark']} | {row['verdict']} |")
    return "\n".join(lines)


def _pending() -> str:
    if not PENDING:
        return ""
    rows = " and ".join(str(n) for n in sorted(PENDING))
    return f" Rows\n{rows} test capabilities that have not landed yet and are listed with the issue that brings them."


def write_doc(rows: list[dict[str, Any]], command: str, elapsed: float, code: int) -> None:
    moment = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    DOC.write_text(f"""# Reliability and security battery: latest run

Produced by `{command}` on {moment}: this machine (2 cores, 24 GB, no GPU), {elapsed / 60:.1f} minutes,
pytest exit code {code}. Each row is one or more tests marked `battery(n)` (`tests/battery.py`); `make test`
runs the same tests at a smaller scale, this command at full scale (`METERWAY_TEST_BATTERY_SCALE=full`:
6,000 requests for row 1, 10,000 events and 8 consumer kills for row 6, one-minute outages for row 7).
Row 7 stops a private PostgreSQL (`initdb` / `pg_ctl`) and a private `nats-server -js`, each on its own port
(`tests/private_services.py`), under HTTP load; the machine's shared services are never touched.{_pending()}

{table(rows)}

## What the battery found

- Row 7, first run: one request in ~9,400 was served and never billed. When NATS went away, the bus closed
  its broken connection, and the NATS client cancelled the futures of the other publishes still in flight. Their
  `CancelledError` was not one of the failures `Meter.record` expected. It escaped, and the stream's finishing
  task died without a log line. Now any failure of a publish spools the event; only a cancellation of the
  recording task itself passes through (`tests/billing/test_meter_failures.py`). A failing finish task is
  logged as `generation_finish_failed`.
- Row 7: with the database unreachable, a key that is not in the gateway's cache got a 500. It is now a
  retryable 503 `service_unavailable` with `Retry-After`, documented on every route.
""")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.battery", description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help=f"write the results to {DOC.relative_to(REPO)}")
    parser.add_argument("--suite", action="store_true", help="run at the suite's scale instead of full scale")
    args, extra = parser.parse_known_args(argv)
    lines, code, elapsed = run_battery(not args.suite, extra)
    rows = summarise(lines)
    print(table(rows))
    if args.write:
        command = "python -m bench.battery --write" + (" --suite" if args.suite else "")
        write_doc(rows, command, elapsed, code)
    failed = [row["row"] for row in rows if row["verdict"] in ("FAIL", "NOT RUN")]
    print(f"\n{len(rows) - len(failed) - len(PENDING)} rows pass, {len(failed)} fail or did not run "
          f"{failed or ''}, {len(PENDING)} wait for their issues; {elapsed / 60:.1f} min")
    return 1 if failed or code not in (0,) else 0


if __name__ == "__main__":
    sys.exit(main())
