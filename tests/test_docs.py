"""The docs stay true: every setting is documented, every file and symbol the docs name exists."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from meterway.settings import describe

REPO = Path(__file__).resolve().parent.parent
DOCS = ["README.md", "docs/architecture.md", "billing/README.md", "docs/performance.md", "infra/README.md"]


def test_readme_documents_every_setting() -> None:
    readme = (REPO / "README.md").read_text()
    missing = [name for name, _default, _doc in describe() if f"`{name}`" not in readme]
    assert not missing, f"README.md lacks {missing}"


@pytest.mark.parametrize("doc", DOCS)
def test_files_named_in_the_docs_exist(doc: str) -> None:
    text = (REPO / doc).read_text()
    packages = "meterway|service|models|billing|bench|tests|migrations|infra|docs"
    pattern = rf"\b((?:{packages})/[\w/.-]+\.(?:py|md|toml|yaml|lua))"
    named = set(re.findall(pattern, text))
    missing = sorted(path for path in named if not (REPO / path).exists())
    assert not missing, f"{doc} names files that do not exist: {missing}"


def _resolves(dotted: str) -> bool:
    """``a.b.C`` names a module ``a.b`` with an attribute ``C`` (or a module ``a.b.C``)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            if not hasattr(target, name):
                return False
            target = getattr(target, name)
        return True
    return False


@pytest.mark.parametrize("doc", DOCS)
def test_symbols_named_in_the_docs_exist(doc: str) -> None:
    text = (REPO / doc).read_text()
    named = set(re.findall(r"`((?:meterway|service|models|billing)(?:\.\w+)+)`", text))
    missing = sorted(name for name in named if not _resolves(name))
    assert not missing, f"{doc} names symbols that do not exist: {missing}"
