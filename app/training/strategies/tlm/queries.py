"""The retrieval queries of TLM (Yao et al. 2022): each training example's text, or for long texts its
keywords. The paper extracts keywords from long texts (its code uses RAKE phrases); here they are the
example's words of highest TF-IDF, document frequencies counted over the training file, which needs no
stop-word list and favours words that tell the example apart from the rest of the task."""
from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

WORD = re.compile(r"\w+", re.UNICODE)


def keyword_queries(texts: Sequence[str], n_keywords: int) -> list[str]:
    """For each text, its `n_keywords` words of highest tf·idf (smoothed idf, as scikit-learn's
    log((1+N)/(1+df)) + 1), in the order they first occur in the text."""
    words = [WORD.findall(text.lower()) for text in texts]
    df = Counter(w for doc in words for w in set(doc))
    n = len(words)
    queries = []
    for doc in words:
        tf = Counter(doc)
        ranked = sorted(tf, key=lambda w: (-tf[w] * (math.log((1 + n) / (1 + df[w])) + 1), w))
        chosen = set(ranked[:n_keywords])
        queries.append(" ".join(w for w in dict.fromkeys(doc) if w in chosen))
    return queries


def build_queries(texts: Sequence[str], token_counts: Sequence[int], mode: str, threshold: int,
                  n_keywords: int) -> tuple[list[str], int]:
    """(one query per example, how many are keyword queries): the text itself unless `mode` is
    "keywords" or the text has more than `threshold` tokens."""
    keywords = keyword_queries(texts, n_keywords)
    use = [mode == "keywords" or count > threshold for count in token_counts]
    return [k if kw else t for t, k, kw in zip(texts, keywords, use, strict=True)], sum(use)
