"""What the trust-region regularisers share: noise on the input embeddings and the symmetric KL between
two output distributions (Aghajanyan et al. 2021, R3F; Jiang et al. 2020, SMART).

The noise enters through a forward hook on the word-embedding module, so it reaches the encoder
whatever wraps it (peft, virtual tokens, an auxiliary MLM head). Noise is drawn from torch's global
generator, which the engine seeds and checkpoints, so a resumed run draws the same noise.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from app.training.stability.layerwise import unwrapped

Batch = dict[str, torch.Tensor]


def model_inputs(batch: Batch) -> Batch:
    """A training batch without its labels and auxiliary MLM inputs: what a bare forward for logits needs."""
    return {k: v for k, v in batch.items() if k != "labels" and not k.startswith("mlm_")}


def symmetric_kl(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """KL(p‖q) + KL(q‖p) of the two softmaxes, summed over classes and averaged over rows (fairseq's R3F)."""
    p, q = F.log_softmax(p_logits.float(), dim=-1), F.log_softmax(q_logits.float(), dim=-1)
    return (F.kl_div(q, p, reduction="batchmean", log_target=True)
            + F.kl_div(p, q, reduction="batchmean", log_target=True))


def sample_noise(like: torch.Tensor, kind: str, scale: float) -> torch.Tensor:
    """N(0, scale²) or U(−scale, scale) noise shaped like `like`."""
    noise = torch.empty_like(like)
    return noise.normal_(0.0, scale) if kind == "normal" else noise.uniform_(-scale, scale)


@contextmanager
def perturbed_embeddings(model: torch.nn.Module,
                         perturb: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """Within the block, every forward of `model` sees perturb(word embeddings) instead of them."""
    handle = unwrapped(model).get_input_embeddings().register_forward_hook(
        lambda module, args, output: perturb(output))
    try:
        yield
    finally:
        handle.remove()


class RunningMean:
    """The mean of the values added since it was last read (a regulariser's term between two metrics events)."""

    def __init__(self, name: str):
        self.name, self.total, self.count = name, 0.0, 0

    def add(self, value: torch.Tensor) -> None:
        self.total, self.count = self.total + value.item(), self.count + 1

    def read(self) -> dict[str, float]:
        if not self.count:
            return {}
        mean, self.total, self.count = self.total / self.count, 0.0, 0
        return {self.name: mean}
