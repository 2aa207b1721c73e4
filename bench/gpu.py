"""The GPU benchmark: full fine-tuning and LoRA of a BERT-base-sized encoder (random init from its config: no
download needed) at sequence length 128 and 512, through tuneforge's training path and through a plain
Hugging Face `Trainer` script on the same data, side by side.

Per run: samples/s and tokens/s in the steady state (the first quarter of the steps is warm-up and not
timed), model FLOPs utilisation (MFU: model FLOPs per second over the device's dense bf16 peak), peak device
memory, and the ratio tuneforge / Trainer (goal >= 1.0; MFU >= 40% for full fine-tuning at length 512).

Model FLOPs per trained token (PaLM's MFU, Chowdhery et al. 2022, appendix B): 6 × the parameters of the
matrix multiplies (embeddings are lookups, not counted) for full fine-tuning, 4 × them + 2 × the trainable
ones for LoRA (no weight gradients for the frozen base), plus attention's 12 × layers × hidden × length.

tuneforge's side is the real job path (`run_strategy` on a saved model directory, a tokenizer and a JSONL
file, precision "auto", length grouping and dynamic padding on); its throughput is read from the engine's
own metrics events. The Trainer's side gets the same tokenized rows, bf16 (fp16 on GPUs without bf16), the
same batch, learning-rate schedule and LoRA settings, and is timed per step by a callback.

    python bench/gpu.py [--lengths 128,512] [--methods supervised,lora] [--batch 32] [--steps 60]
                        [--peak-tflops 989] [--out bench/results/gpu.jsonl]
    python bench/gpu.py --quick      # a tiny encoder on CPU, 8 steps: proves the script runs
"""
from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

# the repository root instead of bench/ (run as a script, bench/peft.py would shadow the peft package)
sys.path[:] = [str(Path(__file__).resolve().parents[1])] + [p for p in sys.path
                                                           if Path(p or ".").resolve() != Path(__file__).parent]

BERT_BASE = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
             "vocab_size": 30522}
TINY = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128,
        "vocab_size": 1000}
# dense bf16 peak FLOP/s (no sparsity), by a fragment of torch.cuda.get_device_name()
PEAKS = [("H100 PCIe", 756e12), ("H200", 989.4e12), ("H100", 989.4e12), ("GH200", 989.4e12), ("A100", 312e12),
         ("L40S", 362e12), ("L4", 121e12), ("A10", 125e12)]
LORA = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.1, "target_modules": ["query", "value"]}


@dataclass
class Timing:
    """Step -> perf_counter time, as the steps complete."""

    at: dict[int, float] = field(default_factory=dict)

    def throughput(self, batch: int, skip: int) -> float:
        """Samples per second from the first recorded step >= skip to the last."""
        steps = sorted(s for s in self.at if s >= skip)
        if len(steps) < 2:
            raise SystemExit(f"too few timed steps after {skip} warm-up steps; raise --steps")
        first, last = steps[0], steps[-1]
        return batch * (last - first) / (self.at[last] - self.at[first])


class TimingSink:
    """tuneforge's ProgressSink that keeps when each metrics event (a logged step) came."""

    def __init__(self) -> None:
        self.timing = Timing()

    def message(self, text, level="info", data=None) -> None: ...

    def metrics(self, step, values) -> None:
        if "train_loss" in values:
            self.timing.at[step] = time.perf_counter()

    def checkpoint(self, step, path, metrics) -> None: ...

    def should_stop(self):
        return None


def device_and_peak(given_tflops: float | None) -> tuple[str, str, float | None]:
    import torch

    if not torch.cuda.is_available():
        return "cpu", "CPU", given_tflops * 1e12 if given_tflops else None
    name = torch.cuda.get_device_name(0)
    if given_tflops:
        return "cuda", name, given_tflops * 1e12
    return "cuda", name, next((peak for fragment, peak in PEAKS if fragment in name), None)


def write_model(root: Path, config: dict, max_length: int) -> Path:
    """A random encoder saved as a base model, with a word-level tokenizer over w0 … w{vocab-6}."""
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *(f"w{i}" for i in range(config["vocab_size"] - 5))]
    torch.manual_seed(0)
    BertForMaskedLM(BertConfig(**config, max_position_embeddings=max(512, max_length))).save_pretrained(root)
    BertTokenizerFast(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=False).save_pretrained(root)
    return root


def write_rows(path: Path, n: int, length: int, vocab: int) -> Path:
    """`n` rows of exactly `length` tokens ([CLS] + words + [SEP]), two labels."""
    rng = random.Random(0)
    with open(path, "w") as f:
        for i in range(n):
            words = " ".join(f"w{rng.randrange(vocab - 5)}" for _ in range(length - 2))
            f.write(json.dumps({"text": words, "label": "a" if i % 2 else "b"}) + "\n")
    return path


def flops_per_token(model, length: int) -> float:
    import torch

    linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    n_linear = sum(m.weight.numel() for m in linear)
    n_trainable = sum(m.weight.numel() for m in linear if m.weight.requires_grad)
    config = model.config
    return 4 * n_linear + 2 * n_trainable + 12 * config.num_hidden_layers * config.hidden_size * length


def reset_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_memory_gib() -> float:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # CPU: the process's peak RSS so far


def run_tuneforge(model_dir: Path, train: Path, method: str, length: int, args) -> dict:
    from app.fsio import directory_sha256
    from app.training.base import BaseModelRef, TrainContext
    from app.training.methods import parse_method, resolve_method
    from app.training.registry import run_strategy

    hyper = {"n_epochs": 1, "batch_size": args.batch, "learning_rate": 1e-4 if method == "supervised" else 1e-3,
             "max_length": length, "warmup_ratio": 0.06, "lr_scheduler": "linear"}
    settings = {"hyperparameters": hyper, **(LORA if method == "lora" else {})}
    resolved = resolve_method(parse_method({"type": method, method: settings}), args.batch * args.steps, 0)
    work = Path(tempfile.mkdtemp(prefix=f"gpu-{method}-{length}-"))
    sink = TimingSink()
    ctx = TrainContext(job_id="bench", method=method, settings=resolved.settings,
                       hyperparameters=resolved.hyperparameters,
                       base_model=BaseModelRef("random-encoder", model_dir, directory_sha256(model_dir)),
                       train_file=train, validation_file=None, output_dir=work / "out",
                       checkpoint_dir=work / "checkpoints", sink=sink)
    ctx.output_dir.mkdir(parents=True)
    reset_memory()
    start = time.perf_counter()
    result = run_strategy(ctx)
    wall = time.perf_counter() - start
    assert result.status == "succeeded", result
    return {"samples_per_second": sink.timing.throughput(args.batch, args.steps // 4), "wall_seconds": wall,
            "peak_memory_gib": peak_memory_gib()}


def run_trainer(model_dir: Path, train: Path, method: str, length: int, args) -> tuple[dict, float]:
    """The Trainer's numbers and the model FLOPs per token of the trained model."""
    import torch
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainerCallback, TrainingArguments)

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows = [json.loads(line) for line in open(train)]
    encoded = [{**tokenizer(r["text"], truncation=True, max_length=length), "labels": int(r["label"] == "a")}
               for r in rows]
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2)
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", **LORA))
    flops = flops_per_token(model, length)
    timing = Timing()

    class StepTimes(TrainerCallback):
        def on_step_end(self, _args, state, control, **kwargs):
            if torch.cuda.is_available():
                torch.cuda.synchronize()  # the step's kernels are done, as tuneforge's .item() waits for them
            timing.at[state.global_step] = time.perf_counter()

    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    training_args = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="gpu-trainer-"), per_device_train_batch_size=args.batch,
        max_steps=args.steps, learning_rate=1e-4 if method == "supervised" else 1e-3, warmup_steps=0.06,
        lr_scheduler_type="linear", weight_decay=0.0, max_grad_norm=1.0, bf16=bf16, fp16=cuda and not bf16,
        save_strategy="no", report_to=[], logging_strategy="no", use_cpu=not cuda, seed=0)
    trainer = Trainer(model=model, args=training_args, train_dataset=encoded,
                      data_collator=DataCollatorWithPadding(tokenizer), callbacks=[StepTimes()])
    reset_memory()
    start = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - start
    return ({"samples_per_second": timing.throughput(args.batch, args.steps // 4), "wall_seconds": wall,
             "peak_memory_gib": peak_memory_gib()}, flops)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", default="128,512")
    parser.add_argument("--methods", default="supervised,lora")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak, when not in the table")
    parser.add_argument("--out", type=Path, help="append one JSON line per run here")
    parser.add_argument("--quick", action="store_true", help="a tiny encoder, lengths 32,64, batch 8, 8 steps")
    args = parser.parse_args()
    config = BERT_BASE
    if args.quick:
        config, args.lengths, args.batch, args.steps = TINY, "32,64", 8, 8
    device, name, peak = device_and_peak(args.peak_tflops)
    root = Path(tempfile.mkdtemp(prefix="gpu-bench-"))
    lengths = [int(v) for v in args.lengths.split(",")]
    model_dir = write_model(root / "model", config, max(lengths))
    print(f"{name}: dense bf16 peak {peak / 1e12:.0f} TFLOP/s" if peak else f"{name}: peak unknown (MFU not shown)")
    print(f"{'method':<11}{'length':>7}{'side':>11}{'samples/s':>11}{'tokens/s':>11}{'MFU':>8}{'peak GiB':>10}"
          f"{'wall s':>9}{'ratio':>8}")
    for length in lengths:
        train = write_rows(root / f"train-{length}.jsonl", args.batch * args.steps, length, config["vocab_size"])
        for method in args.methods.split(","):
            ours = run_tuneforge(model_dir, train, method, length, args)
            theirs, flops = run_trainer(model_dir, train, method, length, args)
            ratio = ours["samples_per_second"] / theirs["samples_per_second"]
            for side, numbers in (("tuneforge", ours), ("Trainer", theirs)):
                tokens = numbers["samples_per_second"] * length
                mfu = tokens * flops / peak if peak else None
                record = {"device": name, "method": method, "length": length, "batch": args.batch,
                          "steps": args.steps, "side": side, **numbers, "tokens_per_second": tokens,
                          "flops_per_token": flops, "mfu": mfu, "ratio_tuneforge_to_trainer": ratio,
                          "quick": args.quick}
                print(f"{method:<11}{length:>7}{side:>11}{numbers['samples_per_second']:>11.1f}{tokens:>11.0f}"
                      f"{(f'{100 * mfu:.1f}%' if mfu is not None else 'n/a'):>8}{numbers['peak_memory_gib']:>10.2f}"
                      f"{numbers['wall_seconds']:>9.1f}{(f'{ratio:.3f}' if side == 'tuneforge' else ''):>8}")
                if args.out:
                    with open(args.out, "a") as f:
                        f.write(json.dumps(record) + "\n")
    print(f"\nratio = tuneforge samples/s / Trainer samples/s (goal >= 1.0); device {device}. On CPU the peak "
          "memory column is the process's peak RSS so far.")


if __name__ == "__main__":
    main()
