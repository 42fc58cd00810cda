"""Incremental detokenization and stop strings, on the real SmolLM2 tokenizer."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from models.runtime.text import IncrementalDetokenizer, StopMatcher, TextStream

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(scope="module")
def raw_tokenizer(store_dir: Path):  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(store_dir / "smollm2-135m-instruct" / "tokenizer.json"))


TEXTS = ["Hello world", "café 😀 naïve", "日本語のテキスト", " leading space and\nnewline"]


@pytest.mark.parametrize("text", TEXTS)
def test_detokenizer_streams_the_exact_text_and_never_broken_characters(raw_tokenizer, text: str) -> None:  # type: ignore[no-untyped-def]
    ids = raw_tokenizer.encode(text, add_special_tokens=False).ids
    detok = IncrementalDetokenizer(raw_tokenizer, tuple(raw_tokenizer.encode("Say:").ids))
    pieces = [detok.push(i) for i in ids] + [detok.flush()]
    assert "".join(pieces) == text
    assert all("\ufffd" not in piece for piece in pieces)


def test_stop_matcher_holds_back_a_possible_start() -> None:
    stops = StopMatcher(("END",))
    assert stops.feed("abc E") == ("abc ", False)
    assert stops.feed("N") == ("", False)
    assert stops.feed("D and more") == ("", True)


def test_stop_matcher_releases_a_false_start() -> None:
    stops = StopMatcher(("END",))
    assert stops.feed("xE") == ("x", False)
    assert stops.feed("Nx") == ("ENx", False)
    assert stops.flush() == ""


def test_stop_matcher_picks_the_earliest_stop() -> None:
    stops = StopMatcher(("world", "lo"))
    assert stops.feed("hello world") == ("hel", True)


def test_text_stream_flushes_held_text_at_the_end(raw_tokenizer) -> None:  # type: ignore[no-untyped-def]
    stream = TextStream(raw_tokenizer, (), ("Hello!",))
    emitted = [stream.push(i)[0] for i in raw_tokenizer.encode("Say Hello", add_special_tokens=False).ids]
    tail, stopped = stream.finish()
    assert "".join(emitted) + tail == "Say Hello"
    assert not stopped
