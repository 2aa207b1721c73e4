"""BM25 over a stored corpus: a tantivy index on disk (Robertson & Zaragoza 2009's BM25, k1=1.2,
b=0.75) beside an offsets-addressed text store, behind the CorpusIndex protocol that TLM retrieval
(Yao et al. 2022) codes against. No torch import.

An index directory holds:
  tantivy/      the inverted index (term frequencies only, no positions, no stored text)
  texts.bin     every document's UTF-8 text, back to back, in file order
  offsets.u64   n+1 little-endian uint64 offsets into texts.bin (document i = [off[i], off[i+1]))
  stats.json    {"documents", "bytes", "index_bytes", "backend"}
`texts(ids)` seeks into texts.bin, so 1M documents are never all in memory. A directory whose
stats.json names backend "opensearch" searches a cluster instead (app.corpora.remote).

Queries never go through tantivy's query parser: a query is analysed with the index's own analyser
(simple tokenizer, tokens over 40 characters dropped, lowercased, English Porter stemmer) into terms,
and the terms are OR-ed as term queries, so punctuation such as `:` `(` `"` is just a separator.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np
import tantivy

from app.corpora.remote import OpenSearchIndex, build_on_cluster, search_settings
from app.corpora.stats import STATS, CorpusIndex, IndexStats, read_stats
from app.fsio import fsync_tree, replace_dir
from app.training.corpus_text import EMPTY_CORPUS, iter_documents
from app.training.data import DatasetError

ANALYZER = "corpus_en"
BODY, DOC = "body", "doc"
TEXTS, OFFSETS, TANTIVY = "texts.bin", "offsets.u64", "tantivy"
PROGRESS_EVERY = 10_000  # documents between progress callbacks
WRITER_HEAP = 128 * 1024 * 1024


def analyzer() -> tantivy.TextAnalyzer:
    return (tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
            .filter(tantivy.Filter.remove_long(40))
            .filter(tantivy.Filter.lowercase())
            .filter(tantivy.Filter.stemmer("english"))
            .build())


def _schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_text_field(BODY, stored=False, tokenizer_name=ANALYZER, index_option="freq")
    builder.add_unsigned_field(DOC, stored=False, indexed=False, fast=True)
    return builder.build()


def _open_tantivy(path: Path, schema: tantivy.Schema | None = None) -> tantivy.Index:
    index = tantivy.Index(schema or _schema(), path=str(path), reuse=True)
    index.register_tokenizer(ANALYZER, analyzer())
    return index


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _write(staging: Path, source: Path, progress: Callable[[int], None] | None, threads: int) -> int:
    """Fill `staging` from `source`; returns the number of documents. The writer is released (its
    threads joined) before an error propagates, so the caller can remove the directory."""
    writer = _open_tantivy(staging / TANTIVY).writer(heap_size=WRITER_HEAP, num_threads=threads)
    n, offset = 0, 0
    try:
        with open(staging / TEXTS, "wb") as texts, open(staging / OFFSETS, "wb") as offsets:
            offsets.write(np.uint64(0).tobytes())
            for _, text in iter_documents(source):
                document = tantivy.Document()
                document.add_unsigned(DOC, n)
                document.add_text(BODY, text)
                writer.add_document(document)
                data = text.encode("utf-8")
                texts.write(data)
                offset += len(data)
                offsets.write(np.uint64(offset).tobytes())
                n += 1
                if progress is not None and n % PROGRESS_EVERY == 0:
                    progress(n)
        if n == 0:
            raise DatasetError(EMPTY_CORPUS)
        writer.commit()
    except BaseException:
        writer.rollback()
        raise
    finally:
        writer.wait_merging_threads()
    return n


def build_index(source: Path, dest: Path, progress: Callable[[int], None] | None = None,
                threads: int = 1) -> IndexStats:
    """Stream `source` (a stored corpus file: txt/jsonl, maybe gzip) into an index at `dest` (atomic:
    built in a temp dir then renamed). Document ids are 0..n-1 in file order.

    Raises DatasetError (naming the line) for a bad or empty corpus; nothing is left behind and an
    index already at `dest` stays as it was."""
    staging = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.building")
    (staging / TANTIVY).mkdir(parents=True)
    try:
        n = _write(staging, source, progress, threads)
        if progress is not None:
            progress(n)
        stats = IndexStats(documents=n, bytes=source.stat().st_size, index_bytes=dir_bytes(staging))
        (staging / STATS).write_text(json.dumps({**asdict(stats), "backend": "tantivy"}))
        fsync_tree(staging)
        replace_dir(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return stats


class TextStore:
    """Document texts addressed by id through the offsets file (memory-mapped, 8 bytes a document)."""

    def __init__(self, path: Path):
        self._path = path
        self._offsets = np.memmap(path / OFFSETS, dtype="<u8", mode="r")
        self.documents = len(self._offsets) - 1

    def texts(self, ids: Iterable[int]) -> Iterator[tuple[int, str]]:
        with open(self._path / TEXTS, "rb") as f:
            for doc in ids:
                if not 0 <= doc < self.documents:
                    raise IndexError(f"document {doc} is outside 0..{self.documents - 1}")
                start, end = int(self._offsets[doc]), int(self._offsets[doc + 1])
                f.seek(start)
                yield doc, f.read(end - start).decode("utf-8")


class TantivyIndex(TextStore):
    """A built index directory, searched with BM25 through tantivy."""

    def __init__(self, path: Path):
        super().__init__(path)
        self._index = _open_tantivy(path / TANTIVY)
        self._schema = self._index.schema
        self._analyzer = analyzer()
        self._searcher = self._index.searcher()

    def terms(self, query: str) -> list[str]:
        """The query's distinct index terms, in order (what BM25 scores)."""
        return list(dict.fromkeys(self._analyzer.analyze(query)))

    def search(self, query: str, top_k: int) -> list[tuple[int, float]]:
        terms = self.terms(query)
        if not terms or top_k <= 0:
            return []
        q = tantivy.Query.boolean_query(
            [(tantivy.Occur.Should, tantivy.Query.term_query(self._schema, BODY, t, index_option="freq"))
             for t in terms])
        hits = self._searcher.search(q, top_k, count=False).hits
        ids = self._searcher.fast_field_values(DOC, [address for _, address in hits])
        return sorted(((int(doc), float(score)) for (score, _), doc in zip(hits, ids)), key=lambda h: (-h[1], h[0]))

    def search_many(self, queries: Sequence[str], top_k: int, threads: int = 2) -> list[list[tuple[int, float]]]:
        if threads <= 1 or len(queries) < 2:
            return [self.search(q, top_k) for q in queries]
        with ThreadPoolExecutor(max_workers=threads) as pool:
            return list(pool.map(lambda q: self.search(q, top_k), queries))


def open_index(path: Path) -> CorpusIndex:
    """The index built at `path` (tantivy, or a cluster index recorded there by app.corpora.remote)."""
    backend = read_stats(path).get("backend", "tantivy")
    if backend == "opensearch":
        return OpenSearchIndex.from_dir(path)
    return TantivyIndex(path)


def build_configured(source: Path, dest: Path, name: str, progress: Callable[[int], None] | None = None) -> IndexStats:
    """The corpus index where the deployment keeps them: the cluster when TUNEFORGE_SEARCH_URL is set
    (index prefix + `name`), else tantivy on disk at `dest`."""
    settings = search_settings()
    if not settings.search_url:  # writer threads: half the cores, 1-4 (tokenizing + stemming is the cost)
        return build_index(source, dest, progress, threads=max(1, min(4, (os.cpu_count() or 2) // 2)))
    return build_on_cluster(source, dest, name, progress)
