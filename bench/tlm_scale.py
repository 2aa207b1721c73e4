"""TLM retrieval at scale (issue 19): a 10,000-example task at top_k 50 over a 1M-document corpus.

The corpus: TLM's general corpus of bench/tlm.py (Wikipedia leads, WordNet and GCIDE glosses, 20 Newsgroups,
Reuters-52; 253,057 documents) topped up to --documents with documents synthesised from the Wikipedia lead
sentences as bench/bm25.py makes them. The task: the 6,444 election tweets, the 2,225 BBC News articles and
Reuters-52 wires up to --examples, so both kinds of TLM query run: short texts query with their own words, long
ones (over 256 tokens) with their 20 TF-IDF keywords. Retrieval goes through the strategy's own code
(tokenizer token counts, `build_queries`, `select` with 2 threads), so the figure is what a job's retrieval step
costs, from the opened index to S; the index is built once, as a corpus upload does before any job.

    python -m bench.tlm_scale [--documents 1000000] [--examples 10000] [--top-k 50] [--threads 2] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bm25 import lead_sentences, synthesise  # noqa: E402
from bench.data import load_bbc_news, load_election_tweets, orange_table  # noqa: E402
from bench.tlm import corpus_documents  # noqa: E402

CACHE = Path(tempfile.gettempdir()) / "tuneforge-bench-tlm-scale"


def corpus(n_documents: int) -> Path:
    """The general corpus plus synthesised documents up to n_documents, one per line (built once)."""
    path = CACHE / f"corpus-{n_documents}.txt"
    if not path.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        real = [d.replace("\n", " ") for docs in corpus_documents().values() for d in docs if d.strip()]
        extra = CACHE / "synthetic.txt"
        synthesise(extra, lead_sentences(), max(0, n_documents - len(real)), seed=0)
        with open(path.with_suffix(".part"), "w") as out:
            out.writelines(d + "\n" for d in real[:n_documents])
            out.write(extra.read_text())
        path.with_suffix(".part").rename(path)
    return path


def task_texts(n: int) -> list[str]:
    """Tweets, then BBC articles, then Reuters wires, up to n texts."""
    texts = [r["text"] for r in load_election_tweets()] + [r["text"] for r in load_bbc_news()]
    for name in ("reuters-r52-train.tab", "reuters-r52-test.tab"):
        texts += [" ".join(row.get("Text", "").split()) for row in orange_table(name)]
    texts = [t for t in texts if t.strip()]
    if len(texts) < n:
        raise SystemExit(f"only {len(texts):,} task texts, fewer than {n:,}")
    return texts[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=1_000_000)
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--top-k", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="append the row as a JSON line here")
    args = parser.parse_args()

    from transformers import AutoTokenizer

    from app.corpora.index import build_index, dir_bytes, open_index
    from app.training.strategies.tlm.config import TlmSettings
    from app.training.strategies.tlm.queries import build_queries
    from app.training.strategies.tlm.retrieve import select
    from bench.bare_run import minilm_path

    source = corpus(args.documents)
    index_dir = CACHE / f"index-{args.documents}"
    build_seconds = None
    if not (index_dir / "stats.json").is_file():
        start = time.perf_counter()
        build_index(source, index_dir, threads=args.threads)
        build_seconds = time.perf_counter() - start
    index = open_index(index_dir)
    texts = task_texts(args.examples)
    defaults = TlmSettings()
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    counts = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    queries, n_keywords = build_queries(texts, counts, defaults.query, defaults.keyword_threshold, defaults.keywords)
    query_seconds = time.perf_counter() - start
    chosen = select(index, queries, args.top_k, "bm25", None, 0, CACHE / "retrieved.jsonl", threads=args.threads)
    row = {"documents": index.documents, "index_build_s": build_seconds,
           "index_mib": round(dir_bytes(index_dir) / 2**20, 1),
           "examples": len(texts), "keyword_queries": n_keywords, "top_k": args.top_k, "threads": args.threads,
           "query_build_s": round(query_seconds, 1), "search_s": round(chosen.seconds, 1),
           "queries_per_s": round(len(texts) / chosen.seconds, 1), "selected_documents": len(chosen.ids),
           "time": time.time()}
    print(f"{row['examples']:,} examples ({n_keywords:,} keyword queries) at top_k {args.top_k} over "
          f"{row['documents']:,} documents ({row['index_mib']:.0f} MiB index"
          + (f", built in {build_seconds:.0f} s" if build_seconds else "") + f"), {args.threads} threads: "
          f"queries built in {query_seconds:.1f} s, searched in {chosen.seconds:.1f} s "
          f"({row['queries_per_s']} queries/s); S = {len(chosen.ids):,} documents; "
          f"retrieval total {(query_seconds + chosen.seconds) / 60:.1f} min")
    if args.out:
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
