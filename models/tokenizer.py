"""Gateway-side tokenization: chat templates and token counts without torch.

The gateway renders the model's own chat template and tokenizes with the model's ``tokenizer.json`` (the
Rust ``tokenizers`` library), exactly as ``transformers``' ``apply_chat_template`` does, so the prompt ids
the worker receives are the ones the model would have made itself. Counting before the pool lets the
gateway refuse an over-long prompt and reserve tokens before a model runs.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, Protocol

from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path


class PromptTokenizer(Protocol):
    """Turns requests into token ids for one model."""

    def encode(self, text: str) -> list[int]:
        """Token ids of plain text as the model sees it (special tokens as the model adds them)."""

    def encode_chat(self, messages: Sequence[dict[str, Any]], tools: list[dict[str, Any]] | None = None
                    ) -> list[int]:
        """Token ids of a conversation rendered with the model's chat template, ready for the reply;
        ``tools`` go to the template (only where ``takes_tools``)."""

    @property
    def takes_tools(self) -> bool:
        """Whether the chat template renders ``tools`` itself."""

    @property
    def vocab_size(self) -> int:
        """Token ids below this are valid."""


class HuggingFaceTokenizer:
    """A store model's ``tokenizer.json`` plus its chat template."""

    def __init__(self, model_dir: Path, *, add_special_tokens: bool) -> None:
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self._add_special = add_special_tokens
        self._template, self._takes_tools = _load_template(model_dir)
        self._special = _special_tokens(model_dir)

    @property
    def takes_tools(self) -> bool:
        return self._takes_tools

    @property
    def vocab_size(self) -> int:
        return int(self._tokenizer.get_vocab_size(with_added_tokens=True))

    def encode(self, text: str) -> list[int]:
        return list(self._tokenizer.encode(text, add_special_tokens=self._add_special).ids)

    def encode_chat(self, messages: Sequence[dict[str, Any]], tools: list[dict[str, Any]] | None = None
                    ) -> list[int]:
        if self._template is None:
            raise ValueError("this model has no chat template")
        extra = {"tools": tools} if tools else {}
        try:
            text = self._template.render(messages=list(messages), add_generation_prompt=True, **self._special,
                                         **extra)
        except TemplateError as exc:
            raise ValueError(f"the conversation does not fit the model's chat template: {exc}") from exc
        # transformers tokenizes a rendered template without adding special tokens again.
        return list(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: Sequence[int]) -> str:
        return str(self._tokenizer.decode(list(ids), skip_special_tokens=True))


class WordTokenizer:
    """The built-in test model's tokenizer: one token per whitespace-separated word."""

    takes_tools = False
    vocab_size = 1 << 16

    def encode(self, text: str) -> list[int]:
        return [len(word) for word in text.split()]

    def encode_chat(self, messages: Sequence[dict[str, Any]], tools: list[dict[str, Any]] | None = None
                    ) -> list[int]:
        return [len(word) for message in messages for word in f"{message['role']}: {message['content']}".split()]


def _load_template(model_dir: Path) -> tuple[Any, bool]:
    """The compiled chat template, and whether it renders ``tools``."""
    template_file = model_dir / "chat_template.jinja"
    if template_file.exists():
        source = template_file.read_text()
    else:
        configured = _read_json(model_dir / "tokenizer_config.json").get("chat_template")
        if not isinstance(configured, str):
            return None, False
        source = configured
    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    environment.globals["raise_exception"] = _raise_exception
    return environment.from_string(source), re.search(r"\btools\b", source) is not None


def _raise_exception(message: str) -> None:
    raise TemplateError(message)


def _special_tokens(model_dir: Path) -> dict[str, str]:
    config = _read_json(model_dir / "tokenizer_config.json")
    names = ("bos_token", "eos_token", "pad_token", "unk_token")
    return {name: str(config[name]) for name in names if isinstance(config.get(name), str)}


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


class TokenizerCache:
    """One tokenizer per model, built on first use and kept for the app's life."""

    def __init__(self, store: Path) -> None:
        self._store = store
        self._loaded: dict[tuple[str, str], PromptTokenizer] = {}

    def get(self, store_name: str, task: str, *, builtin: bool = False) -> PromptTokenizer:
        """The tokenizer of the store directory ``store_name``; embedding models add [CLS]/[SEP]."""
        key = (store_name, task)
        if key not in self._loaded:
            self._loaded[key] = WordTokenizer() if builtin else HuggingFaceTokenizer(
                self._store / store_name, add_special_tokens=task == "embedding")
        return self._loaded[key]
