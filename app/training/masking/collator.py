"""MlmCollator: tokenize or pad rows, then mask them; a DataLoader collate_fn."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from app.training.masking.masker import MlmMasker
from app.training.masking.pmi import PmiVocabulary
from app.training.masking.settings import MaskingSettings

if TYPE_CHECKING:
    import torch


class MlmCollator:
    """`collate_fn` for a DataLoader: tokenizes raw texts or pads pre-tokenized rows, then masks.

    A feature is a string, a mapping with "text" (and optionally "text_pair"), or a mapping with
    "input_ids" (optionally "attention_mask", "token_type_ids", "special_tokens_mask",
    "word_ids"), e.g. `Batches.features` from the classification loop. Rows are right-padded to
    the longest in the batch, as `loop.Batches` does. The batch holds input_ids, attention_mask,
    token_type_ids (when the tokenizer makes them) and labels, ready for `model(**batch)`.

    In DataLoader worker processes the generator is re-seeded from the worker's seed on first
    use, so workers do not repeat each other's masks.
    """

    def __init__(self, tokenizer: Any, settings: MaskingSettings, pmi_vocab: PmiVocabulary | None = None, *,
                 max_length: int = 128, pad_to_multiple_of: int | None = None,
                 generator: torch.Generator | None = None):
        if settings.unit in ("whole_word", "pmi") and not getattr(tokenizer, "is_fast", False):
            raise ValueError(f"unit={settings.unit!r} needs a fast tokenizer (for word_ids()); load the tokenizer "
                             "with use_fast=True or use unit='token'")
        self.tokenizer = tokenizer
        self.masker = MlmMasker.from_tokenizer(tokenizer, settings, pmi_vocab, generator)
        self.max_length = max_length
        self.pad_to_multiple_of = pad_to_multiple_of
        self._worker: int | None = None

    def __call__(self, features: Sequence[str | Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("cannot collate an empty batch")
        self._reseed_in_worker()
        tokenized = [isinstance(f, Mapping) and "input_ids" in f for f in features]
        if all(tokenized):
            batch, word_ids = self._pad(features)  # type: ignore[arg-type]
        elif not any(tokenized):
            batch, word_ids = self._tokenize(features)
        else:
            raise ValueError("a batch mixes raw texts and pre-tokenized rows; use one form per dataset")
        special = batch.pop("special_tokens_mask", None)
        batch["input_ids"], batch["labels"] = self.masker(batch["input_ids"], batch["attention_mask"],
                                                          special_tokens_mask=special, word_ids=word_ids)
        return batch

    def _reseed_in_worker(self) -> None:
        from torch.utils.data import get_worker_info

        info = get_worker_info()
        if info is not None and info.id != self._worker:
            generator = self.masker.generator
            generator.manual_seed((generator.initial_seed() * 1_000_003 + info.seed) % 2**63)
            self._worker = info.id

    def _tokenize(self, features: Sequence[str | Mapping[str, Any]]) -> tuple[dict, list | None]:
        rows = [{"text": f} if isinstance(f, str) else f for f in features]
        if any(not isinstance(r.get("text"), str) for r in rows):
            raise ValueError('each feature must be a string, a mapping with a "text" string, or a mapping with '
                             '"input_ids"')
        pairs = [r.get("text_pair") for r in rows]
        if any(p is not None for p in pairs) and any(p is None for p in pairs):
            raise ValueError('some rows have "text_pair" and some do not; use one form per dataset')
        encoded = self.tokenizer([r["text"] for r in rows], pairs if pairs[0] is not None else None,
                                 truncation=True, max_length=self.max_length, padding=True,
                                 pad_to_multiple_of=self.pad_to_multiple_of, return_tensors="pt",
                                 return_special_tokens_mask=True)
        word_ids = [encoded.word_ids(i) for i in range(len(rows))] if self.tokenizer.is_fast else None
        keys = ("input_ids", "attention_mask", "token_type_ids", "special_tokens_mask")
        return {k: encoded[k] for k in keys if k in encoded}, word_ids

    def _pad(self, features: Sequence[Mapping[str, Any]]) -> tuple[dict, list | None]:
        import torch

        longest = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            longest = -(-longest // self.pad_to_multiple_of) * self.pad_to_multiple_of
        pad_id = self.tokenizer.pad_token_id or 0
        fill = {"input_ids": pad_id, "attention_mask": 0, "token_type_ids": 0, "special_tokens_mask": 1}
        batch = {}
        for key, value in fill.items():
            if key == "input_ids" or key in features[0]:
                batch[key] = torch.tensor([list(f[key]) + [value] * (longest - len(f[key])) for f in features])
        if "attention_mask" not in batch:
            batch["attention_mask"] = torch.tensor([[1] * len(f["input_ids"]) + [0] * (longest - len(f["input_ids"]))
                                                    for f in features])
        word_ids = None
        if all("word_ids" in f for f in features):
            word_ids = [list(f["word_ids"]) + [None] * (longest - len(f["word_ids"])) for f in features]
        return batch, word_ids
