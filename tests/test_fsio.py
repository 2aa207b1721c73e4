"""app.fsio: the one streamed file hash, directory hash, fsync and directory swap."""
from __future__ import annotations

import hashlib
from pathlib import Path

from app.fsio import CHUNK, directory_sha256, fsync_tree, replace_dir, sha256_file


def _tree(root: Path) -> Path:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "config.json").write_text("{}")
    (root / "sub" / "deeper" / "weights.bin").write_bytes(b"w" * 10)
    return root


def test_sha256_file_streams_past_one_chunk(tmp_path):
    data = bytes(range(256)) * (CHUNK // 256 * 2 + 3)
    (tmp_path / "big").write_bytes(data)
    assert sha256_file(tmp_path / "big") == hashlib.sha256(data).hexdigest()


def test_directory_sha256_is_content_not_location(tmp_path):
    a, b = _tree(tmp_path / "a"), _tree(tmp_path / "b")
    (b / ".git").mkdir()
    (b / ".git" / "HEAD").write_text("ref")  # version-control litter is not content
    assert directory_sha256(a) == directory_sha256(b)
    (b / "sub" / "deeper" / "weights.bin").write_bytes(b"x" * 10)
    assert directory_sha256(a) != directory_sha256(b)


def test_fsync_tree_then_replace_dir_swaps_a_nested_tree(tmp_path):
    staging, final = _tree(tmp_path / ".new"), tmp_path / "out" / "final"
    final.mkdir(parents=True)
    (final / "stale").write_text("old")
    fsync_tree(staging)
    replace_dir(staging, final)
    assert not staging.exists() and not (final / "stale").exists()
    assert (final / "sub" / "deeper" / "weights.bin").read_bytes() == b"w" * 10


def test_fsio_is_a_leaf():
    """app.core and app.training both import it, so it may import neither (nor torch): stdlib only."""
    import ast
    import sys

    import app.fsio

    tree = ast.parse(Path(app.fsio.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module and node.module != "__future__"}
    assert imported <= sys.stdlib_module_names, imported - sys.stdlib_module_names
