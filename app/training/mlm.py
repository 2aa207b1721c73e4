"""Continued masked-language-model pretraining of an encoder on raw texts: the phase behind
domain-, task- and language-adaptive pretraining (Gururangan et al. 2020, "Don't Stop
Pretraining") and TLM's MLM objective.

Masking is app.training.masking (every option of Wettig et al. 2022). Each batch's masks come from
a generator seeded with (masking seed, epoch, batch), the masking seed being `masking.seed` else the
job's seed, so a resumed phase corrupts exactly the tokens an uninterrupted one would. A held-out
share of the texts, masked once with the job's seed, scores the encoder before and after (MLM loss
and masked-token accuracy), so the two figures are comparable, also across masking seeds.

The texts come as a list, one row each (TAPT), or as a corpus file streamed from disk and packed
into blocks, never held whole (DAPT; mlm_stream.py).

A base without its MLM head can first train the head alone (`head_warmup`, mlm_head_warmup.py,
LP-FT of Kumar et al. 2022), and the encoder can train at a fraction of the head's rate
(`encoder_lr_ratio`).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from app.training.adapted_base import load_pretrained, weights_dir
from app.training.base import OffsetSink, ProgressSink, TrainingError
from app.training.batching import length_grouping
from app.training.config import Hyperparameters
from app.training.engine import Run, RunResult, batch_seed, epoch_batches, optimize, seed_everything
from app.training.masking import IGNORE_INDEX, MaskingSettings, MlmCollator, PmiVocabulary, build_pmi_vocabulary
from app.training.head_warmup import HeadWarmup
from app.training.mlm_stream import BUFFER_BLOCKS, NO_MASKABLE_TOKENS, PackedCorpus
from app.training.mlm_head_warmup import (WarmupPlan, encoder_lr_groups, finished_warmup, head_parameters, plan,
                                          warm_up_head)


@dataclass
class MlmPhase:
    texts: list[str]  # one row per text, truncated at max_length (TAPT: the task's texts); [] with corpus_path
    masking: MaskingSettings
    hyperparameters: Hyperparameters
    base_path: Path  # a save_pretrained directory (model + tokenizer)
    output_dir: Path  # the adapted encoder is saved here (model with its MLM head + tokenizer)
    checkpoint_dir: Path
    sink: ProgressSink
    resume_from: Path | None = None
    held_out: float = 0.05  # share of texts kept for the before/after score (at least one text)
    label: str = "MLM: "
    # a parameter-efficient phase (a MAD-X language adapter, Pfeiffer et al. 2020): prepare(model,
    # missing_keys) adds modules and chooses what trains; save(model, tokenizer, output_dir) writes
    # only that. None: the whole encoder trains and is saved with save_pretrained.
    # prepare returns the missing keys it filled (an earlier phase's head), or None
    prepare: Callable[[torch.nn.Module, set[str]], set[str] | None] | None = None
    save: Callable[[torch.nn.Module, Any, Path], None] | None = None
    head_warmup: HeadWarmup = 0  # head-only steps before the encoder trains; "auto": when the base lacks the head
    encoder_lr_ratio: float = 1.0  # the encoder's learning rate as a multiple of the head's
    # a corpus file streamed from disk and packed into blocks instead of `texts` (DAPT, mlm_stream.py)
    corpus_path: Path | None = None
    corpus_param: str = "method.adaptive.corpus_file"
    buffer_blocks: int = BUFFER_BLOCKS  # the streamed corpus's shuffle buffer
    warmup_with_adapter: bool = False  # the head warm-up also runs before a `prepare`d phase (LoRA; not MAD-X)


@dataclass
class MlmResult:
    run: RunResult
    before: dict[str, float] = field(default_factory=dict)  # mlm_loss, mlm_accuracy on held-out texts
    after: dict[str, float] = field(default_factory=dict)
    packed: PackedCorpus | None = None  # the streamed corpus (its counts and peak memory), when one was


def split_held_out(texts: list[str], share: float, seed: int) -> tuple[list[str], list[str]]:
    """(train, held out): a seeded share of the texts, at least one, never all of them."""
    if len(texts) < 2:
        raise TrainingError("The MLM corpus needs at least 2 non-empty texts (one is held out to score it).",
                            code="invalid_corpus")
    order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(seed)).tolist()
    n_held = min(len(texts) - 1, max(1, round(share * len(texts))))
    held = set(order[:n_held])
    return [t for i, t in enumerate(texts) if i not in held], [texts[i] for i in sorted(held)]


def pmi_vocabulary(masking: MaskingSettings, texts: Iterable[str], tokenizer: Any, param: str) -> PmiVocabulary | None:
    """The PMI-Masking vocabulary of `texts` when `masking.unit` is pmi (else None); a corpus too
    small to score n-grams fails the job naming `param`."""
    if masking.unit != "pmi":
        return None
    try:
        return build_pmi_vocabulary(texts, max_ngram=masking.pmi_max_ngram, min_count=masking.pmi_min_count,
                                    vocab_size=masking.pmi_vocab_size, tokenizer=tokenizer)
    except ValueError as exc:
        raise TrainingError(f"PMI masking: {exc}", code="invalid_method_settings", param=param) from exc


@dataclass
class MaskedLmOutput:
    loss: torch.Tensor
    logits: torch.Tensor  # (predicted positions, vocabulary)
    labels: torch.Tensor  # (predicted positions,)


def masked_lm_head(model: torch.nn.Module) -> torch.nn.Module | None:
    """The head of a *ForMaskedLM model when it is one module on the encoder's last hidden state (BERT's
    `cls`, RoBERTa's `lm_head`): the model's one child besides its encoder; None for other layouts."""
    heads = [m for name, m in model.named_children() if name != model.base_model_prefix]
    return heads[0] if len(heads) == 1 else None


class PredictedPositionsOnly(torch.nn.Module):
    """A masked-LM model whose head runs only where a label is set.

    Stock *ForMaskedLM heads score every position: with BERT's vocabulary the decoder alone costs
    about as much as a small encoder, and 85% of it is discarded at a 15% prediction rate. The
    loss is the stock one (mean cross-entropy over predicted positions). Architectures whose head
    is not one module on the encoder's last hidden state (BERT's `cls`, RoBERTa's `lm_head`) fall
    back to the stock forward."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model
        self.head = masked_lm_head(model)

    def forward(self, labels: torch.Tensor, **inputs: torch.Tensor) -> MaskedLmOutput:
        where = labels != IGNORE_INDEX
        if self.head is None:
            logits = self.model(**inputs).logits[where]
        else:
            logits = self.head(self.model.base_model(**inputs).last_hidden_state[where])
        targets = labels[where]
        if len(targets) == 0:  # nothing predicted in this batch (short texts, low rate): no MLM signal, not NaN
            return MaskedLmOutput(logits.sum() * 0.0, logits, targets)
        return MaskedLmOutput(torch.nn.functional.cross_entropy(logits.float(), targets), logits, targets)


def _score(model: PredictedPositionsOnly, batches: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    """Mean MLM loss and accuracy over every predicted token of the (pre-masked) held-out batches."""
    model.eval()
    loss_sum, correct, count = 0.0, 0, 0
    with torch.no_grad():
        for batch in batches:
            out = model(**batch)
            loss_sum += torch.nn.functional.cross_entropy(out.logits.float(), out.labels, reduction="sum").item()
            correct += int((out.logits.argmax(-1) == out.labels).sum())
            count += len(out.labels)
    model.train()
    if count == 0:
        return {}
    return {"mlm_loss": loss_sum / count, "mlm_accuracy": correct / count}


def run_mlm(phase: MlmPhase) -> MlmResult:
    """Train the base encoder with MLM on `phase.texts` (or the streamed `corpus_path`); on success save
    it (or what `save` writes) to `output_dir`."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    hp = phase.hyperparameters
    seed_everything(hp.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = AutoTokenizer.from_pretrained(phase.base_path)
    if tokenizer.mask_token_id is None:
        raise TrainingError("This base model's tokenizer has no mask token, so it cannot do masked-language "
                            "modelling; choose an encoder such as BERT or MiniLM.", code="invalid_base_model",
                            param="model")
    model, info = load_pretrained(AutoModelForMaskedLM, phase.base_path, output_loading_info=True)
    supplied = phase.prepare(model, set(info["missing_keys"])) if phase.prepare is not None else None
    missing_keys = sorted(set(info["missing_keys"]) - (supplied or set()))  # an earlier phase's head counts
    if missing_keys:
        phase.sink.message(f"{phase.label}The base model lacks {len(missing_keys)} MLM-head weights "
                           f"({', '.join(missing_keys[:4])}…); they start random and are learned",
                           level="warn", data={"missing_keys": missing_keys})
    model.to(device)
    trained = PredictedPositionsOnly(model)
    source = _training_rows(phase, tokenizer)
    collator = MlmCollator(tokenizer, phase.masking, source.pmi_vocab, max_length=hp.max_length,
                           generator=torch.Generator())

    def masked(rows: list, seed: int) -> dict[str, torch.Tensor]:
        collator.masker.generator.manual_seed(seed)
        return {k: v.to(device) for k, v in collator(rows).items()}

    held = _features(tokenizer, source.held_texts, hp.max_length, phase.masking)
    held_batches = [masked(held[i:i + 64], hp.seed + i) for i in range(0, len(held), 64)]
    before = _score(trained, held_batches)
    phase.sink.metrics(0, {f"before_{k}": v for k, v in before.items()})

    mask_seed = phase.masking.seed_or(hp.seed)

    def batch(epoch: int, b: int) -> dict[str, torch.Tensor]:
        return masked(source.rows(epoch, b), batch_seed(mask_seed, epoch, b))

    # select_best ranks by validation accuracy on the labelled task, which an MLM phase has not: every
    # held-out score would tie and the first evaluated checkpoint would win; the phase ends on its last step
    hp = dataclasses.replace(hp, select_best=False)
    steps_per_epoch = source.steps_per_epoch
    head = head_parameters(model, trained.head) if trained.head is not None else []
    warmup = _warmup_plan(phase, model, missing_keys, head, steps_per_epoch * hp.n_epochs)
    warm = _warm_up(phase, trained, head, warmup, hp, batch, steps_per_epoch, held_batches)
    if warm is not None and warm.status != "succeeded":
        return MlmResult(warm, before, packed=source.packed)
    offset = warm.step if warm is not None else 0
    run = optimize(Run(model=trained, hyperparameters=hp, steps_per_epoch=steps_per_epoch,
                       batch=batch, sink=OffsetSink(phase.sink, offset) if offset else phase.sink,
                       checkpoint_dir=phase.checkpoint_dir, resume_from=phase.resume_from,
                       evaluate=lambda: _score(trained, held_batches), label=phase.label,
                       parameter_groups=encoder_lr_groups(trained, head, hp.learning_rate, phase.encoder_lr_ratio),
                       tags={**({"head_warmup_steps": warmup.steps} if warmup.steps else {}), **source.tags()}))
    if warm is not None:  # the phase's totals count the warm-up too
        run = dataclasses.replace(run, step=run.step + warm.step, trained_tokens=run.trained_tokens + warm.trained_tokens,
                                  flops=run.flops + warm.flops)
    if run.status != "succeeded":
        return MlmResult(run, before, packed=source.packed)
    after = _score(trained, held_batches)
    phase.sink.metrics(run.step, {f"after_{k}": v for k, v in after.items()})
    phase.output_dir.mkdir(parents=True, exist_ok=True)
    if phase.save is not None:
        phase.save(model, tokenizer, phase.output_dir)
        return MlmResult(run, before, after, source.packed)
    model.save_pretrained(phase.output_dir)
    tokenizer.save_pretrained(phase.output_dir)
    _carry_encoder_weights(phase, model, info["unexpected_keys"])
    return MlmResult(run, before, after, source.packed)


@dataclass
class TrainingRows:
    """What an MLM phase trains and scores on, from a list of texts or a streamed corpus file."""

    rows: Callable[[int, int], list[dict[str, Any]]]  # (epoch, batch) -> unmasked rows
    steps_per_epoch: int
    held_texts: list[str]
    pmi_vocab: PmiVocabulary | None
    packed: PackedCorpus | None = None

    def tags(self) -> dict[str, int]:
        """A streamed corpus's shape, kept in checkpoints: a resume over other blocks is refused."""
        if self.packed is None:
            return {}
        return {"corpus_documents": self.packed.n_documents, "corpus_blocks": self.packed.n_blocks}


def _training_rows(phase: MlmPhase, tokenizer: Any) -> TrainingRows:
    hp = phase.hyperparameters
    if phase.corpus_path is not None:
        packed = PackedCorpus(phase.corpus_path, tokenizer, hp.max_length, hp.batch_size, hp.seed,
                              word_ids=phase.masking.unit != "token", held_out_share=phase.held_out,
                              buffer_blocks=phase.buffer_blocks, param=phase.corpus_param).prepare()
        phase.sink.message(f"{phase.label}Streaming {packed.n_documents:,} documents from disk as {packed.n_blocks:,} "
                           f"blocks of up to {hp.max_length} tokens ({len(packed.held_out_texts)} documents held "
                           f"out); at most {packed.max_blocks_held:,} blocks in memory",
                           data={"documents": packed.n_documents, "blocks": packed.n_blocks,
                                 "max_blocks_held": packed.max_blocks_held})
        vocab = _announced_pmi(phase, packed.train_texts(), tokenizer)
        return TrainingRows(packed.batch_rows, packed.steps_per_epoch, packed.held_out_texts, vocab, packed)
    train_texts, held_texts = split_held_out(phase.texts, phase.held_out, hp.seed)
    vocab = _announced_pmi(phase, train_texts, tokenizer)
    features = _features(tokenizer, train_texts, hp.max_length, phase.masking)
    special = set(tokenizer.all_special_ids)  # as the masker counts them: [UNK] and [MASK] included
    if all(token in special for row in features for token in row["input_ids"]):
        raise TrainingError(NO_MASKABLE_TOKENS, code="invalid_corpus")
    lengths = [len(row["input_ids"]) for row in features]  # streamed blocks (above) are packed: all one length
    grouped, why = length_grouping(hp.group_by_length, lengths, hp.batch_size, hp.seed)
    phase.sink.message(f"{phase.label}Length-grouped batches {'on' if grouped else 'off'} ({why})",
                       data={"group_by_length": grouped})
    rows_of = epoch_batches(len(features), hp, lengths if grouped else None)
    return TrainingRows(lambda epoch, b: [features[i] for i in rows_of(epoch, b)],
                        math.ceil(len(features) / hp.batch_size), held_texts, vocab)


def _announced_pmi(phase: MlmPhase, texts: Iterable[str], tokenizer: Any) -> PmiVocabulary | None:
    vocab = pmi_vocabulary(phase.masking, texts, tokenizer, param="mlm.pmi_min_count")
    if vocab is not None:
        phase.sink.message(f"{phase.label}PMI vocabulary: {len(vocab)} n-grams from {vocab.n_words:,} words",
                           data={"pmi_ngrams": len(vocab)})
    return vocab


def _warmup_plan(phase: MlmPhase, model: torch.nn.Module, missing_keys: list[str], head: list[torch.nn.Parameter],
                 phase_steps: int) -> WarmupPlan:
    """The warm-up to run, said in an event whether it runs or not, and why."""
    trains_adapter = phase.prepare is not None and not phase.warmup_with_adapter
    warmup = plan(phase.head_warmup, model, missing_keys, phase_steps, trains_adapter=trains_adapter)
    if warmup.steps and not head:
        warmup = WarmupPlan(0, "this architecture's MLM head is not one module on the encoder", warmup.missing_head_keys)
    data = {"head_warmup_steps": warmup.steps, "reason": warmup.reason, "missing_head_keys": warmup.missing_head_keys}
    if warmup.steps:
        phase.sink.message(f"{phase.label}MLM head warm-up: {warmup.steps} steps training only the head "
                           f"({sum(p.numel() for p in head):,} weights) before the encoder ({warmup.reason})", data=data)
    elif phase.head_warmup != 0:
        phase.sink.message(f"{phase.label}No MLM head warm-up: {warmup.reason}", data=data)
    return warmup


def _warm_up(phase: MlmPhase, trained: PredictedPositionsOnly, head: list[torch.nn.Parameter], warmup: WarmupPlan,
             hp: Hyperparameters, batch: Callable[[int, int], dict[str, torch.Tensor]], steps_per_epoch: int,
             held_batches: list[dict[str, torch.Tensor]]) -> RunResult | None:
    """Run (or resume) the head-only steps; a phase resumed past them reads their totals back."""
    if not warmup.steps:
        return None
    if phase.resume_from is not None:  # the encoder phase has a checkpoint: the warm-up is behind it
        done = finished_warmup(phase.checkpoint_dir)
        return RunResult("succeeded", done.get("step", warmup.steps), done.get("trained_tokens", 0),
                         done.get("flops", 0.0), float("nan"))
    warm = warm_up_head(trained, head, warmup.steps, hp, batch, steps_per_epoch, phase.sink, phase.checkpoint_dir,
                        phase.label)
    if warm.status == "succeeded":
        phase.sink.metrics(warm.step, {f"head_warmup_{k}": v for k, v in _score(trained, held_batches).items()})
    return warm


def _carry_encoder_weights(phase: MlmPhase, model: torch.nn.Module, unused: list[str]) -> None:
    """Keep the base's encoder weights the MLM model has no place for (BERT's pooler), so a task
    phase on the adapted encoder starts from the same weights it would on the base, not from a
    random pooler. Other heads of the base (e.g. next-sentence prediction) are dropped."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    prefix = model.base_model_prefix + "."
    saved, base = phase.output_dir / "model.safetensors", weights_dir(phase.base_path) / "model.safetensors"
    if not unused:
        return
    if not (saved.is_file() and base.is_file()):  # sharded checkpoints: not merged here
        phase.sink.message(f"{phase.label}{len(unused)} base weights outside the MLM model are not kept in the "
                           "adapted encoder; a task phase initialises them anew", level="warn")
        return
    tensors = load_file(saved)
    with safe_open(str(base), "pt") as source:
        names = set(source.keys())
        # a full-model checkpoint (BertForPreTraining) names encoder weights "bert.…" and its other
        # heads otherwise; a bare encoder checkpoint (BertModel, e.g. minilm-l6) has no prefix at all
        prefixed = any(name.startswith(prefix) for name in names)
        for key in sorted(unused):
            if key.startswith(prefix) and key in names:
                tensors[key] = source.get_tensor(key)
            elif not prefixed and key in names:
                tensors[prefix + key] = source.get_tensor(key)
    save_file(tensors, saved, metadata={"format": "pt"})


def _features(tokenizer: Any, texts: list[str], max_length: int, masking: MaskingSettings) -> list[dict[str, Any]]:
    """Tokenized rows (with word ids when the unit needs words), padded per batch later."""
    encoded = tokenizer(texts, truncation=True, max_length=max_length, return_special_tokens_mask=True)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids", "special_tokens_mask") if k in encoded]
    rows = [{k: encoded[k][i] for k in keys} for i in range(len(texts))]
    if masking.unit != "token":
        for i, row in enumerate(rows):
            row["word_ids"] = encoded.word_ids(i)
    return rows
