"""What the virtual-token methods share (prompt tuning, Lester et al. 2021; prefix tuning, Li & Liang
2021): their settings base (torch-free, the API validates it) and the train-time helpers (torch is
imported by the strategies that call them)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field, field_validator

from app.training.base import TrainContext, TrainingError
from app.training.base_facts import BaseFacts, BaseProblem
from app.training.config import TaskMethodSettings

if TYPE_CHECKING:
    import torch


class VirtualTokenSettings(TaskMethodSettings):
    """What the virtual-token methods share (prompt tuning, Lester et al. 2021; prefix tuning, Li & Liang
    2021): only learned tokens and the head train, the encoder stays frozen."""

    num_virtual_tokens: int = Field(20, ge=1, le=512, description=(
        "Learned virtual tokens. They take position embeddings: hyperparameters.max_length + num_virtual_tokens "
        "must fit the base model's positions (512 for BERT), checked at submission."))

    @field_validator("aux_mlm_weight")
    @classmethod
    def _no_aux_mlm(cls, value: float) -> float:
        # the auxiliary MLM loss runs on the bare encoder, without the virtual tokens: it would train
        # nothing the artifact keeps
        if value:
            raise ValueError("aux_mlm_weight must be 0 here: the auxiliary MLM loss runs on the frozen encoder "
                             "without the virtual tokens, so it cannot train them; leave it out")
        return value

    def check_base(self, facts: BaseFacts) -> list[BaseProblem]:
        """max_length + num_virtual_tokens within the base's positions, max_length clamped as training
        clamps it (to the tokenizer's limit and the positions); check_room refuses it again at train time."""
        problems, usable, n = super().check_base(facts), facts.usable_positions, self.num_virtual_tokens
        if usable is None:
            return problems
        max_length = min(self.hyperparameters.max_length, usable, facts.tokenizer_max_length or usable)
        if max_length + n > usable:
            fixes = [f"num_virtual_tokens to at most {usable - max_length}"] if usable > max_length else []
            fixes += [f"hyperparameters.max_length to at most {usable - n}"] if usable - n >= 8 else []
            problems.append(("num_virtual_tokens", f"num_virtual_tokens {n} + max_length {max_length} = "
                                                   f"{max_length + n} exceeds the {usable} positions of {facts.name}; "
                                                   f"lower {' or '.join(fixes) or 'both'}"))
        return problems


def usable_positions(model: torch.nn.Module) -> int | None:
    """Position embeddings the base can index; RoBERTa-style embeddings count from padding_idx + 1."""
    positions = getattr(model.config, "max_position_embeddings", None)
    if positions is None:
        return None
    padding_idx = getattr(getattr(model.base_model, "embeddings", None), "padding_idx", None)
    return positions - (padding_idx + 1 if padding_idx is not None else 0)


def check_room(model: torch.nn.Module, ctx: TrainContext, num_virtual_tokens: int) -> None:
    """Refuse virtual tokens that would push a max_length input past the position embeddings: prompt
    tuning prepends them to the input, and prefix tuning offsets the input's positions by their number
    (the encoder counts them as already-seen tokens)."""
    usable = usable_positions(model)
    if usable is None:
        return
    max_length = min(ctx.hyperparameters.max_length, usable)  # run_classification clamps it there too
    if max_length + num_virtual_tokens > usable:
        raise TrainingError(
            f"num_virtual_tokens {num_virtual_tokens} + max_length {max_length} = {max_length + num_virtual_tokens} "
            f"exceeds the {usable} positions of {ctx.base_model.id}; lower num_virtual_tokens to at most "
            f"{usable - max_length} or hyperparameters.max_length to at most {usable - num_virtual_tokens}.",
            code="invalid_method_settings", param=f"method.{ctx.method}.num_virtual_tokens")


def virtual_token_model(model: torch.nn.Module, ctx: TrainContext, new_parameters: set[str], config):
    """`model` wrapped by peft for a prompt-learning `config` (SEQ_CLS): the encoder frozen, the virtual
    tokens and the new (randomly initialised) head training, the head shipped inside the adapter."""
    from peft import get_peft_model

    from app.training.peft_adapter import new_module_names

    check_room(model, ctx, config.num_virtual_tokens)
    config.modules_to_save = new_module_names(new_parameters) or None
    return get_peft_model(model, config)
