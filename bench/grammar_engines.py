"""The per-engine adapters the grammar bench drives: llguidance, outlines-core and xgrammar behind one
``Engine`` interface, the engine-independent bitmask helpers (``apply_rows_eager``) and the JSON-Schema
feature-support check (``FEATURES``, ``feature_support``). The measurement loop, the CLI and the tables are
in ``bench.grammar_bench``.
"""

from __future__ import annotations

import json
from typing import Any

from models.runtime.token_text import byte_decoder


def _text(instance: Any) -> str:
    return json.dumps(instance)  # ", " and ": " separators, as chat models usually print JSON


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

    def fresh_compiler(self) -> None:
        """Start from an empty compiler cache, where the engine has one (xgrammar)."""

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
        decoder = byte_decoder()
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

