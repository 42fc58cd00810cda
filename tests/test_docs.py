"""The docs stay true: every setting is documented, every file the docs name exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from service.settings import describe

REPO = Path(__file__).resolve().parent.parent
DOCS = ["README.md", "docs/architecture.md", "billing/README.md", "docs/performance.md", "infra/README.md"]


def test_readme_documents_every_setting() -> None:
    readme = (REPO / "README.md").read_text()
    missing = [name for name, _default, _doc in describe() if f"`{name}`" not in readme]
    assert not missing, f"README.md lacks {missing}"


@pytest.mark.parametrize("doc", DOCS)
def test_files_named_in_the_docs_exist(doc: str) -> None:
    text = (REPO / doc).read_text()
    pattern = r"\b((?:service|models|billing|bench|tests|migrations|infra|docs)/[\w/.-]+\.(?:py|md|toml|yaml|lua))"
    named = set(re.findall(pattern, text))
    missing = sorted(path for path in named if not (REPO / path).exists())
    assert not missing, f"{doc} names files that do not exist: {missing}"
