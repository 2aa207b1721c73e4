"""TLM, task-driven language modeling (Yao et al. 2022, "NLP From Scratch Without Large-Scale Pretraining").

1. Retrieval: each training example queries the corpus's BM25 index (its text, or its keywords when long);
   S is the de-duplicated union of the top-K (retrieve.py), written to disk and streamed (external.py).
2. Stage 1, from random weights (model.py): every internal batch (task data, loss (rho2·MLM + task) /
   (rho2 + 1)) comes after rho1 external batches from S (MLM only), each batch its own optimizer step,
   as the authors' trainer interleaves them (`external_ratio`, `mlm_weight`).
3. Stage 2 (optional): the task alone, a fresh schedule over the stage-1 weights.

Each step is done once per job: a finished retrieval and stage 1 leave their results in the job's
checkpoint dir, so a resumed job skips them; a stage resumes from its own checkpoints. Step numbers
continue across the stages. FLOPs and tokens are counted per stage (app.training.engine's 6·N·T-style
estimate over every batch, internal and external); retrieval time is reported apart from them.

Artifact: `model/` (the classifier, save_pretrained with its tokenizer: the base's, or the trained one),
`retrieved.jsonl` (per example: document ids and BM25 scores), the usual eval/ and manifest.json, whose
`tlm` entry holds the retrieval and per-stage figures.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import math
import shutil
from pathlib import Path
from typing import Any

import torch

from app.fsio import fsync_tree, replace_dir
from app.training.base import OffsetSink, TrainContext, TrainingError, TrainResult
from app.training.checkpoints import latest_complete_checkpoint
from app.training.classification import _padded_word_ids, evaluate_classifier, finish_classification, load_task_data
from app.training.config import Hyperparameters
from app.training.data import CLASSIFICATION
from app.training.engine import Run, RunResult, batch_seed, epoch_batches, optimize
from app.training.masking import MlmCollator
from app.training.mlm import pmi_vocabulary
from app.training.pooling import use_mean_pooling
from app.training.strategies.tlm.config import TlmSettings
from app.training.strategies.tlm.external import ExternalTexts, write_external
from app.training.strategies.tlm.model import (TlmModel, base_tokenizer, build_models, encoder_config,
                                               train_tokenizer)
from app.training.strategies.tlm.queries import build_queries
from app.training.strategies.tlm.retrieve import select
from app.training.tasks import get_task

DONE = "done.json"
RETRIEVED = "retrieved.jsonl"
PMI_EXTERNAL_SAMPLE = 10_000  # external documents beside the task texts that PMI-Masking's vocabulary counts


def _done(directory: Path) -> dict[str, Any] | None:
    path = directory / DONE
    return json.loads(path.read_text()) if path.is_file() else None


def _finish_step(staging: Path, final: Path, record: dict[str, Any]) -> dict[str, Any]:
    """Mark a step's directory complete, atomically: a resumed job reuses it only when whole."""
    (staging / DONE).write_text(json.dumps(record))
    fsync_tree(staging)
    replace_dir(staging, final)
    return record


def _staging(final: Path) -> Path:
    staging = final.with_name(final.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def _texts(examples: list) -> list[str]:
    return [e.text if e.text_pair is None else f"{e.text} {e.text_pair}" for e in examples]


def _retrieve(ctx: TrainContext, settings: TlmSettings, texts: list[str], tokenizer: Any) -> dict[str, Any]:
    """Build S (or reuse an earlier attempt's); its record says what was retrieved and how long it took."""
    final = ctx.checkpoint_dir / "retrieval"
    if (record := _done(final)) is not None:
        ctx.sink.message(f"TLM retrieval: already done in an earlier attempt ({record['documents']:,} documents)")
        return record
    staging = _staging(final)
    if settings.rho1 == 0:  # no external batches: nothing to retrieve (the paper's "no external data" row)
        (staging / RETRIEVED).write_text("")
        write_external(staging, [])
        ctx.sink.message("TLM retrieval skipped: rho1 is 0 (or no corpus), so stage 1 reads no external data",
                         data={"external_documents": 0})
        return _finish_step(staging, final, {"documents": 0, "seconds": 0.0, "keyword_queries": 0, "skipped": True})
    index_dir = ctx.corpora.get("corpus")
    if index_dir is None:
        raise TrainingError(f"Corpus {settings.corpus} has no index this worker can read; check GET /v1/corpora/"
                            f"{settings.corpus} and submit the job again once it is ready.", code="corpus_not_ready",
                            param="method.tlm.corpus")
    from app.corpora.index import open_index

    try:
        index = open_index(index_dir)
    except (OSError, ValueError) as exc:
        raise TrainingError(f"Corpus {settings.corpus}'s index cannot be opened ({exc}); index the corpus again.",
                            code="corpus_not_ready", param="method.tlm.corpus") from exc
    counts = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    queries, n_keywords = build_queries(texts, counts, settings.query, settings.keyword_threshold, settings.keywords)
    chosen = select(index, queries, settings.top_k, settings.retrieval, settings.max_external_docs,
                    ctx.hyperparameters.seed, staging / RETRIEVED)
    if not chosen.ids:
        raise TrainingError(f"Retrieval found no documents of corpus {settings.corpus} for any training example "
                            "(no shared words?); use a corpus in the task's language, or rho1: 0 to train without "
                            "external data.", code="empty_retrieval", param="method.tlm.corpus")
    n = write_external(staging, (text for _, text in index.texts(chosen.ids)))
    record = {"documents": n, "seconds": round(chosen.seconds, 3), "keyword_queries": n_keywords,
              "bm25_documents": chosen.bm25_documents, "retrieval": settings.retrieval, "top_k": settings.top_k,
              "corpus_documents": index.documents}
    ctx.sink.message(f"TLM retrieval ({settings.retrieval}, top_k {settings.top_k}): {n:,} documents of "
                     f"{index.documents:,} for {len(texts)} examples in {chosen.seconds:.1f} s "
                     f"({n_keywords} keyword queries); retrieval time is not in the training FLOPs", data=record)
    return _finish_step(staging, final, record)


def _tokenizer(ctx: TrainContext, settings: TlmSettings, texts: list[str], external: ExternalTexts,
               base: Any) -> Any:
    """The base's tokenizer, or a WordPiece one trained on the task texts and S (once per job)."""
    if settings.tokenizer == "base":
        return base
    from transformers import AutoTokenizer

    final = ctx.checkpoint_dir / "tokenizer"
    if _done(final) is None:
        staging = _staging(final)
        trained = train_tokenizer(_chain(texts, external), settings.vocab_size, staging)
        ctx.sink.message(f"TLM tokenizer: WordPiece with {len(trained):,} tokens trained on the task data and S",
                         data={"vocab_size": len(trained)})
        _finish_step(staging, final, {"vocab_size": len(trained)})
    return AutoTokenizer.from_pretrained(final)


def _chain(texts: list[str], external: ExternalTexts):
    yield from texts
    yield from external


def _external_tokens(ctx: TrainContext, external: ExternalTexts, tokenizer: Any, max_length: int) -> dict[str, int]:
    """S's size in tokens (all of it, and what stage 1 reads of each document after truncation at max_length),
    counted once per job with the tokenizer that trains, streamed in chunks."""
    path = ctx.checkpoint_dir / "tokenizer" / "external_tokens.json"
    if path.is_file():
        return json.loads(path.read_text())
    total = truncated = 0
    chunk: list[str] = []
    for text in itertools.chain(external, [None]):  # streamed: S is never all in memory
        if text is not None:
            chunk.append(text)
        if chunk and (text is None or len(chunk) == 512):
            for ids in tokenizer(chunk, add_special_tokens=True)["input_ids"]:
                total, truncated = total + len(ids), truncated + min(len(ids), max_length)
            chunk = []
    counts = {"tokens": total, "tokens_after_truncation": truncated}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(counts))
    return counts


def _interleaved_batches(settings: TlmSettings, hp: Hyperparameters, train, external: ExternalTexts,
                         collator: MlmCollator | None, n_internal: int, device: torch.device):
    """Stage 1's batch(epoch, b): in each cycle of rho1 + 1 steps, rho1 external batches then one internal
    one (the authors' `_get_batch`: internal when (step + 1) % ratio == 0). External batch g reads items
    g·B … of the endless shuffled passes over S; every mask is seeded by (seed, epoch, b), so a resumed
    stage replays exactly the batches an uninterrupted one would."""
    rho1, rows_of = settings.rho1, epoch_batches(len(train), hp)
    mask_seed = settings.mlm.seed_or(hp.seed)

    def batch(epoch: int, b: int) -> dict[str, torch.Tensor]:
        cycle, r = divmod(b, rho1 + 1)
        if collator is not None:
            collator.masker.generator.manual_seed(batch_seed(mask_seed, epoch, b))
        if r < rho1:
            out = collator(external.batch_texts((epoch * n_internal + cycle) * rho1 + r, hp.batch_size))
            out["mlm_labels"] = out.pop("labels")
            return {k: v.to(device) for k, v in out.items()}
        indices = rows_of(epoch, cycle)
        out = train.batch(indices, device)
        if collator is not None and settings.rho2 > 0:
            word_ids = _padded_word_ids(train, indices, out["input_ids"].shape[1])
            masked, labels = collator.masker(out["input_ids"].cpu(), out["attention_mask"].cpu(), word_ids=word_ids)
            out["input_ids"], out["mlm_labels"] = masked.to(device), labels.to(device)  # the task reads it masked too
        return out

    return batch


def _stage_record(name: str, run: RunResult, **more: Any) -> dict[str, Any]:
    return {"stage": name, "steps": run.step, "trained_tokens": run.trained_tokens, "flops": run.flops, **more}


def _stage1(ctx: TrainContext, settings: TlmSettings, classifier: torch.nn.Module, mlm: torch.nn.Module,
            tokenizer: Any, train, valid, external: ExternalTexts, texts: list[str], device: torch.device
            ) -> tuple[RunResult, dict[str, Any]]:
    hp = ctx.hyperparameters
    if settings.stage2:  # stage 2 chooses the artifact's checkpoint; stage 1 hands over its last weights
        hp = dataclasses.replace(hp, select_best=False)
    uses_mlm = settings.rho2 > 0 or (settings.rho1 > 0 and len(external) > 0)
    collator = None
    if uses_mlm:
        vocab = None
        if settings.mlm.unit == "pmi":  # n-grams counted over the task texts and the start of S
            sample = [*texts, *external.get(range(min(len(external), PMI_EXTERNAL_SAMPLE)))]
            vocab = pmi_vocabulary(settings.mlm, sample, tokenizer, param="method.tlm.mlm.pmi_min_count")
        collator = MlmCollator(tokenizer, settings.mlm, vocab, max_length=hp.max_length, generator=torch.Generator())
    if settings.rho1 > 0 and len(external) == 0:
        raise TrainingError("rho1 asks for external batches but S is empty.", code="empty_retrieval",
                            param="method.tlm.rho1")
    n_internal = math.ceil(len(train) / hp.batch_size)
    model = TlmModel(classifier, mlm, settings.rho2).to(device)
    checkpoints = ctx.checkpoint_dir / "stage1"
    evaluate = (lambda: evaluate_classifier(classifier, valid, device)[0]) if valid is not None else None
    run = optimize(Run(model=model, hyperparameters=hp, steps_per_epoch=n_internal * (settings.rho1 + 1),
                       batch=_interleaved_batches(settings, hp, train, external, collator, n_internal, device),
                       sink=ctx.sink, checkpoint_dir=checkpoints, resume_from=latest_complete_checkpoint(checkpoints),
                       evaluate=evaluate, label="Stage 1: ",
                       tags={"rho1": settings.rho1, "rho2": settings.rho2}))
    internal_steps = n_internal * hp.n_epochs
    return run, _stage_record("stage1", run, internal_batches=internal_steps,
                              external_batches=internal_steps * settings.rho1, rho1=settings.rho1, rho2=settings.rho2)


def _stage2(ctx: TrainContext, settings: TlmSettings, classifier: torch.nn.Module, train, valid,
            device: torch.device, offset: int) -> tuple[RunResult, dict[str, Any]]:
    hp = dataclasses.replace(ctx.hyperparameters, n_epochs=settings.stage2_epochs,
                             learning_rate=settings.stage2_learning_rate or ctx.hyperparameters.learning_rate)
    rows_of = epoch_batches(len(train), hp)
    checkpoints = ctx.checkpoint_dir / "stage2"
    run = optimize(Run(model=classifier.to(device), hyperparameters=hp,
                       steps_per_epoch=math.ceil(len(train) / hp.batch_size),
                       batch=lambda epoch, b: train.batch(rows_of(epoch, b), device), sink=OffsetSink(ctx.sink, offset),
                       checkpoint_dir=checkpoints, resume_from=latest_complete_checkpoint(checkpoints),
                       evaluate=(lambda: evaluate_classifier(classifier, valid, device)[0]) if valid is not None else None,
                       label="Stage 2: "))
    return run, _stage_record("stage2", run, learning_rate=hp.learning_rate, epochs=hp.n_epochs)


def train(ctx: TrainContext) -> TrainResult:
    from transformers import AutoModelForSequenceClassification

    settings = _resolved_pooling(ctx)
    train_examples, valid_examples, labels = load_task_data(ctx)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    texts = _texts(train_examples)
    base = base_tokenizer(ctx.base_model.path) if settings.tokenizer == "base" else _any_tokenizer(ctx)
    retrieval = _retrieve(ctx, settings, texts, base)
    external = ExternalTexts(ctx.checkpoint_dir / "retrieval", ctx.hyperparameters.seed)
    tokenizer = _tokenizer(ctx, settings, texts, external, base)
    hp = ctx.hyperparameters
    limit = tokenizer.model_max_length if tokenizer.model_max_length < 10**6 else hp.max_length
    if hp.max_length > limit:
        raise TrainingError(f"max_length {hp.max_length} exceeds the tokenizer's {limit}; lower "
                            "method.tlm.hyperparameters.max_length.", code="invalid_method_settings",
                            param="method.tlm.hyperparameters.max_length")
    s_tokens = _external_tokens(ctx, external, tokenizer, hp.max_length) if len(external) else {"tokens": 0}
    ctx.sink.message(f"TLM external data S: {len(external):,} documents, {s_tokens['tokens']:,} tokens",
                     data={"external_documents": len(external), "external_tokens": s_tokens["tokens"]})
    encode = get_task(CLASSIFICATION).encode  # single-label classification, the one task type TLM trains
    train = encode(tokenizer, train_examples, labels, hp.max_length)
    valid = encode(tokenizer, valid_examples, labels, hp.max_length) if valid_examples else None
    config = encoder_config(ctx.base_model.path, settings.shape, tokenizer, labels)
    if hp.max_length > config.max_position_embeddings:
        raise TrainingError(f"max_length {hp.max_length} exceeds the {config.max_position_embeddings} positions of "
                            f"{ctx.base_model.id}'s architecture; lower it.", code="invalid_method_settings",
                            param="method.tlm.hyperparameters.max_length")
    classifier, mlm = build_models(config, hp.seed)
    if settings.pooling == "mean":
        use_mean_pooling(classifier)
    ctx.sink.message(f"TLM: a randomly initialised encoder ({settings.shape.num_hidden_layers} layers × "
                     f"{settings.shape.hidden_size}, {sum(p.numel() for p in classifier.parameters()):,} parameters) "
                     f"in {config.model_type}'s architecture; no weights of {ctx.base_model.id} are used",
                     data={"encoder": settings.shape.model_dump(), "model_type": config.model_type})
    stage1_dir = ctx.checkpoint_dir / "stage1-model"
    stage1 = _done(stage1_dir)
    if stage1 is None:
        run, stage1 = _stage1(ctx, settings, classifier, mlm, tokenizer, train, valid, external, texts, device)
        if run.status != "succeeded" or not settings.stage2:
            return _finish(ctx, settings, run, [stage1], retrieval, s_tokens, classifier, tokenizer, valid,
                           (train_examples, valid_examples), labels, offset=0)
        staging = _staging(stage1_dir)
        classifier.save_pretrained(staging)
        _finish_step(staging, stage1_dir, stage1)
    else:
        ctx.sink.message(f"Stage 1: already finished in an earlier attempt ({stage1['steps']} steps)")
        classifier = AutoModelForSequenceClassification.from_pretrained(stage1_dir)
        if settings.pooling == "mean":
            use_mean_pooling(classifier)
    run, stage2 = _stage2(ctx, settings, classifier, train, valid, device, offset=stage1["steps"])
    return _finish(ctx, settings, run, [stage1, stage2], retrieval, s_tokens, classifier, tokenizer, valid,
                   (train_examples, valid_examples), labels, offset=stage1["steps"])


def _resolved_pooling(ctx: TrainContext) -> TlmSettings:
    """The job's settings with pooling "auto" resolved (to mean) and recorded in ctx, so the manifest says what
    the head read and the artifact loads with it."""
    settings = ctx.settings_as(TlmSettings)
    if settings.pooling == "auto":
        ctx.settings = settings = settings.model_copy(update={"pooling": "mean"})
    reads = "the mean of the last hidden states" if settings.pooling == "mean" else "[CLS] through the pooler"
    ctx.sink.message(f"TLM: the head reads {reads} (pooling {settings.pooling!r})", data={"pooling": settings.pooling})
    return settings


def _any_tokenizer(ctx: TrainContext) -> Any:
    """With tokenizer train, the base's tokenizer only counts query tokens; it needs no mask token."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(ctx.base_model.path)


def _finish(ctx: TrainContext, settings: TlmSettings, run: RunResult, stages: list[dict[str, Any]],
            retrieval: dict[str, Any], s_tokens: dict[str, int], classifier: torch.nn.Module, tokenizer: Any,
            valid, examples: tuple[list, list], labels: list, offset: int) -> TrainResult:
    """The artifact (model/ and retrieved.jsonl), the job's totals over both stages, the FLOPs-beside-accuracy
    event; a stopped stage returns its status with the totals so far."""
    earlier = stages[:-1]
    total = dataclasses.replace(
        run, step=run.step + offset, trained_tokens=run.trained_tokens + sum(s["trained_tokens"] for s in earlier),
        flops=run.flops + sum(s["flops"] for s in earlier), eval_step=run.eval_step + offset if run.eval_step >= 0 else -1,
        selected_step=run.selected_step + offset if run.selected_step is not None else None)
    stages[-1] = _stage_record(stages[-1]["stage"], run, **{k: v for k, v in stages[-1].items()
                                                            if k not in ("stage", "steps", "trained_tokens", "flops")})
    if run.status != "succeeded":
        return TrainResult(run.status, total.step, total.trained_tokens, total.flops, run.eval_metrics)
    record = {"retrieval": {**retrieval, **{f"external_{k}": v for k, v in s_tokens.items()}},
              "stages": stages, "encoder": settings.shape.model_dump()}

    def save() -> None:
        classifier.save_pretrained(ctx.output_dir / "model")
        tokenizer.save_pretrained(ctx.output_dir / "model")
        shutil.copyfile(ctx.checkpoint_dir / "retrieval" / RETRIEVED, ctx.output_dir / RETRIEVED)

    per_stage = {f"{s['stage']}_{k}": s[k] for s in stages for k in ("flops", "trained_tokens")}
    result = finish_classification(ctx, total, classifier, valid, examples, labels, ctx.hyperparameters, save,
                                   metrics={**per_stage, "retrieval_seconds": retrieval["seconds"],
                                            "external_documents": retrieval["documents"]}, manifest={"tlm": record})
    accuracy = result.metrics.get("eval_accuracy")
    shown = f"validation accuracy {accuracy:.4f}, macro-F1 {result.metrics['eval_macro_f1']:.4f}" \
        if accuracy is not None else "no validation file, so no accuracy"
    ctx.sink.message(f"TLM finished: {shown} at {total.flops:.3e} training FLOPs ("
                     + ", ".join(f"{s['stage'].replace('stage', 'stage ')} {s['flops']:.3e}" for s in stages)
                     + f"); retrieval took {retrieval['seconds']:.1f} s, not counted in FLOPs",
                     data={"flops": total.flops, "eval_accuracy": accuracy, "eval_macro_f1":
                           result.metrics.get("eval_macro_f1"), "stages": stages,
                           "retrieval_seconds": retrieval["seconds"]})
    return result
