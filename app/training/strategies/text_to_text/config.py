from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Literal

from pydantic import Field, ValidationInfo, model_validator

from app.training.auto_rule import AutoRule
from app.training.base_facts import BaseProblem
from app.training.config import RESOLVED, MethodSettings
from app.training.lora_shape import LoraDropout, LoraShape, LoraTargets

if TYPE_CHECKING:
    from app.training.data import DatasetSummary

MAX_NEW_TOKENS = 256  # the bound on generation, here and in prediction requests
# task types of training files text_to_text reads: its own rows, chat rows, and single-label classification
# rows (input -> the label's name)
ACCEPTED_TASKS = ("text_to_text", "chat", "sequence_classification")
LORA_RULE_SOURCE = ("LoRA on a generative model (Hu et al. 2021 used 2e-4 for GPT-2 on E2E over 5 epochs; "
                    "tiny or random bases learn faster at a higher rate): 1e-3, up to 10 epochs on small files")


class TextToTextSettings(LoraShape, MethodSettings):
    """Text-to-text: a seq2seq or decoder LM learns to generate the target (Raffel et al. 2020, T5); full
    fine-tuning, or LoRA on its attention (Hu et al. 2021) with `peft: "lora"` (r, lora_alpha, lora_dropout and
    target_modules configure it)."""

    # a generative model's own defaults: less dropout, and peft's per-architecture targets (not an encoder's)
    lora_dropout: LoraDropout = 0.05
    target_modules: LoraTargets = Field(None, description=(
        "Modules LoRA adapts; default: peft's choice for the architecture (T5: q, v; GPT-2: c_attn; Llama: "
        'q_proj, v_proj), or "all-linear".'))
    peft: Literal["none", "lora"] = Field("none", description=(
        'none: every weight trains; "lora": a LoRA adapter through the peft library (the artifact is the adapter '
        "in PEFT's format, loadable with PeftModel.from_pretrained over the base)."))
    max_target_length: int = Field(64, ge=1, le=1024, description=(
        "Tokens of a target (or of each assistant turn's share of max_length) kept for training; longer ones "
        "are truncated."))
    max_new_tokens: int = Field(32, ge=1, le=MAX_NEW_TOKENS, description=(
        "Greedy generation length in validation and the default of predictions (a request may set its own, up to "
        f"{MAX_NEW_TOKENS})."))

    @model_validator(mode="after")
    def _lora_fields_need_lora(self, info: ValidationInfo) -> TextToTextSettings:
        given = set(LoraShape.model_fields) & self.model_fields_set
        resolved = bool(info.context and info.context.get(RESOLVED))  # a stored method shows every default
        if given and self.peft != "lora" and not resolved:
            raise ValueError(f'{sorted(given)} configure LoRA; set "peft": "lora" to use them, or leave them out')
        return self

    def auto_rule(self, rule: AutoRule) -> AutoRule:
        """LoRA trains fewer weights at a higher rate, for more epochs."""
        if self.peft == "lora":
            return dataclasses.replace(rule, learning_rate=1e-3, max_epochs=10, source=LORA_RULE_SOURCE)
        return rule

    def check_data(self, data: DatasetSummary) -> list[BaseProblem]:
        if data.task not in ACCEPTED_TASKS:
            return [("type", f"text_to_text learns from text-to-text ({{\"input\", \"target\"}}), chat "
                             f"({{\"messages\"}}) or single-label classification rows, not {data.task} rows")]
        if data.task == "sequence_classification" and data.has_pair:
            return [("type", "text_to_text reads one input text per row; join text and text_pair into \"input\" "
                             "of text-to-text rows")]
        return []
