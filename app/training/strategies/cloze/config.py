from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from app.training.base_facts import BaseFacts, BaseProblem
from app.training.config import AutoRule, TaskMethodSettings
from app.training.lora_shape import LoraShape
from app.training.stability.settings import StabilitySettings
from app.training.strategies.cloze.patterns import MASK, pattern_problem, slots_used

if TYPE_CHECKING:
    from app.training.data import DatasetSummary

DEFAULT_PATTERN = "{text} It was [MASK]."
MAX_WORD = 100  # characters of one verbalizer word
# the check behind cloze.peft's auto learning rate (auto_rule)
PEFT_CHECK = {"lora": "0.914 at 2e-3 vs 0.778 at 1e-4", "bitfit": "0.850 at 1e-2 vs 0.750 at 1e-4"}
# TaskMethodSettings options that have no meaning for a cloze model, and why
UNUSED = {"aux_mlm_weight": "cloze trains the masked-LM head itself; an auxiliary MLM loss is not available here",
          "train_pooler": "cloze predicts with the masked-LM head, which never reads the pooler"}


class ClozeLora(LoraShape):
    """LoRA (Hu et al. 2021) on the masked-LM's encoder: only the low-rank matrices train and ship (plus the
    MLM-head transform when the base lacked one)."""

    type: Literal["lora"] = Field(description="LoRA adapters on the encoder; the artifact is adapter/ (peft).")


class ClozeBitFit(BaseModel):
    """BitFit (Ben-Zaken et al. 2021) on the masked-LM: only bias terms train and ship (plus the MLM-head
    transform when the base lacked one)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["bitfit"] = Field(description="Bias terms only; the artifact is delta/delta.safetensors.")


ClozePeft = Annotated[ClozeLora | ClozeBitFit, Field(discriminator="type")]


class ClozeSettings(TaskMethodSettings):
    """Pattern-verbalizer fine-tuning with the masked-LM head, no new head (PET, Schick & Schütze 2021,
    "Exploiting Cloze Questions for Few Shot Text Classification and Natural Language Inference").

    Each example is written into every pattern; the model predicts the word at [MASK], and the loss is the
    cross-entropy over the verbalizer's words there. One model learns all patterns; a prediction averages
    the label log-probabilities over the patterns (PET instead trains one model per pattern and distils
    their ensemble on unlabelled data)."""

    @field_validator("pooling")
    @classmethod
    def _no_pooled_head(cls, value: str) -> str:
        if value == "mean":
            raise ValueError("cloze reads the masked-LM head at the mask of its patterns and pools nothing; leave "
                             "pooling 'cls'")
        return value

    patterns: list[str] = Field([DEFAULT_PATTERN], min_length=1, max_length=16, description=(
        f"Templates with the slot {{text}} (and {{text_pair}} for pair files) and exactly one {MASK}, which "
        "becomes the tokenizer's mask token, e.g. \"{text} It was [MASK].\". Texts are truncated to fit "
        "max_length; the pattern's own words and the mask always stay. Several patterns are ensembled."))
    verbalizer: dict[str, str] | None = Field(None, max_length=1000, description=(
        "Label → the word the model should predict at the mask, e.g. {\"pos\": \"great\", \"neg\": \"terrible\"}; "
        "every label of the training file needs one, each word distinct. A word of several tokens scores the "
        "mean of its tokens' log-probabilities at the mask. Default: each label's own name as its word."))
    peft: ClozePeft | None = Field(None, description=(
        'Train only part of the masked-LM: {"type": "lora", "r": 8, …} (adapter/, peft\'s format) or '
        '{"type": "bitfit"} (delta/, biases only); default: every weight trains (mlm/, a whole masked-LM).'))

    unsupported_stability: ClassVar[dict[str, str]] = {"lp_ft": (
        "cloze has no new classification head to fit first (it reads the pretrained masked-LM head through the "
        "verbalizer); leave lp_ft out")}

    @field_validator("stability")
    @classmethod
    def _no_head_to_normalize(cls, stability: StabilitySettings | None) -> StabilitySettings | None:
        if stability is not None and stability.regularizer is not None and stability.regularizer.type == "r4f":
            raise ValueError("stability.regularizer r4f spectrally normalises a classification head, which cloze does "
                             "not have; use r3f (the same term without the head) or smart")
        return stability

    @field_validator("patterns")
    @classmethod
    def _patterns_are_cloze(cls, patterns: list[str]) -> list[str]:
        for i, pattern in enumerate(patterns):
            if len(pattern) > 1000:
                raise ValueError(f"pattern {i} is longer than 1000 characters")
            if problem := pattern_problem(pattern):
                raise ValueError(f"pattern {i}: {problem}")
        if len(set(patterns)) < len(patterns):
            raise ValueError("the same pattern is given twice")
        if len({"{text_pair}" in pattern for pattern in patterns}) > 1:
            raise ValueError("some patterns use {text_pair} and some do not; a file either has text pairs "
                             "(every pattern needs {text_pair}) or not (none may use it)")
        return patterns

    @field_validator("verbalizer")
    @classmethod
    def _words_are_distinct(cls, verbalizer: dict[str, str] | None) -> dict[str, str] | None:
        if verbalizer is None:
            return None
        if not verbalizer:
            raise ValueError("the verbalizer is empty; map every label to a word, or leave it out to use the labels")
        for label, word in verbalizer.items():
            if not word.strip():
                raise ValueError(f"label {label!r} has an empty word; give it a word such as {label!r}")
            if len(word) > MAX_WORD:
                raise ValueError(f"label {label!r}'s word is longer than {MAX_WORD} characters")
        _refuse_shared_words(verbalizer)
        return {label: word.strip() for label, word in verbalizer.items()}

    @field_validator(*UNUSED)
    @classmethod
    def _unused_options_off(cls, value: object, info: ValidationInfo) -> object:
        if value:
            raise ValueError(UNUSED[info.field_name])
        return value

    def words(self, labels: list) -> dict[str, str]:
        """Label (as a string) → word: the verbalizer's, or each label's own name."""
        return self.verbalizer if self.verbalizer is not None else {str(label): str(label) for label in labels}

    def auto_rule(self, rule: AutoRule) -> AutoRule:
        """With cloze.peft, the learning rate of LoRA's or BitFit's own rule: a few low-rank matrices or biases
        need a hotter rate than the whole masked-LM (checked on 128 election tweets, bench.bare_run seed 0).
        stability.recipe "mosbach" then applies to that rule, as for every method."""
        if self.peft is None:
            return super().auto_rule(rule)
        from app.training.registry import get_strategy

        rate = get_strategy(self.peft.type).auto.learning_rate
        return super().auto_rule(dataclasses.replace(rule, learning_rate=rate, source=(
            f"{rule.source}. With cloze.peft {self.peft.type}: {rate:g}, {self.peft.type}'s own rate (validation "
            f"accuracy with 128 election tweets: {PEFT_CHECK[self.peft.type]})")))

    def check_base(self, facts: BaseFacts) -> list[BaseProblem]:
        """LoRA's target_modules (given or the defaults) must be linear layers of the base."""
        problems = super().check_base(facts)
        if not isinstance(self.peft, ClozeLora):
            return problems
        return problems + [(f"peft.{field}", message) for field, message in self.peft.encoder_target_problems(facts)]

    def check_data(self, data: DatasetSummary) -> list[BaseProblem]:
        """Every label of the training file has a word, and {text_pair} is used exactly when it has pairs."""
        problems: list[BaseProblem] = []
        pairs = any("text_pair" in slots_used(p) for p in self.patterns)
        if pairs and not data.has_pair:
            problems.append(("patterns", 'use {text_pair}, but the training file has no "text_pair"; remove it'))
        elif data.has_pair and not pairs:
            problems.append(("patterns", 'do not use {text_pair}, but the training file has text pairs; add '
                                         '{text_pair} to every pattern, e.g. "{text}? [MASK], {text_pair}"'))
        missing = [str(label) for label in data.labels if str(label) not in self.words(data.labels)]
        if missing:
            problems.append(("verbalizer", f"has no word for the label(s) {missing[:10]} of the training file; "
                                           f"map every label to a word"))
        return problems


def _refuse_shared_words(verbalizer: dict[str, str]) -> None:
    """Two labels never share a word (a prediction could not tell them apart)."""
    seen: dict[str, str] = {}
    for label, word in verbalizer.items():
        key = word.strip()
        if key in seen:
            raise ValueError(f"labels {seen[key]!r} and {label!r} both map to {key!r}; give each label its own word")
        seen[key] = label
