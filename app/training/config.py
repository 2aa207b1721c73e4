"""Settings every strategy shares, validated by the API without importing torch."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from app.training.auto_rule import AutoRule, Preset, Scheduler
from app.training.base_facts import BaseFacts, BaseProblem
from app.training.masking.settings import MaskingSettings
from app.training.stability.recipe import few_shot_switch, mosbach_rule
from app.training.stability.settings import StabilitySettings

if TYPE_CHECKING:
    from app.training.data import DatasetSummary

Auto = Literal["auto"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]


@dataclass
class Hyperparameters:
    """Resolved hyper-parameters ("auto" already replaced by concrete values)."""

    n_epochs: int
    batch_size: int
    learning_rate: float
    seed: int
    max_length: int = 128
    head_learning_rate: float | None = None  # new weights (head, trained pooler); None: learning_rate
    warmup_ratio: float = 0.06
    weight_decay: float = 0.0
    checkpoint_every: int | None = None  # optimizer steps; None = once per epoch
    eval_every: int | None = None  # optimizer steps; None = once per epoch
    lr_scheduler: Scheduler = "linear"
    max_grad_norm: float | None = 1.0  # None: no clipping
    select_best: bool = True  # with a validation file: the artifact is the best evaluated checkpoint
    gradient_accumulation_steps: int = 1  # each optimizer step's batch_size rows run as this many micro-batches
    precision: Precision = "auto"  # resolved by the engine on the device it trains on (app.training.precision)
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, ~30% more compute
    group_by_length: bool | Literal["auto"] = "auto"  # batches of similar lengths (app.training.batching)


@dataclass(frozen=True)
class SubmissionFacts:
    """What the API knows of a job besides its method, for MethodSettings.check_submission."""

    has_validation_file: bool
    max_seeds: int  # the service's limit on stability.n_seeds


# model types whose sequence-classification head reads `base_model.pooler` (what pooling 'mean' replaces)
POOLER_HEADS = frozenset({"bert"})

# validation context key: the input is a stored, already resolved method (see app.training.methods)
RESOLVED = "resolved"

# field -> (low, high, low bound inclusive); every upper bound is inclusive
_RANGES: dict[str, tuple[float, float, bool]] = {
    "n_epochs": (1, 50, True),
    "batch_size": (1, 1024, True),
    "learning_rate": (0.0, 1.0, False),
    "head_learning_rate": (0.0, 1.0, False),
    "learning_rate_multiplier": (0.0, 100.0, False),
    "warmup_ratio": (0.0, 0.5, True),
    "gradient_accumulation_steps": (1, 1024, True),
}


class HyperparameterSettings(BaseModel):
    """OpenAI's hyper-parameters (each may be "auto") plus the knobs a demanding user expects."""

    model_config = ConfigDict(extra="forbid")

    n_epochs: int | Auto = Field("auto", description=(
        "Passes over the training file (1-50); auto = the method's rule for the data size (see preset)."))
    batch_size: int | Auto = Field("auto", description="Examples per optimizer step (1-1024); auto scales with data.")
    learning_rate: float | Auto = Field("auto", description="Peak learning rate in (0, 1]; auto = the method's default.")
    learning_rate_multiplier: float | Auto = Field(
        "auto", description="OpenAI's knob: a multiple (0, 100] of the method's default learning rate."
    )
    head_learning_rate: float | None = Field(None, description=(
        "Peak learning rate in (0, 1] of the weights the base lacks (the task head, a trained pooler), which "
        "then train in their own optimizer group; null (the default): learning_rate."))
    max_length: int = Field(128, ge=8, le=2048, description="Tokens per example after truncation.")
    warmup_ratio: float | Auto = Field("auto", description=(
        "Fraction of steps with linear warm-up, in [0, 0.5]; auto = the method's rule (usually 0.06)."))
    lr_scheduler: Scheduler | Auto = Field("auto", description=(
        "Learning-rate decay after warm-up: linear (to 0), cosine (to 0) or constant; auto = the method's rule."))
    max_grad_norm: float | None = Field(1.0, gt=0, le=1000, description=(
        "Clip the gradients' global norm to this (1.0, as the Hugging Face Trainer does); null: no clipping."))
    select_best: bool = Field(True, description=(
        "With a validation file: the artifact is the latest evaluated checkpoint within one standard error of "
        "the best validation figure (accuracy; micro-F1 for multi-label, entity F1 for NER; the one-standard-"
        "error rule, app.training.best), or the best by loss alone for regression (ties: lower loss, then the "
        "earlier); the events say which step. Without one: the last step."))
    preset: Preset = Field("quality", description=(
        "How 'auto' epochs trade time for accuracy: quality = the method's rule for the data size (up to "
        "10 epochs on small files for parameter-efficient methods); fast = the rule's minimum (3)."))
    weight_decay: float = Field(0.0, ge=0, le=1, description="AdamW decoupled weight decay.")
    checkpoint_every: int | None = Field(None, ge=1, description="Optimizer steps between checkpoints; default once per epoch.")
    gradient_accumulation_steps: int | Auto = Field("auto", description=(
        "Run each optimizer step's batch_size rows as this many micro-batches (1-1024, at most batch_size) and "
        "sum their gradients: a large batch that does not fit the device at once. auto = 1, or "
        "ceil(batch_size / micro_batch_size) when micro_batch_size is given."))
    micro_batch_size: int | None = Field(None, ge=1, le=1024, description=(
        "Rows the device takes at once; with gradient_accumulation_steps auto it sets the accumulation "
        "(batch_size stays the examples per optimizer step, the effective batch)."))
    precision: Precision = Field("auto", description=(
        "Arithmetic of forward and backward: auto = bf16 autocast on GPUs that support it, fp16 autocast with "
        "loss scaling on older GPUs, fp32 on CPU; fp32, bf16 (CPU too) or fp16 (GPU only). Weights and the "
        "optimizer stay fp32."))
    gradient_checkpointing: bool = Field(False, description=(
        "Recompute activations during backward instead of keeping them (Chen et al. 2016): much less memory "
        "for long inputs, about a third more compute."))
    group_by_length: bool | Auto = Field("auto", description=(
        "Batch rows of similar token length together (seeded megabatches sorted by length, as the Hugging Face "
        "Trainer's group_by_length) so each batch pads less; auto = on where random batches would pad at least "
        "25% of their tokens and rows reach 64 tokens (grouping makes batches less diverse)."))
    eval_every: int | None = Field(None, ge=1, description="Optimizer steps between evaluations; default once per epoch.")

    @field_validator("n_epochs", "batch_size", "learning_rate", "head_learning_rate", "learning_rate_multiplier",
                     "warmup_ratio", "gradient_accumulation_steps")
    @classmethod
    def _in_range(cls, value: int | float | str, info: ValidationInfo) -> int | float | str:
        # Field(ge=...) cannot constrain an int|"auto" union, so the ranges live here (per field,
        # so the error's `loc` names the offending field)
        if value == "auto" or value is None:  # None: head_learning_rate follows learning_rate
            return value
        if info.field_name == "learning_rate_multiplier" and info.context and info.context.get(RESOLVED):
            return value  # a stored method's is derived from its (checked) learning_rate, e.g. 1e-2 / 5e-5 = 200
        low, high, closed = _RANGES[info.field_name]
        if not math.isfinite(value) or not (low <= value if closed else low < value) or value > high:
            interval = f"{'[' if closed else '('}{low:g}, {high:g}]"
            raise ValueError(f"{info.field_name} must be 'auto' or within {interval}, got {value}")
        return value

    @model_validator(mode="after")
    def _accumulation(self) -> HyperparameterSettings:
        steps, micro, batch = self.gradient_accumulation_steps, self.micro_batch_size, self.batch_size
        if micro is not None and steps != "auto":
            raise ValueError("give gradient_accumulation_steps or micro_batch_size, not both")
        if batch != "auto" and steps != "auto" and steps > batch:
            raise ValueError(f"gradient_accumulation_steps ({steps}) must be at most batch_size ({batch}): each "
                             "micro-batch holds at least one row")
        if batch != "auto" and micro is not None and micro > batch:
            raise ValueError(f"micro_batch_size ({micro}) must be at most batch_size ({batch})")
        return self

    @model_validator(mode="after")
    def _one_learning_rate(self, info: ValidationInfo) -> HyperparameterSettings:
        # a stored (resolved) method shows both: the rate and the multiplier it came from
        resolved = bool(info.context and info.context.get(RESOLVED))
        if self.learning_rate != "auto" and self.learning_rate_multiplier != "auto" and not resolved:
            raise ValueError("give learning_rate or learning_rate_multiplier, not both")
        return self

    def resolve(self, n_train: int | None, rule: AutoRule, seed: int) -> Hyperparameters:
        """Replace every "auto" with a concrete value for a training file of `n_train` examples.

        auto follows the method's `rule`: its epochs, its batch size for the data size, its learning
        rate × learning_rate_multiplier (auto = 1). A batch never exceeds the training file.
        `n_train` may be None only when nothing is "auto" (a method resolved at submission).
        """
        if n_train is None and "auto" in (self.n_epochs, self.batch_size):
            raise ValueError("n_train is needed to resolve 'auto' hyper-parameters")
        own_rate = rule.learning_rate  # a given multiplier scales the method's own rate, even where the rule
        rule = rule.for_size(n_train)  # switches recipe for this data size (stability.recipe "auto")
        batch = self.batch_size if self.batch_size != "auto" else rule.batch_size(n_train)
        batch = max(1, batch if n_train is None else min(batch, n_train))
        if self.learning_rate != "auto":
            lr = self.learning_rate
        elif self.learning_rate_multiplier != "auto":
            lr = own_rate * self.learning_rate_multiplier
        else:
            lr = rule.learning_rate
        return Hyperparameters(
            n_epochs=rule.n_epochs(n_train, batch, self.preset) if self.n_epochs == "auto" else self.n_epochs,
            batch_size=batch,
            learning_rate=float(lr),
            seed=seed,
            max_length=self.max_length,
            head_learning_rate=self.head_learning_rate,
            warmup_ratio=rule.warmup_ratio if self.warmup_ratio == "auto" else self.warmup_ratio,
            weight_decay=self.weight_decay,
            checkpoint_every=self.checkpoint_every,
            eval_every=self.eval_every,
            lr_scheduler=rule.lr_scheduler if self.lr_scheduler == "auto" else self.lr_scheduler,
            max_grad_norm=self.max_grad_norm,
            select_best=self.select_best,
            gradient_accumulation_steps=self._accumulation_steps(batch),
            precision=self.precision,
            gradient_checkpointing=self.gradient_checkpointing,
            group_by_length=self.group_by_length,  # "auto": decided on the tokenized rows (app.training.batching)
        )

    def _accumulation_steps(self, batch: int) -> int:
        """The micro-batches per step: given, or what micro_batch_size needs; never more than rows in a batch."""
        if self.gradient_accumulation_steps != "auto":
            steps = self.gradient_accumulation_steps
        elif self.micro_batch_size is not None:
            steps = math.ceil(batch / self.micro_batch_size)
        else:
            steps = 1
        return max(1, min(steps, batch))


class MethodSettings(BaseModel):
    """Base of every strategy's `method.<type>` object."""

    model_config = ConfigDict(extra="forbid")

    hyperparameters: HyperparameterSettings = Field(
        default_factory=HyperparameterSettings, description="Training schedule; see HyperparameterSettings."
    )

    @classmethod
    def file_fields(cls) -> tuple[str, ...]:
        """Settings fields that name further uploaded files; the API checks each is the tenant's and
        readable, and the worker hands their paths to the strategy as `ctx.input_files`."""
        return ()

    def named_files(self) -> dict[str, str]:
        """{dotted field: file id} of every further file these settings name: the file_fields() that are set,
        unless a method's files sit deeper (multitask's tasks.<i>.training_file). A field ending in
        training_file or validation_file holds labelled rows, checked as such; any other a text corpus."""
        return {name: getattr(self, name) for name in self.file_fields() if getattr(self, name)}

    def check_base(self, facts: BaseFacts) -> list[BaseProblem]:
        """Settings the chosen base model cannot take, as (field, what to change): the API refuses them
        with a 400 at submission instead of a job failing later; the strategy checks again when it runs."""
        return []

    def check_submission(self, facts: SubmissionFacts) -> list[BaseProblem]:
        """Settings this job cannot have given the rest of it (no validation file) or the service's limits,
        as (field, what to change); refused with a 400 at submission, like check_base."""
        return []

    def auto_rule(self, rule: AutoRule) -> AutoRule:
        """What "auto" resolves by for this job: the method's own rule unless a setting asks for another
        (stability.recipe)."""
        return rule

    def check_data(self, data: DatasetSummary) -> list[BaseProblem]:
        """Settings the training file cannot take (e.g. a verbalizer without a word for one of its labels),
        as (field, what to change): a 400 at submission; the strategy checks again when it reads the data."""
        return []

    def check_named_file(self, name: str, data: DatasetSummary) -> str | None:
        """What is wrong with the labelled file named_files() calls `name` for these settings (e.g. a task
        type the method cannot mix), or None: a 400 at submission naming the field."""
        return None


class TaskMethodSettings(MethodSettings):
    """Base of the methods that fine-tune on the labelled task (supervised, lora, bitfit, …)."""

    aux_mlm_weight: float = Field(0.0, ge=0, le=10, description=(
        "λ of an auxiliary masked-LM loss on the same batches' texts (Chronopoulou et al. 2019): "
        "loss = task + λ·MLM; 0 turns it off."))
    aux_mlm: MaskingSettings | None = Field(None, description=(
        "Masking of the auxiliary MLM loss (default: BERT's 15%, 80/10/10, token unit)."))
    train_pooler: bool = Field(False, description=(
        "Also train the base's pooler (the dense layer over [CLS] feeding the head) whole; it then ships in the "
        "artifact like the head (+hidden² weights, 0.65% of minilm-l6). A frozen pooler is a weak spot of "
        "sentence-embedding bases such as minilm-l6, whose training never used it (its bias is all zeros). A "
        "pooler the base lacks, or one re-initialised by reinit_top_layers, starts random and always trains."))
    pooling: Literal["auto", "cls", "mean"] = Field("auto", description=(
        "What the head reads: cls = the architecture's own pooler over [CLS]; mean = the attention-masked mean "
        "of the last hidden states (Reimers & Gurevych 2019), how sentence-embedding bases such as minilm-l6 "
        "were trained (BERT-like encoders; the artifact then loads with tuneforge, cannot be exported merged, "
        "and train_pooler has no pooler to train). auto = mean where the method's rule prefers it and the base "
        "declares mean pooling (a sentence-transformers 1_Pooling/config.json), else cls; the job's events "
        "say which."))
    # checked against the base's depth at submission (check_base) and when the job starts (app.training.structure)
    drop_top_layers: int = Field(0, ge=0, le=256, description=(
        "Remove the top k encoder layers before fine-tuning (Sajjad et al. 2023, On the Effect of Dropping "
        "Layers of Pre-trained Transformer Models): a shallower, faster model; fewer than the base's depth."))
    reinit_top_layers: int = Field(0, ge=0, le=256, description=(
        "Re-initialise the pooler and the top k encoder layers (counted after drop_top_layers; at least one "
        "pretrained layer must remain) before fine-tuning (Zhang et al. 2021, Revisiting Few-sample BERT "
        "Fine-tuning); they train fully and ship whole in the artifact, like the head."))
    multi_label_threshold: float | Auto = Field("auto", description=(
        "Multi-label training files only: a label applies when its sigmoid probability reaches this value "
        "(in (0, 1)), in validation metrics and predictions (a prediction request may give its own). auto = "
        "the value of 0.05, 0.10, … 0.95 with the best validation micro-F1, chosen for each checkpoint scored "
        "and recorded in the manifest (eval_threshold in the metrics); 0.5 without a validation file. The "
        "job's events say which."))
    stability: StabilitySettings | None = Field(None, description=(
        "Remedies for unstable fine-tuning on small data (several seeds with early discarding, R3F/R4F/SMART, "
        "LP-FT, the Mosbach recipe, layer-wise learning-rate decay, early stopping); all off by default."))

    # stability fields a method cannot take, with the reason (a method that counts its own training forwards)
    unsupported_stability: ClassVar[dict[str, str]] = {}
    # stability.recipe "auto" switches to the Mosbach recipe on few-shot data (full fine-tuning only)
    few_shot_recipe: ClassVar[bool] = False

    @field_validator("multi_label_threshold")
    @classmethod
    def _threshold_inside(cls, value: float | str) -> float | str:
        if value != "auto" and not (math.isfinite(value) and 0 < value < 1):
            raise ValueError(f"multi_label_threshold must be 'auto' or within (0, 1), got {value}")
        return value

    @field_validator("stability")
    @classmethod
    def _stability_supported(cls, value: StabilitySettings | None) -> StabilitySettings | None:
        for name, why in cls.unsupported_stability.items():
            if value is not None and name in value.model_fields_set and getattr(value, name):
                raise ValueError(f"stability.{name} is not available with this method: {why}")
        return value

    def check_data(self, data: DatasetSummary) -> list[BaseProblem]:
        """Stability options the file's task type cannot take: a regularizer comparing softmaxes has nothing
        to compare on one regression output; early stopping on a metric that task type does not measure."""
        problems, stability = super().check_data(data), self.stability
        if self.pooling == "mean" and data.task == "token_classification":
            problems.append(("pooling", "token classification labels every word and pools nothing; leave pooling "
                                        "'cls'"))
        if stability is None:
            return problems
        if stability.regularizer is not None and data.task == "regression":
            problems.append(("stability.regularizer", "compares output distributions (a symmetric KL of softmaxes), "
                                                      "which one regression output does not have; leave it out"))
        unmeasured = {"regression": ("accuracy", "macro_f1"), "token_classification": ("macro_f1",)}.get(data.task, ())
        if stability.early_stopping is not None and stability.early_stopping.metric in unmeasured:
            problems.append(("stability.early_stopping.metric", f"{stability.early_stopping.metric} is not measured on "
                                                                f"{data.task} files; use loss"))
        return problems

    @model_validator(mode="after")
    def _aux_needs_weight(self) -> TaskMethodSettings:
        if self.aux_mlm is not None and self.aux_mlm_weight == 0:
            raise ValueError("aux_mlm is set but aux_mlm_weight is 0; give aux_mlm_weight > 0 to use it")
        return self

    def check_submission(self, facts: SubmissionFacts) -> list[BaseProblem]:
        """stability: n_seeds within the service's maximum; early stopping and several seeds need a
        validation file."""
        if self.stability is None:
            return []
        return [(f"stability.{name}", message)
                for name, message in self.stability.problems(facts.has_validation_file, facts.max_seeds)]

    def auto_rule(self, rule: AutoRule) -> AutoRule:
        """The Mosbach et al. 2021 recipe when stability.recipe asks for it, or ("auto", the default) on
        few-shot data for a method that declares few_shot_recipe; otherwise the method's rule."""
        recipe = self.stability.recipe if self.stability is not None else "auto"
        if recipe == "mosbach":
            return mosbach_rule(rule)
        return few_shot_switch(rule) if recipe == "auto" and self.few_shot_recipe else rule

    def check_base(self, facts: BaseFacts) -> list[BaseProblem]:
        """pooling 'mean' needs a head that reads the pooler; drop_top_layers must leave a layer, and
        reinit_top_layers a pretrained one."""
        if self.pooling == "mean" and facts.model_type not in POOLER_HEADS:
            return [("pooling", f"{facts.name} is a {facts.model_type} model, whose classification head reads "
                                "its first token itself rather than a pooler that mean pooling could replace; "
                                "use pooling 'cls'")]
        depth, drop, reinit = facts.depth, self.drop_top_layers, self.reinit_top_layers
        if depth is None:
            return []
        if drop >= depth:
            return [("drop_top_layers", f"{facts.name} has {depth} encoder layers and drop_top_layers={drop} would "
                                        f"leave none; choose drop_top_layers ≤ {depth - 1}")]
        if reinit >= depth - drop:
            return [("reinit_top_layers", f"{self.depth_phrase(facts)}, and reinit_top_layers={reinit} would leave "
                                          f"none pretrained; choose reinit_top_layers ≤ {depth - drop - 1}")]
        return []

    def depth_phrase(self, facts: BaseFacts) -> str:
        """"<base> has N encoder layers[, M after drop_top_layers=k]", for the messages of check_base."""
        after = f", {facts.depth - self.drop_top_layers} after drop_top_layers={self.drop_top_layers}"
        return f"{facts.name} has {facts.depth} encoder layers{after if self.drop_top_layers else ''}"
