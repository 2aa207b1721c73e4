"""The BM25 index module (app.corpora.index) and the one corpus reader (app.training.corpus_text),
on real files in a temp dir: no service, no mocks."""
from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pytest

from app.corpora.index import build_index, open_index
from app.corpora.stats import IndexStats
from app.training.corpus_text import count_documents, iter_documents
from app.training.corpus_text import load_texts
from app.training.data import DatasetError

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
         "quebec romeo sierra tango uniform victor whiskey xray yankee zulu").split()


def common_corpus(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 15))) for _ in range(n)]


def write(path: Path, lines: list[str], compress: bool = False) -> Path:
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("jsonl", [False, True])
def test_reader_formats(tmp_path: Path, jsonl: bool, compress: bool) -> None:
    docs = ["first doc", "second: {not json} here", "third"]
    lines = [json.dumps({"text": d, "source": "x"}) for d in docs] if jsonl else docs
    path = write(tmp_path / "c", lines[:1] + ["", "   "] + lines[1:], compress)
    assert list(iter_documents(path)) == [(1, docs[0]), (4, docs[1]), (5, docs[2])]
    assert count_documents(path) == 3
    assert load_texts(path) == docs  # DAPT's corpus_file goes through the same reader


@pytest.mark.parametrize(("content", "line", "words"), [
    (b"ok\n\xff\xfe bad\n", 2, "UTF-8"),
    (b"ok\nPNG\x00\x00\x01\n", 2, "binary"),
    (b'{"text": "a"}\n{"txt": "b"}\n', 2, '"text" string, got none'),
    (b'{"text": "a"}\nplain line\n', 2, "not valid JSON"),
    (b'{"text": "a"}\n{"text": 3}\n', 2, "got number"),
    (b'{"text": "a"}\n[1]\n', 2, "not an object"),
])
def test_reader_bad_lines(tmp_path: Path, content: bytes, line: int, words: str) -> None:
    for compress in (False, True):
        path = tmp_path / "bad"
        path.write_bytes(gzip.compress(content) if compress else content)
        with pytest.raises(DatasetError) as info:
            count_documents(path)
        assert info.value.line == line and words in info.value.message


def test_reader_empty_and_damaged_gzip(tmp_path: Path) -> None:
    for content in (b"", b"\n \n\t\n", b'{"text": ""}\n', gzip.compress(b"")):
        (tmp_path / "e").write_bytes(content)
        with pytest.raises(DatasetError, match="no documents"):
            count_documents(tmp_path / "e")
    damaged = gzip.compress(("line\n" * 50_000).encode())
    (tmp_path / "d").write_bytes(damaged[: len(damaged) // 2])
    with pytest.raises(DatasetError, match="gzip stream is damaged"):
        count_documents(tmp_path / "d")


def test_build_search_texts(tmp_path: Path) -> None:
    docs = common_corpus(3000)
    docs[1234] += " xylophone quixotic"
    docs[77] += " quixotic"
    source = write(tmp_path / "c.txt.gz", docs, compress=True)
    seen: list[int] = []
    stats = build_index(source, tmp_path / "index", progress=seen.append)
    assert stats == IndexStats(documents=3000, bytes=source.stat().st_size, index_bytes=stats.index_bytes)
    assert stats.index_bytes > 0 and seen[-1] == 3000
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left
    index = open_index(tmp_path / "index")
    assert index.documents == 3000
    [hits] = index.search_many(["Xylophones QUIXOTIC"], top_k=5)
    assert [doc for doc, _ in hits[:2]] == [1234, 77]  # both rare words beat one; stemming folds the plural
    assert hits[0][1] > hits[1][1] > 0
    assert dict(index.texts([1234, 0])) == {1234: docs[1234], 0: docs[0]}
    with pytest.raises(IndexError):
        list(index.texts([3000]))


def test_search_many_matches_single_queries_and_threads(tmp_path: Path) -> None:
    docs = common_corpus(2000, seed=1)
    index = open_index(tmp_path / "i") if build_index(write(tmp_path / "c", docs), tmp_path / "i") else None
    queries = docs[:200]
    one = index.search_many(queries, top_k=10, threads=1)
    assert index.search_many(queries, top_k=10, threads=3) == one
    for query, hits in zip(queries, one):
        assert len(hits) == 10
        assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
    assert sum(hits[0][0] == i for i, hits in enumerate(one)) >= 190  # a document finds itself first


@pytest.mark.parametrize("query", ['foo:bar', '(', '"unterminated', 'a AND OR NOT', '*', '~2^3', "\x00\x01",
                                   "title:(a OR", "\\", "[1 TO 2]", "-", "é" * 5000, "   ", ""])
def test_hostile_queries_never_raise(tmp_path: Path, query: str) -> None:
    build_index(write(tmp_path / "c", ["foo bar", "title of a book", "é"]), tmp_path / "i")
    [hits] = open_index(tmp_path / "i").search_many([query], top_k=3)
    assert all(isinstance(d, int) and isinstance(s, float) for d, s in hits)


def test_failed_build_leaves_nothing(tmp_path: Path) -> None:
    source = write(tmp_path / "c", ["good", "also good"])
    build_index(source, tmp_path / "i")
    bad = tmp_path / "bad"
    bad.write_bytes(b"fine\n\xff\n")
    with pytest.raises(DatasetError):
        build_index(bad, tmp_path / "i")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "c", "i"]
    assert open_index(tmp_path / "i").documents == 2  # the old index still answers
