"""The object store's promises on a shared mount (`file://`, whose writes are not atomic, so every write
goes through a temporary key): nothing half-written under a real key, trees trusted only whole and
checked, and the Range arithmetic the remote downloads rely on."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from app.artifacts.download import byte_range
from app.core.errors import AppError
from app.core.object_store import MARKER, store_for


@pytest.fixture
def store(tmp_path):
    return store_for(f"file://{tmp_path / 'bucket'}", tmp_path / "data")


def test_a_write_cut_off_midway_leaves_no_object(store):
    def chunks():
        yield b"x" * 1000
        raise ConnectionResetError("client went away")

    with pytest.raises(AppError, match="could not upload files/t/f"):
        store.put_chunks("files/t/f", chunks())
    assert store.list("files") == []  # neither the key nor its temporary sibling
    store.put_chunks("files/t/f", [b"a", b"b"])
    assert [(o.key, o.size) for o in store.list("files")] == [("files/t/f", 2)]
    assert b"".join(store.iter_range("files/t/f", 1, 2)) == b"b"


def _tree(root: Path) -> list[tuple[str, int, str]]:
    (root / "sub").mkdir(parents=True)
    (root / "a.bin").write_bytes(b"alpha" * 1000)
    (root / "sub" / "b.json").write_bytes(b'{"b": 1}')
    return [(n, (root / n).stat().st_size, hashlib.sha256((root / n).read_bytes()).hexdigest())
            for n in ("a.bin", "sub/b.json")]


def test_a_tree_is_fetched_whole_and_checked(store, tmp_path):
    records = _tree(tmp_path / "src")
    assert not store.get_tree("artifacts/t/j", tmp_path / "none")  # nothing uploaded: nothing fetched
    store.put_tree("artifacts/t/j", tmp_path / "src", records)
    assert store.has_tree("artifacts/t/j")
    assert store.get_tree("artifacts/t/j", tmp_path / "copy")
    assert (tmp_path / "copy" / "sub" / "b.json").read_bytes() == b'{"b": 1}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bucket", "copy", "src"]  # no temporary dir left

    store.put_bytes("artifacts/t/j/a.bin", b"tampered")
    with pytest.raises(AppError) as refused:
        store.get_tree("artifacts/t/j", tmp_path / "bad")
    assert refused.value.code == "object_corrupted" and not (tmp_path / "bad").exists()


def test_an_upload_cut_off_before_its_marker_is_never_fetched(store, tmp_path):
    records = _tree(tmp_path / "src")
    store.put_file(tmp_path / "src" / "a.bin", "artifacts/t/k/a.bin")  # the files, not yet the marker
    assert not store.has_tree("artifacts/t/k")
    assert not store.get_tree("artifacts/t/k", tmp_path / "copy") and not (tmp_path / "copy").exists()
    store.put_tree("artifacts/t/k", tmp_path / "src", records)  # a retry replaces it whole
    assert store.read_bytes(f"artifacts/t/k/{MARKER}") is not None


@pytest.mark.parametrize(("header", "wanted"), [
    (None, None), ("bytes=0-9", (0, 10)), ("bytes=10-", (10, 100)), ("bytes=-5", (95, 100)),
    ("bytes=90-200", (90, 100)), ("bytes=100-", "unsatisfiable"), ("bytes=-0", "unsatisfiable"),
    ("bytes=5-3", None), ("bytes=0-1,5-6", None), ("items=0-1", None), ("bytes=-", None),
])
def test_byte_ranges(header, wanted):
    assert byte_range(header, 100) == wanted
