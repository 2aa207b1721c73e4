"""Writes examples/topics.jsonl: 240 short made-up news lines, `sport` or `business`, for the README's
first job (enough for a model to learn the two topics in a minute on a CPU). Deterministic."""
from __future__ import annotations

import json
import random
from pathlib import Path

SUBJECTS = {
    "sport": ["the striker", "the home side", "the goalkeeper", "the champions", "the visiting team", "the coach",
              "the tennis star", "the sprinter", "the captain", "the rookie", "the derby", "the cup final"],
    "business": ["the bank", "shares of the retailer", "the central bank", "the carmaker", "oil prices",
                 "the tech giant", "investors", "the airline", "quarterly profits", "the stock market",
                 "the startup", "bond yields"],
}
EVENTS = {
    "sport": ["scored twice in the second half", "won the match on penalties", "lost the league title",
              "was sent off after a late tackle", "kept a clean sheet", "set a new world record",
              "reached the semi-final", "signed a three-year contract with the club", "drew 1-1 at home",
              "was injured during training"],
    "business": ["fell 4% after weak earnings", "raised interest rates again", "announced 2,000 job cuts",
                 "beat analysts' forecasts", "agreed to a merger worth $3bn", "rose on strong demand",
                 "cut its annual outlook", "reported record revenue", "slumped as inflation climbed",
                 "paid a higher dividend"],
}
WHEN = ["on Sunday", "this week", "last night", "on Monday", "after a tense day", "yesterday"]


def rows(per_label: int = 120, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    out = [{"text": f"{rng.choice(SUBJECTS[label]).capitalize()} {rng.choice(EVENTS[label])} {rng.choice(WHEN)}.",
            "label": label} for label in SUBJECTS for _ in range(per_label)]
    rng.shuffle(out)
    return out


if __name__ == "__main__":
    path = Path(__file__).with_name("topics.jsonl")
    path.write_text("".join(json.dumps(r) + "\n" for r in rows()))
    print(f"wrote {path}")
