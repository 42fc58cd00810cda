"""The file store keeps each tenant's files apart and only ever shows whole files."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from files.store import FileStore
from meterway.errors import NotFound

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


def test_written_files_are_listed_per_owner_and_purpose(tmp_path: Path) -> None:
    store = FileStore(tmp_path / ".files")
    assert store.list("acme") == []
    first = store.write("acme", "in.jsonl", "batch", [b"a\n", b"b\n"])
    second = store.write("acme", "out.jsonl", "batch_output", iter([b"c\n"]))
    store.write("other", "theirs.jsonl", "batch", [b"x"])
    assert (first.bytes, first.filename, first.purpose) == (4, "in.jsonl", "batch")
    assert {f.id for f in store.list("acme")} == {first.id, second.id}
    assert [f.id for f in store.list("acme", "batch_output")] == [second.id]
    assert store.data("acme", first.id).read_bytes() == b"a\nb\n"


def test_the_listing_is_newest_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = FileStore(tmp_path / ".files")
    clock = iter([1000, 2000, 3000])
    monkeypatch.setattr("files.store.time.time", lambda: next(clock))
    made = [store.write("acme", f"{n}.jsonl", "batch", [b"x"]).id for n in range(3)]
    assert [f.id for f in store.list("acme")] == made[::-1]


def test_a_write_cut_off_leaves_no_file(tmp_path: Path) -> None:
    store = FileStore(tmp_path / ".files")

    def failing() -> Iterator[bytes]:
        yield b"half"
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        store.write("acme", "out.jsonl", "batch_output", failing())
    assert store.list("acme") == []
    assert list(store.root.iterdir()) == []  # no half-built directory left behind


def test_another_tenants_file_is_not_found(tmp_path: Path) -> None:
    store = FileStore(tmp_path / ".files")
    mine = store.write("acme", "in.jsonl", "batch", [b"x"])
    for attempt in (store.get, store.data, store.delete):
        with pytest.raises(NotFound, match=f"No such File object: {mine.id}"):
            attempt("other", mine.id)
    with pytest.raises(NotFound):
        store.get("acme", "../etc/passwd")
    assert store.delete("acme", mine.id) == mine
    with pytest.raises(NotFound):
        store.get("acme", mine.id)


def test_adopt_moves_a_finished_file_in(tmp_path: Path) -> None:
    store = FileStore(tmp_path / ".files")
    store.root.mkdir()
    source = store.root / ".incoming"
    source.write_bytes(b"weights")
    adopted = store.adopt("acme", source, "adapter.tar", "fine-tune")
    assert not source.exists() and store.data("acme", adopted.id).read_bytes() == b"weights"
    assert adopted.body()["object"] == "file" and adopted.body()["status"] == "processed"
