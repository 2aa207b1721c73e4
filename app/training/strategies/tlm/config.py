"""TLM's settings (Yao et al. 2022, "NLP From Scratch Without Large-Scale Pretraining"), torch-free."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from app.training.config import MethodSettings
from app.training.masking import MaskingSettings


class EncoderShape(BaseModel):
    """The size of the randomly initialised encoder; the base model's config gives everything else."""

    model_config = ConfigDict(extra="forbid")

    hidden_size: int = Field(ge=8, le=4096)
    num_hidden_layers: int = Field(ge=1, le=48)
    num_attention_heads: int = Field(ge=1, le=64)
    intermediate_size: int = Field(ge=8, le=16384)

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> EncoderShape:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size {self.hidden_size} must be a multiple of num_attention_heads "
                             f"{self.num_attention_heads}")
        return self


# tiny: the tests; small / medium: BERT-Small / BERT-Medium of Turc et al. 2019 ("Well-Read Students Learn
# Better"); base: BERT-base, the size of the paper's small- and medium-scale TLM.
PRESETS: dict[str, EncoderShape] = {
    "tiny": EncoderShape(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
    "small": EncoderShape(hidden_size=512, num_hidden_layers=4, num_attention_heads=8, intermediate_size=2048),
    "medium": EncoderShape(hidden_size=512, num_hidden_layers=8, num_attention_heads=8, intermediate_size=2048),
    "base": EncoderShape(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
}


class TlmSettings(MethodSettings):
    """TLM: retrieve the documents of a general corpus nearest to the task's examples (BM25), then train
    a randomly initialised encoder on them and the task jointly (stage 1), then on the task alone (stage 2).
    `hyperparameters` is stage 1's schedule; its epochs are passes over the task data (each internal batch
    brings rho1 external ones, each its own optimizer step, as in the authors' code)."""

    corpus: str | None = Field(None, pattern=r"^corpus-", max_length=64, description=(
        "Id of an indexed corpus (POST /v1/corpora) to retrieve the external data from: the tenant's own or "
        "one an admin shared. It must be ready (not indexing) when the job is submitted. Omitted: no external "
        "data (the paper's ablation: a random encoder trained on the task with its MLM loss; rho1 must be 0)."))
    top_k: int = Field(50, ge=1, le=1000, description=(
        "Documents retrieved per training example (the paper's K; 50 in its small-scale runs)."))
    retrieval: Literal["bm25", "random"] = Field("bm25", description=(
        "bm25: each example's top_k documents; random: as many random documents as BM25 would have "
        "selected in total (the paper's ablation)."))
    query: Literal["text", "keywords"] = Field("text", description=(
        "text: the example's text is the query, except texts longer than keyword_threshold tokens, which "
        "query their keywords (as the paper does for long texts); keywords: always the keywords."))
    keyword_threshold: int = Field(256, ge=1, le=100_000, description=(
        "With query text: texts of more tokens (the base tokenizer's) query their keywords instead."))
    keywords: int = Field(20, ge=1, le=200, description=(
        "How many keywords make a keyword query: the words of highest TF-IDF in the example, document "
        "frequencies counted over the training file."))
    max_external_docs: int | None = Field(None, ge=1, le=100_000_000, description=(
        "Cap on the retrieved set S: the best-ranked documents are kept; null: no cap."))
    preset: str | EncoderShape = Field("small", description=(
        "Size of the encoder trained from scratch: tiny (tests), small (BERT-Small, 4 layers × 512), medium "
        "(BERT-Medium, 8 × 512), base (BERT-base, 12 × 768), or an explicit {hidden_size, num_hidden_layers, "
        "num_attention_heads, intermediate_size}. The job's model gives the architecture family and, with "
        "tokenizer base, the tokenizer; none of its weights are used."))
    tokenizer: Literal["base", "train"] = Field("base", description=(
        "base: the job's model's tokenizer; train: a WordPiece tokenizer trained on the task data and the "
        "retrieved documents (shipped in the artifact)."))
    vocab_size: int = Field(30522, ge=100, le=250_000, description="tokenizer train only: its vocabulary size.")
    rho1: int | None = Field(None, ge=0, le=10_000, description=(
        "External batches (MLM only) per internal batch in stage 1: the authors' external_ratio; a few for "
        "tasks with much data, up to ~1000 for low-resource ones. 0: no external data. Default: 3 with a "
        "corpus, 0 without."))
    rho2: float = Field(20.0, ge=0, le=10_000, description=(
        "Weight of the MLM loss on internal batches: loss = (rho2·MLM + task) / (rho2 + 1); the authors' "
        "mlm_weight (20 in their scripts). 0: the task loss alone."))
    stage2: bool = Field(True, description="Stage 2: fine-tune on the task alone (rho1 = rho2 = 0) after stage 1.")
    stage2_epochs: int = Field(3, ge=1, le=50, description="Stage 2's passes over the training file.")
    stage2_learning_rate: float | None = Field(None, gt=0, le=1, description=(
        "Stage 2's peak learning rate; null: stage 1's."))
    pooling: Literal["auto", "cls", "mean"] = Field("auto", description=(
        "What the task head reads: cls, BERT's pooler over [CLS] (the authors' model); mean, the masked mean of "
        "the last hidden states (Reimers & Gurevych 2019), which a from-scratch encoder makes useful within a few "
        "hundred steps where [CLS] is still untrained. auto: mean (BBC News from scratch, 2 layers × 128, 512 "
        "steps, no external data: validation accuracy 0.933 over the mean against 0.609 over [CLS], "
        "bench/tlm.py). A mean-pooled artifact loads with tuneforge's load_classifier, not plain transformers."))
    mlm: MaskingSettings = Field(default_factory=MaskingSettings, description="Masking of every MLM loss.")

    @field_validator("preset", mode="before")
    @classmethod
    def _known_preset(cls, value: Any) -> Any:
        if isinstance(value, str) and value not in PRESETS:
            raise ValueError(f"unknown preset {value!r}; choose one of {', '.join(PRESETS)} or give an encoder "
                             "config {hidden_size, num_hidden_layers, num_attention_heads, intermediate_size}")
        if isinstance(value, dict):  # validated here, so an error names the encoder field, not the union's arms
            try:
                return EncoderShape.model_validate(value)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(map(str, first["loc"]))
                raise ValueError(f"encoder config{' field ' + where if where else ''}: {first['msg']}") from None
        if not isinstance(value, str | EncoderShape):
            raise ValueError(f"preset must be one of {', '.join(PRESETS)} or an encoder config object")
        return value

    @model_validator(mode="after")
    def _external_data_needs_a_corpus(self) -> TlmSettings:
        if self.rho1 is None:
            self.rho1 = 3 if self.corpus else 0
        elif self.rho1 > 0 and self.corpus is None:
            raise ValueError(f"rho1={self.rho1} asks for external batches, which come from a corpus: give corpus "
                             "(an indexed corpus id, POST /v1/corpora) or set rho1 to 0")
        return self

    def corpus_fields(self) -> tuple[str, ...]:
        """Settings fields naming a corpus: the API checks each is usable by the tenant and ready, the
        worker hands its index directory to the strategy as `ctx.corpora[field]`."""
        return ("corpus",) if self.corpus else ()

    @property
    def shape(self) -> EncoderShape:
        return PRESETS[self.preset] if isinstance(self.preset, str) else self.preset
