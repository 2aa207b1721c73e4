"""PMI-masking's collocation vocabulary (Levine et al. 2021), built from a training corpus."""
from __future__ import annotations

import itertools
import json
import math
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.training.masking.settings import DEFAULT_PMI_MAX_NGRAM, DEFAULT_PMI_MIN_COUNT, DEFAULT_PMI_VOCAB_SIZE

_WORD_RE = re.compile(r"\w+|[^\w\s]")


@dataclass(frozen=True)
class PmiNgram:
    words: tuple[str, ...]
    score: float  # PMI_n, natural log
    count: int


@dataclass(frozen=True)
class PmiVocabulary:
    """High-PMI word n-grams, best first; each occurrence is corrupted as one unit.

    Words are case-folded; with a tokenizer they are its own words as `tokenizer.decode` spells
    them, which is also how the masker reads words back from token ids.
    """

    ngrams: tuple[PmiNgram, ...]
    max_ngram: int
    min_count: int
    n_words: int  # words counted in the corpus
    _lookup: set[tuple[str, ...]] = field(init=False, repr=False, compare=False)
    _first: set[str] = field(init=False, repr=False, compare=False)
    _longest: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ngrams", tuple(self.ngrams))
        object.__setattr__(self, "_lookup", {g.words for g in self.ngrams})
        object.__setattr__(self, "_first", {g.words[0] for g in self.ngrams})
        object.__setattr__(self, "_longest", max((len(g.words) for g in self.ngrams), default=1))

    def __len__(self) -> int:
        return len(self.ngrams)

    def __contains__(self, words: Sequence[str]) -> bool:
        return tuple(words) in self._lookup

    def find(self, words: Sequence[str]) -> list[tuple[int, int]]:
        """Occurrences [start, end) of vocabulary n-grams in `words`: greedy left to right, longest
        match first, so they never overlap."""
        found, resume, n = [], 0, len(words)
        for i in [k for k, word in enumerate(words) if word in self._first]:
            if i < resume:
                continue
            for m in range(min(self._longest, n - i), 1, -1):
                if tuple(words[i:i + m]) in self._lookup:
                    found.append((i, i + m))
                    resume = i + m
                    break
        return found

    def to_json(self) -> str:
        """A JSON document a job can store next to its artifacts."""
        return json.dumps({"format": "tuneforge.pmi_vocabulary", "version": 1, "max_ngram": self.max_ngram,
                           "min_count": self.min_count, "n_words": self.n_words,
                           "ngrams": [{"words": list(g.words), "score": g.score, "count": g.count}
                                      for g in self.ngrams]}, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> PmiVocabulary:
        """Parse `to_json` output; a ValueError says what is wrong with anything else."""
        try:
            data = json.loads(text)
            if data.get("format") != "tuneforge.pmi_vocabulary" or data.get("version") != 1:
                raise ValueError("not a version-1 tuneforge.pmi_vocabulary document")
            ngrams = [PmiNgram(tuple(str(w) for w in g["words"]), float(g["score"]), int(g["count"]))
                      for g in data["ngrams"]]
            if any(len(g.words) < 2 for g in ngrams):
                raise ValueError("every n-gram needs at least 2 words")
            return cls(ngrams, int(data["max_ngram"]), int(data["min_count"]), int(data["n_words"]))
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ValueError(f"invalid PMI vocabulary JSON: {exc}; rebuild it with build_pmi_vocabulary") from None


class WordDecoder:
    """Token ids of one word -> its case-folded text, cached: words repeat and decode is slow."""

    def __init__(self, decode: Callable[[list[int]], str], max_entries: int = 1_000_000):
        self._decode, self._cache, self._max = decode, {}, max_entries

    def __call__(self, ids: Sequence[int]) -> str:
        return self.words(ids, [0], [len(ids)])[0]

    def words(self, ids: Sequence[int], starts: Sequence[int], ends: Sequence[int]) -> list[str]:
        """The texts of the words ids[start:end] (one loop, so the cache hit path stays cheap)."""
        cache, out = self._cache, []
        for start, end in zip(starts, ends):
            key = ids[start] if end - start == 1 else tuple(ids[start:end])
            text = cache.get(key)
            if text is None:
                if len(cache) >= self._max:
                    cache.clear()
                text = cache[key] = self._decode(list(ids[start:end])).strip().casefold()
            out.append(text)
        return out


def _corpus_words(texts: Iterable[str], tokenizer: Any, max_words: int) -> Iterator[list[str]]:
    """Each text as words: the tokenizer's own words when given, else regex words/punctuation."""
    seen = 0
    if tokenizer is None:
        chunks: Iterator[list[list[str]]] = ([list(map(sys.intern, _WORD_RE.findall(t.casefold())))] for t in texts)
    else:
        chunks = _tokenizer_words(texts, tokenizer)
    for chunk in chunks:
        for words in chunk:
            if seen >= max_words:
                return
            words = words[:max_words - seen]
            seen += len(words)
            yield words


def _tokenizer_words(texts: Iterable[str], tokenizer: Any, batch_size: int = 256) -> Iterator[list[list[str]]]:
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("building a PMI vocabulary with a tokenizer needs a fast tokenizer (word_ids()); "
                         "pass tokenizer=None to split words with a regex instead")
    decode, texts = WordDecoder(tokenizer.decode), iter(texts)
    while batch := list(itertools.islice(texts, batch_size)):
        encoded = tokenizer(batch, add_special_tokens=False)
        out = []
        for i, ids in enumerate(encoded["input_ids"]):
            word_ids = encoded.word_ids(i)
            groups = itertools.groupby(range(len(ids)), key=lambda j: -1 - j if word_ids[j] is None else word_ids[j])
            out.append([decode([ids[j] for j in positions]) for _, positions in groups])
        yield out


def _pmi_n(words: tuple[str, ...], logp: Callable[[tuple[str, ...]], float]) -> float:
    """Levine et al.'s PMI_n: log p(words) − max over non-trivial segmentations of Σ log p(part)."""
    n = len(words)
    best = [0.0] + [-math.inf] * n  # best[i]: most likely segmentation of words[:i]
    for i in range(1, n + 1):
        for j in range(1 if i == n else 0, i):  # at i == n, j = 0 would be the trivial segmentation
            best[i] = max(best[i], best[j] + logp(words[j:i]))
    return logp(words) - best[n]


def build_pmi_vocabulary(texts: Iterable[str], *, max_ngram: int = DEFAULT_PMI_MAX_NGRAM,
                         min_count: int = DEFAULT_PMI_MIN_COUNT, vocab_size: int = DEFAULT_PMI_VOCAB_SIZE,
                         tokenizer: Any = None, max_words: int = 5_000_000) -> PmiVocabulary:
    """Count word n-grams (n = 1..max_ngram) in `texts` and keep the `vocab_size` best by PMI_n.

    Pass the job's (fast) tokenizer so words match what the masker sees; without one, words are
    case-folded regex tokens (letters/digits runs and single punctuation marks), which agrees with
    uncased BERT-style tokenizers. The first `max_words` words are read into memory and counted
    once per n-gram order.
    """
    if max_ngram < 2 or min_count < 1 or vocab_size < 1:
        raise ValueError(f"need max_ngram ≥ 2, min_count ≥ 1, vocab_size ≥ 1; got {max_ngram}, {min_count}, "
                         f"{vocab_size}")
    sequences = list(_corpus_words(texts, tokenizer, max_words))
    n_words = sum(map(len, sequences))
    # counts[n]: n-gram counts (words as 1-tuples); positions[n]: how many n-gram slots the corpus has
    counts: list[Counter[tuple[str, ...]]] = [Counter(), Counter(g for words in sequences for g in zip(words))]
    positions = [0, n_words]
    for n in range(2, max_ngram + 1):
        # apriori pruning: an n-gram can reach min_count only if both its (n-1)-grams do, so
        # rarer ones are never stored (memory stays near the bigram table) and kept counts are exact
        frequent = {g for g, c in counts[n - 1].items() if c >= min_count}
        counts.append(Counter(g for words in sequences for g in zip(*(words[i:] for i in range(n)))
                              if g[:-1] in frequent and g[1:] in frequent))
        positions.append(sum(max(0, len(words) - n + 1) for words in sequences))
    candidates = [(g, c) for n in range(2, max_ngram + 1) for g, c in counts[n].items()
                  if c >= min_count and all(any(ch.isalnum() for ch in w) for w in g)]
    if not candidates:
        raise ValueError(f"corpus too small to score n-grams: found 0 n-grams with count ≥ min_count "
                         f"({min_count}) in {n_words} words; lower pmi_min_count or add text")

    def logp(gram: tuple[str, ...]) -> float:
        return math.log(counts[len(gram)][gram] / positions[len(gram)])

    scored = [PmiNgram(g, _pmi_n(g, logp), c) for g, c in candidates]
    kept = sorted((s for s in scored if s.score > 0), key=lambda s: (-s.score, -s.count, s.words))[:vocab_size]
    if not kept:
        raise ValueError(f"corpus too small to score n-grams: found {len(candidates)} n-grams with count ≥ "
                         f"min_count ({min_count}) but none co-occurs more often than chance (PMI > 0); "
                         "lower pmi_min_count or add text")
    return PmiVocabulary(kept, max_ngram, min_count, n_words)


# ---------------------------------------------------------------------------------------------
# The masker


