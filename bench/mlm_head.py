"""MLM training step of minilm-l6 with the stock head (every position scored against the 30,522-word
vocabulary) vs app.training.mlm.PredictedPositionsOnly (the head runs on predicted positions only),
side by side on the same BBC News batches, interleaved so machine load hits both alike.

    python bench/mlm_head.py [--steps 3] [--batch-size 16] [--max-length 128]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bare_run import minilm_path  # noqa: E402
from bench.data import load_bbc_news  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128)
    args = parser.parse_args()

    import torch
    import transformers
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from app.training.masking import MaskingSettings, MlmCollator
    from app.training.mlm import PredictedPositionsOnly

    transformers.logging.set_verbosity_error()
    texts = [row["text"] for row in load_bbc_news()][: args.batch_size * (args.steps + 1)]
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    models = {"stock head": AutoModelForMaskedLM.from_pretrained(minilm_path())}
    models["predicted only"] = PredictedPositionsOnly(AutoModelForMaskedLM.from_pretrained(minilm_path()))
    optimizers = {name: torch.optim.AdamW(m.parameters(), lr=5e-5) for name, m in models.items()}
    print(f"minilm-l6 MLM step, batch {args.batch_size} x {args.max_length}, {torch.get_num_threads()} threads, CPU")
    print(f"{'rate':>5} {'variant':<15} {'median ms':>10} {'loss':>7}")
    ratios = []
    for rate in (0.15, 0.40):
        collate = MlmCollator(tokenizer, MaskingSettings(mask_rate=rate), max_length=args.max_length,
                              generator=torch.Generator().manual_seed(0))
        batches = [collate(texts[i * args.batch_size:(i + 1) * args.batch_size]) for i in range(args.steps + 1)]
        times: dict[str, list[float]] = {name: [] for name in models}
        losses: dict[str, float] = {}
        for i, batch in enumerate(batches):  # the first step of each is a warm-up
            for name, model in models.items():
                start = time.perf_counter()
                loss = model(**batch).loss
                loss.backward()
                optimizers[name].step()
                optimizers[name].zero_grad(set_to_none=True)
                if i:
                    times[name].append((time.perf_counter() - start) * 1000)
                losses[name] = loss.item()
        medians = {name: statistics.median(t) for name, t in times.items()}
        for name in models:
            print(f"{rate:>5} {name:<15} {medians[name]:>10.0f} {losses[name]:>7.3f}")
        ratios.append(medians["predicted only"] / medians["stock head"])
    print(f"\nstep time, predicted-only head / stock head: {', '.join(f'{r:.2f}' for r in ratios)} "
          "(rates 0.15, 0.40)")


if __name__ == "__main__":
    main()
