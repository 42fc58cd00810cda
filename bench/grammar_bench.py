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


def _obj(prop: dict, required: bool = True, **extra: Any) -> dict:
    schema = {"type": "object", "properties": {"v": prop}, **extra}
    if required:
        schema["required"] = ["v"]
    return schema


# feature -> (schema, valid instance, invalid instance); the last five are probes of rarely supported keywords
FEATURES: list[tuple[str, dict, Any, Any]] = [
    ("enum", _obj({"enum": ["celsius", "fahrenheit"]}), {"v": "celsius"}, {"v": "kelvin"}),
    ("const", _obj({"const": "v1"}), {"v": "v1"}, {"v": "v2"}),
    ("anyOf", _obj({"anyOf": [{"type": "integer"}, {"type": "string"}]}), {"v": "a"}, {"v": True}),
    ("oneOf", _obj({"oneOf": [{"type": "integer"}, {"type": "boolean"}]}), {"v": True}, {"v": "s"}),
    ("$ref/$defs", {"$defs": {"pt": {"type": "object", "properties": {"x": {"type": "integer"}},
                                     "required": ["x"]}},
                    "type": "object", "properties": {"v": {"$ref": "#/$defs/pt"}}, "required": ["v"]},
     {"v": {"x": 1}}, {"v": {"x": "a"}}),
    ("pattern", _obj({"type": "string", "pattern": "^[A-Z]{3}$"}), {"v": "ABC"}, {"v": "abcd"}),
    # JSON Schema patterns are searched, not anchored: "[0-9]{3}" matches "ab123cd"
    ("pattern, unanchored", _obj({"type": "string", "pattern": "[0-9]{3}"}), {"v": "ab123cd"}, {"v": "abcd"}),
    ("minLength/maxLength", _obj({"type": "string", "minLength": 2, "maxLength": 4}),
     {"v": "abc"}, {"v": "abcdefg"}),
    ("minimum/maximum", _obj({"type": "integer", "minimum": 1, "maximum": 10}), {"v": 5}, {"v": 42}),
    ("minItems/maxItems", _obj({"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 2}),
     {"v": [1, 2]}, {"v": [1, 2, 3]}),
    ("additionalProperties:false", _obj({"type": "integer"}, additionalProperties=False),
     {"v": 1}, {"v": 1, "w": 2}),
    ("format:date-time", _obj({"type": "string", "format": "date-time"}),
     {"v": "2026-12-06T22:31:51Z"}, {"v": "yesterday"}),
    ("probe: uniqueItems", _obj({"type": "array", "items": {"type": "integer"}, "uniqueItems": True}),
     {"v": [1, 2]}, {"v": [1, 1]}),
    ("probe: multipleOf", _obj({"type": "integer", "multipleOf": 5}), {"v": 10}, {"v": 7}),
    ("probe: not", _obj({"type": "integer", "not": {"const": 3}}), {"v": 4}, {"v": 3}),
    ("probe: if/then/else", _obj({"type": "integer", "if": {"minimum": 10}, "then": {"multipleOf": 2},
                                  "else": {"maximum": 5}}), {"v": 12}, {"v": 7}),
    ("probe: patternProperties", {"type": "object", "patternProperties": {"^x_[a-z]+$": {"type": "integer"}},
                                  "additionalProperties": False}, {"x_a": 1}, {"y": 1}),
]


def _text(instance: Any) -> str:
    return json.dumps(instance)  # ", " and ": " separators, as chat models usually print JSON


def _stats(samples_ns: list[int]) -> tuple[float, float]:
    """Mean and p99 in µs."""
    us = sorted(s / 1000 for s in samples_ns)
    return statistics.fmean(us), us[min(len(us) - 1, round(0.99 * (len(us) - 1)))]


def _short(error: BaseException | str, width: int = 90) -> str:
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


class Engine:
    """One engine's calls, in the shape the bench drives them. ``handle`` is the engine's compiled grammar."""

    name = ""
    package = ""
    cache_kind = ""

    def load(self) -> None:
        """Import the engine's modules (timed apart from the tokenizer preparation)."""

    def prepare(self, hf_tokenizer, eos: int, vocab_size: int) -> None: ...

    def compile(self, schema: dict) -> Any: ...

    def cached(self, schema: dict, handle: Any) -> Any:
        """The cheapest way to a fresh matcher's starting point for a schema compiled before."""
        raise NotImplementedError

    def matcher(self, handle: Any) -> Any: ...

    def reset(self, matcher: Any) -> None: ...

    def fill(self, matcher: Any, bitmask, row: int) -> None: ...

    def apply(self, logits, bitmask, row: int) -> None: ...

    def accept(self, matcher: Any, token: int) -> bool:
        raise NotImplementedError

    def finish(self, matcher: Any, eos: int) -> bool:
        """Accept EOS (where the engine takes it) and say whether the matcher terminated cleanly."""
        raise NotImplementedError

    def accepts(self, handle: Any, tokens: list[int], eos: int) -> bool:
        """Whether the whole token sequence, then EOS, is accepted by a fresh matcher."""
        matcher = self.matcher(handle)
        return all(self.accept(matcher, t) for t in tokens) and self.finish(matcher, eos)


class LLGuidance(Engine):
    name, package, cache_kind = "llguidance", "llguidance", "matcher.deep_copy()"

    def load(self):
        import llguidance
        import llguidance.hf
        import llguidance.torch  # its apply helper is @torch.compile'd: this imports torch._dynamo

        self.llg, self.torch_helpers = llguidance, llguidance.torch

    def prepare(self, hf_tokenizer, eos, vocab_size):
        self.tokenizer = self.llg.hf.from_tokenizer(hf_tokenizer, n_vocab=vocab_size, eos_token=eos)

    def compile(self, schema):
        grammar = self.llg.LLMatcher.grammar_from_json_schema(schema)
        matcher = self.llg.LLMatcher(self.tokenizer, grammar, log_level=0)
        if matcher.is_error():  # the constructor never raises: errors leave the matcher in an error state
            raise ValueError(f"LLMatcher.get_error() = {matcher.get_error()}")
        return matcher

    def cached(self, schema, handle):
        return handle.deep_copy()

    def matcher(self, handle):
        return handle.deep_copy()

    def reset(self, matcher):
        matcher.reset()

    def fill(self, matcher, bitmask, row):
        self.torch_helpers.fill_next_token_bitmask(matcher, bitmask, row)

    def apply(self, logits, bitmask, row):
        self.torch_helpers.apply_token_bitmask_inplace(logits[row:row + 1], bitmask[row:row + 1])

    def accept(self, matcher, token):
        return matcher.consume_token(token)

    def finish(self, matcher, eos):
        return matcher.is_accepting() and matcher.consume_token(eos) and matcher.is_stopped() \
            and not matcher.is_error()


class OutlinesCore(Engine):
    name, package, cache_kind = "outlines-core", "outlines_core", "Guide(kept Index)"

    def load(self):
        import outlines_core
        import outlines_core.kernels.torch

        self.oc, self.torch_helpers = outlines_core, outlines_core.kernels.torch

    def prepare(self, hf_tokenizer, eos, vocab_size):
        # Vocabulary.from_pretrained needs the Hub; build it from the tokenizer: byte-level BPE tokens back to
        # their bytes, special tokens left out (EOS must not be in the map).
        decoder = {c: b for b, c in _bytes_to_unicode().items()}
        special = set(hf_tokenizer.all_special_ids) | set(hf_tokenizer.added_tokens_decoder)
        tokens: dict[bytes, list[int]] = {}
        for text, token_id in hf_tokenizer.get_vocab().items():
            if token_id not in special:
                tokens.setdefault(bytes(decoder[c] for c in text), []).append(token_id)
        self.vocabulary = self.oc.Vocabulary(eos, tokens)

    def compile(self, schema):
        regex = self.oc.json_schema.build_regex_from_schema(json.dumps(schema))
        return self.oc.Index(regex, self.vocabulary)

    def cached(self, schema, handle):
        return self.oc.Guide(handle)

    def matcher(self, handle):
        return self.oc.Guide(handle)

    def reset(self, matcher):
        matcher.reset()

    def fill(self, matcher, bitmask, row):
        # kernels.torch.fill_next_token_bitmask only takes a [1, words] mask: write into the row directly
        view = bitmask[row]
        matcher.write_mask_into(view.data_ptr(), view.numel(), view.element_size())

    def apply(self, logits, bitmask, row):
        self.torch_helpers.apply_token_bitmask_inplace(logits[row:row + 1], bitmask[row:row + 1])

    def accept(self, matcher, token):
        try:
            matcher.advance(token, return_tokens=False)
        except ValueError:
            return False
        return True

    def finish(self, matcher, eos):
        # A final state lists EOS as allowed, but advance(EOS) raises: termination is is_finished()
        return matcher.is_finished() and eos in matcher.get_tokens()


class XGrammar(Engine):
    name, package, cache_kind = "xgrammar", "xgrammar", "GrammarCompiler cache"

    def load(self):
        import xgrammar

        self.xgr = xgrammar

    def prepare(self, hf_tokenizer, eos, vocab_size):
        self.info = self.xgr.TokenizerInfo.from_huggingface(hf_tokenizer, vocab_size=vocab_size,
                                                            stop_token_ids=[eos])
        self.compiler = self.xgr.GrammarCompiler(self.info, max_threads=2)

    def fresh_compiler(self) -> None:
        self.compiler = self.xgr.GrammarCompiler(self.info, max_threads=2)

    def compile(self, schema):
        # strict_mode (default True) forbids properties a schema does not list; {"type": "object"} (no
        # properties) still allows any object, checked by the json_object instance below
        return self.compiler.compile_json_schema(schema)

    def cached(self, schema, handle):
        return self.compile(schema)

    def matcher(self, handle):
        return self.xgr.GrammarMatcher(handle)

    def reset(self, matcher):
        matcher.reset()

    def fill(self, matcher, bitmask, row):
        matcher.fill_next_token_bitmask(bitmask, row)

    def apply(self, logits, bitmask, row):
        self.xgr.apply_token_bitmask_inplace(logits, bitmask, indices=[row])

    def accept(self, matcher, token):
        return matcher.accept_token(token)

    def finish(self, matcher, eos):
        return matcher.accept_token(eos) and matcher.is_terminated()


ENGINES: list[type[Engine]] = [LLGuidance, OutlinesCore, XGrammar]


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte <-> printable character table that byte-level BPE vocabularies are written in."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars), strict=True))


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


_SHIFTS: dict[str, Any] = {}


def apply_rows_eager(logits, bitmask, rows: list[int]) -> None:
    """Engine-independent apply (all three write the same layout: bit t % 32 of int32 word t // 32 allows
    token t): set the disallowed logits of ``rows`` to -inf, in place, with plain torch (no torch.compile)."""
    import torch

    shifts = _SHIFTS.get("shifts")
    if shifts is None:
        shifts = _SHIFTS["shifts"] = torch.arange(32, dtype=torch.int32)
    vocab = logits.shape[1]
    if len(rows) == 1:
        allowed = ((bitmask[rows[0]].unsqueeze(-1) >> shifts) & 1).view(-1)[:vocab].bool()
        logits[rows[0]].masked_fill_(~allowed, float("-inf"))
        return
    index = torch.tensor(rows)
    allowed = ((bitmask[index].unsqueeze(-1) >> shifts) & 1).view(len(rows), -1)[:, :vocab].bool()
    logits[index] = logits[index].masked_fill(~allowed, float("-inf"))


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
        row: dict[str, Any] = {}
        schemas[name] = row
        tokens = hf_tokenizer(_text(instance), add_special_tokens=False)["input_ids"]
        colds: list[float] = []
        handle = None
        try:
            budget = time.perf_counter() + 20.0  # a slow compile is timed fewer times
            for attempt in range(repeats):
                if isinstance(engine, XGrammar):
                    engine.fresh_compiler()  # an empty compiler cache
                seconds, handle = _timed(lambda schema=schema: engine.compile(schema))
                colds.append(seconds)
                if attempt and time.perf_counter() > budget:
                    break
        except Exception as error:  # an engine refusing a benchmark schema is a result, not a crash
            row["error"] = _short(error)
            continue
        row["cold_ms"] = statistics.median(colds) * 1000
        row["cold_first_ms"] = colds[0] * 1000
        row["cold_runs"] = len(colds)
        cached = [_timed(lambda schema=schema, handle=handle: engine.cached(schema, handle))[0]
                  for _ in range(20)]
        row["cached_ms"] = statistics.median(cached) * 1000
        row["matcher_ms"] = statistics.median(
            [_timed(lambda handle=handle: engine.matcher(handle))[0] for _ in range(20)]) * 1000
        # cold pass: a matcher of a fresh compile (llguidance builds its lexer lazily, on the first masks)
        if isinstance(engine, XGrammar):
            engine.fresh_compiler()
        matcher = engine.matcher(engine.compile(schema))
        violations, rejected, terminated, fills = drive(engine, matcher, tokens, eos, bitmask, logits, None)
        drive_record = Drive(tokens=len(tokens), first_fill_us=fills[0] / 1000 if fills else 0.0,
                             cold_fill_mean_us=statistics.fmean(fills) / 1000 if fills else 0.0)
        for _ in range(passes):
            matcher = engine.matcher(handle)
            v, r, t, _ = drive(engine, matcher, tokens, eos, bitmask, logits, drive_record)
            violations, rejected, terminated = max(violations, v), max(rejected, r), terminated and t
        drive_record.violations, drive_record.rejected, drive_record.terminated = violations, rejected, terminated
        row["drive"] = drive_record
    result["schemas"] = schemas
    if features:
        result["features"] = feature_support(engine, hf_tokenizer, eos)
    return result


def feature_support(engine: Engine, hf_tokenizer, eos: int) -> dict[str, str]:
    """Per feature: 'enforced', 'IGNORED' (compiles, the invalid instance passes), 'raises: …', or worse."""
    verdicts: dict[str, str] = {}
    for name, schema, valid, invalid in FEATURES:
        try:
            handle = engine.compile(schema)
        except Exception as error:
            verdicts[name] = "raises: " + _short(error, 70)
            continue
        encode = lambda value: hf_tokenizer(_text(value), add_special_tokens=False)["input_ids"]  # noqa: E731
        ok_valid = engine.accepts(handle, encode(valid), eos)
        ok_invalid = engine.accepts(handle, encode(invalid), eos)
        if ok_valid and not ok_invalid:
            verdicts[name] = "enforced"
        elif ok_valid:
            verdicts[name] = "IGNORED (invalid instance accepted)"
        else:
            verdicts[name] = "valid instance REJECTED" + (" (invalid too: over-restricts)" if not ok_invalid
                                                          else " (and the invalid one accepted)")
        if isinstance(engine, LLGuidance) and handle.get_grammar_warnings():
            verdicts[name] += " [warning: " + _short("; ".join(handle.get_grammar_warnings()), 60) + "]"
    return verdicts


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
