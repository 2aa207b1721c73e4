from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from app.training.base_facts import BaseFacts, BaseProblem
from app.training.config import MethodSettings
from app.training.head_warmup import AUTO_MIN_STEPS, AUTO_SHARE, HeadWarmup
from app.training.lora_shape import LoraShape
from app.training.masking import MaskingSettings
from app.training.methods import TaskMethod
from app.training.strategies.adapter.config import LanguageAdapterSettings, width_problem


def adapted_model_id(job_id: str) -> str:
    """The id an adaptive job's encoder is registered under; its task artifact names it as base."""
    return f"adapted:{job_id}"


class AdaptiveLora(LoraShape):
    """The LoRA adapter an MLM phase trains with `peft: "lora"` (Hu et al. 2021); it adapts the encoder only,
    never the MLM head."""


class AdaptiveSettings(MethodSettings):
    """Adaptive pretraining (Gururangan et al. 2020, "Don't Stop Pretraining"): continued masked-LM
    training on a domain corpus (DAPT; a corpus in another language makes it language-adaptive) and/or
    on the task's own texts (TAPT), in that order, then optionally a task method on the adapted
    encoder. `hyperparameters` is the MLM phases' schedule; the task method brings its own."""

    corpus_file: str | None = Field(None, description=(
        'DAPT: id of an uploaded corpus (purpose "corpus": plain text, one document per line, or JSONL {"text": '
        '"..."}, either gzip-compressed; or a fine-tune file of {"text"} rows, other fields ignored). Streamed from '
        "disk and packed into max_length blocks, never loaded whole."))
    tapt: bool = Field(False, description="TAPT: continue MLM on the training file's texts (labels ignored).")
    mlm: MaskingSettings = Field(default_factory=MaskingSettings, description="Masking of the MLM phases.")
    adapter: LanguageAdapterSettings | None = Field(None, description=(
        "Train a language adapter instead of the encoder (MAD-X, Pfeiffer et al. 2020): the MLM phases train "
        "only a bottleneck adapter (and MLM-head weights the base lacks, which are not shipped), the base "
        "stays frozen; the artifact is bottleneck/ (adapter weights + config). Stack it under task adapters "
        'with {"type": "adapter", "adapter": {"stack": ["<this job id>"]}}. Cannot combine with then.'))
    head_warmup: HeadWarmup = Field("auto", description=(
        "Steps that train only the MLM head (transform and decoder bias; the tied embeddings stay frozen) before "
        "each MLM phase trains the encoder, so a head the base lacks (minilm-l6 ships without one) does not push "
        "random gradients into the encoder (LP-FT, Kumar et al. 2022). auto: when the base's checkpoint lacks "
        f"MLM-head weights, max({AUTO_MIN_STEPS}, {AUTO_SHARE:g} × the phase's steps), else none; 0: never. "
        "Not with adapter (a language-adapter phase trains the adapter and a missing head together)."))
    encoder_lr_ratio: float = Field(1.0, gt=0, le=1, description=(
        "The encoder's learning rate in the MLM phases as a fraction (0, 1] of the head's (the phases' "
        "learning_rate): below 1 the encoder moves less while the head fits. 1: one rate for all."))
    peft: Literal["lora"] | None = Field(None, description=(
        'Parameter-efficient MLM phases: "lora" trains a LoRA adapter (settings in lora) on the frozen encoder instead '
        "of a full encoder copy; the adapted model (encoder/, registered as adapted:<job>) is then the base's id plus "
        "the adapter and the MLM-head weights the base lacked (a few MB), merged into the base in memory wherever it "
        "loads (the task phase of then, later jobs). Only LoRA: its update merges into the weights. Not with adapter."))
    lora: AdaptiveLora = Field(default_factory=AdaptiveLora, description='The adapter of peft: "lora".')
    then: TaskMethod | None = Field(None, description=(
        'A task method trained on the adapted encoder in the same job, e.g. {"type": "lora", "lora": {"r": 8}}, '
        "validated and resolved at submission; omitted: the job's result is the adapted encoder alone."))

    @classmethod
    def file_fields(cls) -> tuple[str, ...]:
        return ("corpus_file",)

    @model_validator(mode="after")
    def _something_to_adapt_on(self) -> AdaptiveSettings:
        if self.corpus_file is None and not self.tapt:
            raise ValueError("give corpus_file (domain-adaptive pretraining), tapt: true (task-adaptive), or both")
        return self

    @model_validator(mode="after")
    def _language_adapter_trains_alone(self) -> AdaptiveSettings:
        if self.adapter is not None and self.head_warmup not in (0, "auto"):
            raise ValueError("head_warmup trains the MLM head before the encoder; with adapter the encoder does not "
                             "train (a missing head trains with the adapter): drop head_warmup or set it to 0")
        if self.adapter is not None and self.peft is not None:
            raise ValueError("adapter (a MAD-X language adapter) and peft both choose what the MLM phases train; "
                             "drop one of them")
        if self.peft is None and self.lora != AdaptiveLora():
            raise ValueError('lora configures the adapter of peft: "lora"; set peft to "lora" or drop lora')
        if self.adapter is not None and self.then is not None:
            raise ValueError("adapter (a language adapter) cannot combine with then; train the task in a later "
                             'job: {"type": "adapter", "adapter": {"stack": ["<this job id>"]}}')
        if self.then is not None and getattr(self.then.settings, "stack", None):
            raise ValueError("then cannot stack adapters: it trains on the adapted encoder, not on the base the "
                             "stacked adapters were trained on; submit the stacked adapter as its own job")
        return self

    def check_base(self, facts: BaseFacts) -> list[BaseProblem]:
        """A language adapter's bottleneck must keep at least one unit on this base (MAD-X); LoRA's
        target_modules must name linear layers of the base."""
        problems = super().check_base(facts)
        if self.adapter is not None and (problem := width_problem(facts, self.adapter.reduction_factor)):
            problems.append(("adapter.reduction_factor", problem))
        if self.peft == "lora":
            problems += [(f"lora.{name}", why) for name, why in self.lora.encoder_target_problems(facts)]
        return problems
