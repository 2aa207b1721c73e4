"""Building S for TLM (Yao et al. 2022, §3.1): each training example's BM25 top-K documents of the
general corpus, de-duplicated into one set; or, for the paper's ablation, as many random documents.

Per example, the ids and scores go to `retrieved.jsonl` (an artifact); S keeps each document once,
best rank first (a document's rank is its best over the examples that retrieved it, as in the authors'
data_selection.py), so `max_external_docs` keeps the documents most examples ranked highest.
"""
from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

QUERY_CHUNK = 1024  # queries per search_many call: results stream to retrieved.jsonl chunk by chunk
RANDOM_ROW = 1000  # document ids per retrieved.jsonl row with random retrieval


@dataclass
class Selection:
    ids: list[int]  # S, best rank first
    seconds: float
    bm25_documents: int  # |S| under BM25 before the cap (what random retrieval draws as many of)


def select(index: Any, queries: Sequence[str], top_k: int, retrieval: str, cap: int | None, seed: int,
           retrieved_path: Path, threads: int = 2) -> Selection:
    """Search every query, write `retrieved_path`, and return S. With random retrieval BM25 still runs,
    so S has exactly the size BM25's would (the paper's ablation), and retrieved.jsonl lists the draws."""
    start = time.perf_counter()
    best: dict[int, tuple[int, float]] = {}  # document -> (best rank, its score there)
    with open(retrieved_path, "w") as out:
        for first in range(0, len(queries), QUERY_CHUNK):
            results = index.search_many(list(queries[first:first + QUERY_CHUNK]), top_k, threads=threads)
            for offset, hits in enumerate(results):
                if retrieval == "bm25":
                    out.write(json.dumps({"example": first + offset, "documents": [int(d) for d, _ in hits],
                                          "scores": [round(float(s), 4) for _, s in hits]}) + "\n")
                for rank, (doc, score) in enumerate(hits):
                    doc = int(doc)
                    if doc not in best or (rank, -score) < (best[doc][0], -best[doc][1]):
                        best[doc] = (rank, float(score))
        ranked = sorted(best, key=lambda d: (best[d][0], -best[d][1], d))
        n = min(len(ranked), cap) if cap else len(ranked)
        if retrieval == "bm25":
            ids = ranked[:n]
        else:
            ids = np.random.default_rng(seed).choice(index.documents, size=min(n, index.documents),
                                                     replace=False).tolist()
            for i in range(0, len(ids), RANDOM_ROW):
                out.write(json.dumps({"random": True, "documents": ids[i:i + RANDOM_ROW]}) + "\n")
    return Selection(ids, time.perf_counter() - start, len(ranked))
