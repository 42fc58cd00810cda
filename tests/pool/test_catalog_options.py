"""A catalog entry's ``extra`` table reaches the worker's load options as strings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from models.catalog import load_catalog

if TYPE_CHECKING:
    from pathlib import Path

ENTRY = """
[[model]]
id = "{id}"
task = "chat"
source = "gguf:pkg/model.gguf"
dtype = "float32"
context_length = 2048
owned_by = "someone"
input_price_per_million = "0.05"
output_price_per_million = "0.10"
"""


def test_extra_load_options_are_read_as_strings(tmp_path: Path) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(ENTRY.format(id="with-options") + 'extra = { packed_weights = "false", max_adapters = 4 }\n'
                    + ENTRY.format(id="plain"))
    specs = {spec.id: spec for spec in load_catalog(path)}
    assert specs["with-options"].extra == {"packed_weights": "false", "max_adapters": "4"}
    assert specs["plain"].extra == {}
