"""MaskingSettings: every MLM knob, validated without torch (the API checks job specs with it)."""
from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

Replacement = Literal["bert_80_10_10", "mask_only", "custom"]
Unit = Literal["token", "whole_word", "span", "pmi"]

IGNORE_INDEX = -100  # label of positions without a loss (PyTorch's cross-entropy default)
MAX_RATE = 0.95
DEFAULT_PMI_MAX_NGRAM, DEFAULT_PMI_MIN_COUNT, DEFAULT_PMI_VOCAB_SIZE = 5, 5, 1000

_FIXED_REPLACEMENTS = {"bert_80_10_10": (0.8, 0.1, 0.1), "mask_only": (1.0, 0.0, 0.0)}
_CUSTOM_FIELDS = ("mask_fraction", "random_fraction", "same_fraction")
_UNIT_FIELDS = {"span": ("max_span_length", "span_geometric_p"),
                "pmi": ("pmi_max_ngram", "pmi_min_count", "pmi_vocab_size")}
# field -> (low, high): inclusive integer ranges
_INT_RANGES = {"max_span_length": (1, 64), "pmi_max_ngram": (2, 10), "pmi_min_count": (1, 10**9),
               "pmi_vocab_size": (1, 10**7), "seed": (0, 2**63 - 1)}


class MaskingSettings(BaseModel):
    """How MLM inputs are corrupted and which positions carry the loss (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    mask_rate: float = Field(0.15, description=(
        "Shorthand in (0, 0.95]: the fraction of maskable tokens both corrupted and predicted. BERT uses "
        "0.15; Wettig et al. 2023 find 0.40 better for large models."))
    corruption_rate: float | None = Field(None, description=(
        "m_corr in (0, 0.95]: fraction of maskable tokens whose input is changed; default mask_rate."))
    prediction_rate: float | None = Field(None, description=(
        "m_pred in (0, 0.95]: fraction of maskable tokens with a loss; default mask_rate. Below m_corr the loss "
        "is on a random subset of the corrupted tokens; above it, also on uncorrupted tokens (input unchanged)."))
    replacement: Replacement = Field("bert_80_10_10", description=(
        "What a corrupted token becomes: bert_80_10_10 (80% mask token, 10% random token, 10% unchanged), "
        "mask_only (always the mask token) or custom (mask_fraction / random_fraction / same_fraction)."))
    mask_fraction: float | None = Field(None, description=(
        "replacement='custom' only: share in [0, 1] of corrupted tokens replaced by the mask token."))
    random_fraction: float | None = Field(None, description=(
        "replacement='custom' only: share in [0, 1] of corrupted tokens replaced by a random non-special token."))
    same_fraction: float | None = Field(None, description=(
        "replacement='custom' only: share in [0, 1) of corrupted tokens left unchanged (but still predicted). "
        "The three shares must sum to 1; an omitted one counts as 0."))
    unit: Unit = Field("token", description=(
        "What is corrupted together: token (independent sub-word tokens), whole_word (all sub-tokens of a word), "
        "span (SpanBERT: runs of whole words) or pmi (PMI-Masking: high-PMI n-grams as one unit)."))
    max_span_length: int = Field(10, description="unit='span' only: longest span in words (1-64); SpanBERT uses 10.")
    span_geometric_p: float = Field(0.2, description=(
        "unit='span' only: p in (0, 1] of the Geometric span-length distribution, truncated at max_span_length; "
        "0.2 with 10 gives SpanBERT's mean of 3.8 words."))
    pmi_max_ngram: int = Field(DEFAULT_PMI_MAX_NGRAM, description=(
        "unit='pmi' only: longest word n-gram (2-10) scored for the PMI vocabulary."))
    pmi_min_count: int = Field(DEFAULT_PMI_MIN_COUNT, description=(
        "unit='pmi' only: n-grams seen fewer times (≥1) in the training corpus are not scored."))
    pmi_vocab_size: int = Field(DEFAULT_PMI_VOCAB_SIZE, description=(
        "unit='pmi' only: how many top-PMI n-grams (≥1) are masked as units."))
    seed: int | None = Field(None, description=(
        "Seed (≥0) of the masks: an MLM phase draws each batch's masks from (this seed, epoch, batch), so the "
        "same seed and data give the same masks and another seed other masks. Default: the job's seed. The "
        "held-out MLM score keeps the job's seed, so runs differing only here are scored on the same tokens."))

    @field_validator("mask_rate", "corruption_rate", "prediction_rate")
    @classmethod
    def _rate_in_range(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is not None and not (math.isfinite(value) and 0 < value <= MAX_RATE):
            raise ValueError(f"{info.field_name} must be within (0, {MAX_RATE}] (a fraction of tokens, e.g. 0.15 "
                             f"or 0.4), got {value}")
        return value

    @field_validator(*_CUSTOM_FIELDS)
    @classmethod
    def _fraction_in_range(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is not None and not (math.isfinite(value) and 0 <= value <= 1):
            raise ValueError(f"{info.field_name} must be within [0, 1], got {value}")
        return value

    @field_validator("span_geometric_p")
    @classmethod
    def _p_in_range(cls, value: float) -> float:
        if not (math.isfinite(value) and 0 < value <= 1):
            raise ValueError(f"span_geometric_p must be within (0, 1] (SpanBERT: 0.2), got {value}")
        return value

    @field_validator(*_INT_RANGES)
    @classmethod
    def _int_in_range(cls, value: int | None, info: ValidationInfo) -> int | None:
        low, high = _INT_RANGES[info.field_name]
        if value is not None and not low <= value <= high:
            raise ValueError(f"{info.field_name} must be within [{low}, {high}], got {value}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> MaskingSettings:
        # value-based checks (not `model_fields_set`), so a model_dump() re-validates unchanged
        defaults = type(self).model_fields
        if (self.corruption_rate is not None and self.prediction_rate is not None
                and self.mask_rate != defaults["mask_rate"].default):
            raise ValueError("mask_rate is ignored when corruption_rate and prediction_rate are both given; drop "
                             "mask_rate or one of the two")
        given = {name: getattr(self, name) for name in _CUSTOM_FIELDS if getattr(self, name) is not None}
        if self.replacement != "custom" and given:
            raise ValueError(f"{', '.join(given)} only apply to replacement='custom' (now {self.replacement!r}); "
                             "set replacement='custom' or drop them")
        if self.replacement == "custom":
            total = sum(given.values())
            if not given or abs(total - 1) > 1e-6:
                raise ValueError(f"with replacement='custom', mask_fraction + random_fraction + same_fraction must "
                                 f"sum to 1, got {total:g}")
            if given.get("same_fraction", 0) >= 1:
                raise ValueError("same_fraction=1 leaves every corrupted token unchanged, so nothing is masked; "
                                 "give some share to mask_fraction or random_fraction")
        for unit, names in _UNIT_FIELDS.items():
            changed = [n for n in names if self.unit != unit and getattr(self, n) != defaults[n].default]
            if changed:
                raise ValueError(f"{', '.join(changed)} only apply to unit={unit!r} (now {self.unit!r}); set "
                                 f"unit={unit!r} or drop them")
        return self

    def seed_or(self, job_seed: int) -> int:
        """The seed the masks are drawn from: `seed` when given, else the job's (reproducible either way)."""
        return self.seed if self.seed is not None else job_seed

    @property
    def effective_corruption_rate(self) -> float:
        """m_corr: corruption_rate, else mask_rate."""
        return self.corruption_rate if self.corruption_rate is not None else self.mask_rate

    @property
    def effective_prediction_rate(self) -> float:
        """m_pred: prediction_rate, else mask_rate."""
        return self.prediction_rate if self.prediction_rate is not None else self.mask_rate

    @property
    def replacement_fractions(self) -> tuple[float, float, float]:
        """(mask, random, same) shares of the corrupted tokens."""
        if self.replacement in _FIXED_REPLACEMENTS:
            return _FIXED_REPLACEMENTS[self.replacement]
        return tuple(getattr(self, name) or 0.0 for name in _CUSTOM_FIELDS)  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------
# PMI vocabulary (Levine et al. 2021)


