"""Constrained decoding for JSON Schema: llguidance vs outlines-core vs xgrammar on SmolLM2's tokenizer, CPU.

For each installed engine it measures

1. the one-time tokenizer/vocabulary preparation;
2. grammar compile time for a typical tool schema (``get_weather``), a nested order schema and the generic
   ``json_object`` (any JSON object): cold (median of ``--repeats`` fresh compiles) and cached (the
   engine's own compiler cache where it has one, else what a dict cache of its compiled object costs:
   a copy of a template matcher, or a new guide on a kept index);
3. per-token mask time, driving a matcher through a valid instance of each schema token by token (the
   instance tokenized with the HF tokenizer): fill the next-token bitmask into one row of an [8, words]
   batch bitmask, apply it to that row of an [8, vocab] float32 logits tensor with the engine's own
   helper, and to the next row with an engine-independent eager torch apply (``apply_rows_eager``; the two
   must agree), check the instance's token is allowed, accept it; at the end, that EOS is allowed and the
   matcher terminates. Fill/apply are mean and p99 µs over ``--passes`` warm passes (the first, cold
   pass is reported apart: llguidance builds its lexer lazily, xgrammar precomputes at compile time).
   Applying rows 1, 3, 6 at once (eager, and xgrammar's ``indices=`` kernel) is timed apart;
4. JSON-Schema feature support: each feature's schema is compiled, then a valid and an invalid instance
   are fed through a matcher, so that a keyword that compiles but is silently ignored shows up.

Run::

    .venv/bin/python -m bench.grammar_bench [--store /tmp/gstore] [--model smollm2-135m-instruct]
        [--engines llguidance,outlines-core,xgrammar] [--repeats 3] [--passes 10] [--no-features]

Install the engines with ``.venv/bin/pip install --no-deps llguidance outlines-core xgrammar
apache-tvm-ffi`` (xgrammar's wheel declares triton; --no-deps keeps it out). An engine that is not
installed is reported as such. Results: docs/grammar-engines.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.grammar_engines import ENGINES, FEATURES, Engine, _short, _text, apply_rows_eager, feature_support

BATCH = 8
ROW = 3  # the batch row every fill/apply goes to

TOOL_SCHEMA = {
    "type": "object",
    "properties": {
        "location": {"type": "string", "description": "City and country, e.g. Paris, France"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer"},
    },
    "required": ["location"],
}

NESTED_SCHEMA = {
    "type": "object",
    "properties": {
        "order_id": {"type": "string"},
        "customer": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "email": {"type": "string"}, "vip": {"type": "boolean"}},
            "required": ["name", "vip"],
        },
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "sku": {"type": "string"},
                    "qty": {"type": "integer"},
                    "price": {"type": "number"},
                    "size": {"type": "string", "enum": ["S", "M", "L", "XL"]},
                    "gift": {"type": "boolean"},
                },
                "required": ["sku", "qty", "price"],
            },
        },
        "status": {"type": "string", "enum": ["pending", "paid", "shipped", "cancelled"]},
        "total": {"type": "number"},
        "express": {"type": "boolean"},
    },
    "required": ["order_id", "customer", "items", "status", "total"],
}

JSON_OBJECT_SCHEMA = {"type": "object"}

# name -> (schema, a valid instance in the schema's property order, as a model would print it)
SCHEMAS: dict[str, tuple[dict, Any]] = {
    "tool": (TOOL_SCHEMA, {"location": "Paris, France", "unit": "celsius", "days": 3}),
    "nested": (NESTED_SCHEMA, {
        "order_id": "A-1029",
        "customer": {"name": "Ada Lovelace", "email": "ada@example.com", "vip": True},
        "items": [{"sku": "TSHIRT-01", "qty": 2, "price": 19.99, "size": "M", "gift": False},
                  {"sku": "MUG-7", "qty": 1, "price": 8.5}],
        "status": "paid", "total": 48.48, "express": False}),
    "json_object": (JSON_OBJECT_SCHEMA, {
        "name": "Ada", "tags": ["math", "poetry"], "age": 36, "score": 9.5, "active": True,
        "address": {"city": "London", "zip": None}}),
}


def _stats(samples_ns: list[int]) -> tuple[float, float]:
    """Mean and p99 in µs."""
    us = sorted(s / 1000 for s in samples_ns)
    return statistics.fmean(us), us[min(len(us) - 1, round(0.99 * (len(us) - 1)))]


@dataclass
class Drive:
    tokens: int = 0
    violations: int = 0
    rejected: int = 0
    terminated: bool = False
    first_fill_us: float = 0.0
    cold_fill_mean_us: float = 0.0
    fill_ns: list[int] = field(default_factory=list)
    apply_ns: list[int] = field(default_factory=list)
    eager_ns: list[int] = field(default_factory=list)


def _allowed(bitmask, row: int, token: int) -> bool:
    return bool((int(bitmask[row, token // 32]) >> (token % 32)) & 1)


def drive(engine: Engine, matcher: Any, tokens: list[int], eos: int, bitmask, logits, record: Drive | None,
          ) -> tuple[int, int, bool, list[int]]:
    """One pass over ``tokens``: fill, apply, check, accept. Returns violations, rejections, terminated, fills."""
    import torch

    violations = rejected = 0
    fills: list[int] = []
    neg_inf = float("-inf")
    for token in tokens:
        logits[ROW].zero_()
        logits[ROW + 1].zero_()
        started = time.perf_counter_ns()
        engine.fill(matcher, bitmask, ROW)
        filled = time.perf_counter_ns()
        engine.apply(logits, bitmask, ROW)
        applied = time.perf_counter_ns()
        bitmask[ROW + 1] = bitmask[ROW]
        eager_started = time.perf_counter_ns()
        apply_rows_eager(logits, bitmask, [ROW + 1])
        eager_done = time.perf_counter_ns()
        fills.append(filled - started)
        if record is not None:
            record.fill_ns.append(filled - started)
            record.apply_ns.append(applied - filled)
            record.eager_ns.append(eager_done - eager_started)
        if not _allowed(bitmask, ROW, token) or logits[ROW, token].item() == neg_inf \
                or logits[ROW + 1, token].item() == neg_inf:
            violations += 1
        if not torch.equal(logits[ROW], logits[ROW + 1]):  # the engine's helper and ours must agree
            violations += 1
        if not engine.accept(matcher, token):
            rejected += 1
            break
    engine.fill(matcher, bitmask, ROW)
    eos_allowed = _allowed(bitmask, ROW, eos)
    terminated = eos_allowed and engine.finish(matcher, eos)
    return violations, rejected, terminated, fills


def _timed(call) -> tuple[float, Any]:
    started = time.perf_counter()
    value = call()
    return time.perf_counter() - started, value


def bench_engine(engine: Engine, hf_tokenizer, eos: int, vocab_size: int, repeats: int, passes: int,
                 features: bool) -> dict[str, Any]:
    import torch

    result: dict[str, Any] = {"version": metadata.version(engine.package.replace("_", "-"))}
    try:
        result["import_s"], _ = _timed(engine.load)
    except ImportError as error:  # installed, but a dependency left out by --no-deps is missing
        return {"missing": f"import failed: {_short(error, 60)}"}
    result["prepare_s"], _ = _timed(lambda: engine.prepare(hf_tokenizer, eos, vocab_size))
    bitmask = torch.full((BATCH, (vocab_size + 31) // 32), -1, dtype=torch.int32)
    logits = torch.zeros(BATCH, vocab_size, dtype=torch.float32)
    # The apply helpers of llguidance and outlines-core are torch.compile'd: the first call compiles (inductor)
    result["apply_warmup_s"], _ = _timed(lambda: engine.apply(logits, bitmask, ROW))
    schemas: dict[str, Any] = {}
    for name, (schema, instance) in SCHEMAS.items():
        tokens = hf_tokenizer(_text(instance), add_special_tokens=False)["input_ids"]
        schemas[name] = _bench_schema(engine, schema, tokens, eos, bitmask, logits, repeats, passes)
    result["schemas"] = schemas
    if features:
        result["features"] = feature_support(engine, hf_tokenizer, eos)
    return result


def _bench_schema(engine: Engine, schema: dict, tokens: list[int], eos: int, bitmask, logits, repeats: int,
                  passes: int) -> dict[str, Any]:
    """One schema's compile, cache and matcher times and its drive; ``{"error": …}`` if it does not compile."""
    try:
        colds, handle = _cold_compiles(engine, schema, repeats)
    except Exception as error:  # an engine refusing a benchmark schema is a result, not a crash
        return {"error": _short(error)}
    row: dict[str, Any] = {"cold_ms": statistics.median(colds) * 1000, "cold_first_ms": colds[0] * 1000,
                           "cold_runs": len(colds)}
    cached = [_timed(lambda: engine.cached(schema, handle))[0] for _ in range(20)]
    row["cached_ms"] = statistics.median(cached) * 1000
    row["matcher_ms"] = statistics.median([_timed(lambda: engine.matcher(handle))[0] for _ in range(20)]) * 1000
    row["drive"] = _drive_passes(engine, schema, handle, tokens, eos, bitmask, logits, passes)
    return row


def _cold_compiles(engine: Engine, schema: dict, repeats: int) -> tuple[list[float], Any]:
    """Up to ``repeats`` fresh compiles (fewer for a slow one): their seconds, and the last compiled handle."""
    colds: list[float] = []
    handle = None
    budget = time.perf_counter() + 20.0  # a slow compile is timed fewer times
    for attempt in range(repeats):
        engine.fresh_compiler()  # an empty compiler cache
        seconds, handle = _timed(lambda: engine.compile(schema))
        colds.append(seconds)
        if attempt and time.perf_counter() > budget:
            break
    return colds, handle


def _drive_passes(engine: Engine, schema: dict, handle: Any, tokens: list[int], eos: int, bitmask, logits,
                  passes: int) -> Drive:
    """A cold pass, then ``passes`` warm ones over the instance's tokens; the warm ones' timings are recorded."""
    # cold pass: a matcher of a fresh compile (llguidance builds its lexer lazily, on the first masks)
    engine.fresh_compiler()
    matcher = engine.matcher(engine.compile(schema))
    violations, rejected, terminated, fills = drive(engine, matcher, tokens, eos, bitmask, logits, None)
    record = Drive(tokens=len(tokens), first_fill_us=fills[0] / 1000 if fills else 0.0,
                   cold_fill_mean_us=statistics.fmean(fills) / 1000 if fills else 0.0)
    for _ in range(passes):
        matcher = engine.matcher(handle)
        v, r, t, _ = drive(engine, matcher, tokens, eos, bitmask, logits, record)
        violations, rejected, terminated = max(violations, v), max(rejected, r), terminated and t
    record.violations, record.rejected, record.terminated = violations, rejected, terminated
    return record


SUBSET = [1, 3, 6]


def subset_apply_us(vocab_size: int, repeats: int = 200) -> dict[str, tuple[float, float]]:
    """Applying rows 1, 3 and 6 of a batch bitmask to an [8, vocab] logits tensor at once, µs mean/p99: our
    eager apply, and xgrammar's CPU kernel (``indices=``) where installed (it takes any engine's bitmask)."""
    import torch

    bitmask = torch.zeros((BATCH, (vocab_size + 31) // 32), dtype=torch.int32)
    bitmask[:, ::64] = 0x0F0F0F0F  # a few allowed tokens, as in most JSON states
    logits = torch.zeros(BATCH, vocab_size)
    appliers = {"eager torch": lambda: apply_rows_eager(logits, bitmask, SUBSET)}
    try:
        import xgrammar

        appliers["xgrammar kernel"] = lambda: xgrammar.apply_token_bitmask_inplace(logits, bitmask, indices=SUBSET)
    except ImportError:
        pass
    figures = {}
    for name, apply in appliers.items():
        samples = []
        for _ in range(repeats):
            logits.zero_()
            started = time.perf_counter_ns()
            apply()
            samples.append(time.perf_counter_ns() - started)
        figures[name] = _stats(samples[10:])
    return figures


def print_report(results: dict[str, dict[str, Any]], subset: dict[str, tuple[float, float]]) -> None:
    _print_preparation(results)
    _print_schemas(results)
    for name, (mean, p99) in subset.items():
        print(f"apply rows {SUBSET} of [8, vocab] at once, {name}: {mean:.1f}/{p99:.1f} us mean/p99")
    _print_features(results)


def _print_preparation(results: dict[str, dict[str, Any]]) -> None:
    print("\n## Preparation (one time per tokenizer)")
    print(f"{'engine':<14} {'version':<14} {'import':>9} {'tokenizer prep':>15} {'apply helper 1st call':>22}")
    for name, result in results.items():
        if "missing" in result:
            print(f"{name:<14} {result['missing']}")
            continue
        print(f"{name:<14} {result['version']:<14} {result['import_s'] * 1000:>6.0f} ms "
              f"{result['prepare_s'] * 1000:>12.0f} ms "
              f"{result['apply_warmup_s'] * 1000:>19.1f} ms")


def _print_schemas(results: dict[str, dict[str, Any]]) -> None:
    print("\n## Compile and per-token mask (fill into row, apply to row of [8, vocab] float32 logits)")
    header = (f"{'engine':<14} {'schema':<12} {'cold ms':>9} {'cached ms':>10} {'matcher ms':>10} "
              f"{'1st fill us':>11} {'fill mean/p99 us':>17} {'apply mean/p99 us':>18} {'eager apply':>14} "
              f"{'tok':>4} {'viol':>4} {'EOS+end':>7}")
    print(header)
    for name, result in results.items():
        if "missing" in result:
            continue
        for schema, row in result["schemas"].items():
            if "error" in row:
                print(f"{name:<14} {schema:<12} error: {row['error']}")
                continue
            d: Drive = row["drive"]
            fill_mean, fill_p99 = _stats(d.fill_ns)
            apply_mean, apply_p99 = _stats(d.apply_ns)
            eager_mean, eager_p99 = _stats(d.eager_ns)
            end = "yes" if d.terminated else "NO"
            if d.rejected:
                end += " (rejected)"
            print(f"{name:<14} {schema:<12} {row['cold_ms']:>9.2f} {row['cached_ms']:>10.4f} "
                  f"{row['matcher_ms']:>10.4f} {d.first_fill_us:>11.0f} {fill_mean:>8.1f}/{fill_p99:<8.1f} "
                  f"{apply_mean:>9.1f}/{apply_p99:<8.1f} {eager_mean:>6.1f}/{eager_p99:<7.1f} "
                  f"{d.tokens:>4} {d.violations:>4} {end:>7}")
    print("cold = median of fresh compiles (first one apart below); cached = "
          + "; ".join(f"{n}: {r['cache_kind']}" for n, r in results.items() if "cache_kind" in r))
    for name, result in results.items():
        for schema, row in result.get("schemas", {}).items():
            if "drive" in row:
                print(f"  {name} {schema}: first cold compile {row['cold_first_ms']:.2f} ms "
                      f"({row['cold_runs']} runs); cold-pass fill mean {row['drive'].cold_fill_mean_us:.1f} us")


def _print_features(results: dict[str, dict[str, Any]]) -> None:
    feature_names = [f[0] for f in FEATURES]
    engines = [n for n, r in results.items() if "features" in r]
    if engines:
        print("\n## JSON-Schema features (compile, then a valid and an invalid instance through a matcher)")
        for feature in feature_names:
            print(f"{feature}")
            for name in engines:
                print(f"    {name:<14} {results[name]['features'][feature]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="/tmp/gstore", help="model store with the SmolLM2 import")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--engines", default=",".join(e.name for e in ENGINES))
    parser.add_argument("--repeats", type=int, default=3, help="cold compiles per schema (median)")
    parser.add_argument("--passes", type=int, default=10, help="warm passes over each instance")
    parser.add_argument("--no-features", action="store_true")
    args = parser.parse_args(argv)

    from transformers import AutoTokenizer

    from bench.machine import describe
    from bench.report import machine_lines

    print(machine_lines(describe()))
    directory = Path(args.store) / args.model
    hf_tokenizer = AutoTokenizer.from_pretrained(directory)
    eos = int(hf_tokenizer.convert_tokens_to_ids("<|im_end|>"))  # type: ignore[arg-type]
    vocab_size = json.loads((directory / "config.json").read_text())["vocab_size"]
    print(f"tokenizer: {directory} (vocab {vocab_size}, EOS <|im_end|> = {eos}); batch {BATCH}, row {ROW}")

    wanted = args.engines.split(",")
    results: dict[str, dict[str, Any]] = {}
    for engine_type in ENGINES:
        if engine_type.name not in wanted:
            continue
        try:
            metadata.version(engine_type.package.replace("_", "-"))
        except metadata.PackageNotFoundError:
            results[engine_type.name] = {"missing": "not installed"}
            continue
        engine = engine_type()
        print(f"benchmarking {engine.name} ...", flush=True)
        results[engine.name] = bench_engine(engine, hf_tokenizer, eos, vocab_size, args.repeats, args.passes,
                                            not args.no_features)
        if "missing" not in results[engine.name]:
            results[engine.name]["cache_kind"] = engine.cache_kind
    print_report(results, subset_apply_us(vocab_size))
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"\nload average at end {load} (a shared 2-core machine: a busy neighbour shows in the p99s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
