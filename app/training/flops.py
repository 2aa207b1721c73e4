"""Training compute of one batch, counted as in Kaplan et al. 2020: per token, 2·N forward + 2·N backward to
activations + 2·N_trainable weight gradients, i.e. (4·N + 2·N_trainable)·T (6·N·T for full fine-tuning).

An encoder-decoder (T5, Raffel et al. 2020) is two stacks a token goes through one of: the encoder's tokens
(the attention mask) pass its parameters, the decoder's (labels that are not -100, the target) pass the rest,
so a seq2seq step is (4·N_enc + 2·N_enc,trainable)·T_enc + (4·N_dec + 2·N_dec,trainable)·T_dec. Attention's
sequence-length term is not counted.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

IGNORED = -100


@dataclass(frozen=True)
class Stack:
    """A stack's parameters: all of them and those that train."""

    total: int
    trainable: int

    def per_token(self) -> int:
        return 4 * self.total + 2 * self.trainable


@dataclass(frozen=True)
class FlopCounter:
    """FLOPs of a training batch for one model; `decoder` is None unless the model is an encoder-decoder."""

    encoder: Stack
    decoder: Stack | None = None

    @classmethod
    def of(cls, model: torch.nn.Module) -> FlopCounter:
        if not getattr(getattr(model, "config", None), "is_encoder_decoder", False):
            return cls(_stack(model.parameters()))
        encoder = list(model.get_encoder().parameters())
        inside = {id(p) for p in encoder}  # a shared embedding counts once, on the encoder's side
        return cls(_stack(encoder), _stack(p for p in model.parameters() if id(p) not in inside))

    def __call__(self, batch: dict[str, torch.Tensor]) -> float:
        flops = float(self.encoder.per_token() * int(batch["attention_mask"].sum()))
        if self.decoder is not None and "labels" in batch:
            flops += float(self.decoder.per_token() * int((batch["labels"] != IGNORED).sum()))
        return flops


def _stack(parameters) -> Stack:
    total = trainable = 0
    for p in parameters:
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return Stack(total, trainable)
