"""R3F and R4F (Aghajanyan et al. 2021, "Better Fine-Tuning by Reducing Representational Collapse").

R3F: loss = task loss + λ·KL_S(f(x) ‖ f(x + z)), z ~ N(0, ε²I) or U(−ε, ε) on the input embeddings, KL_S
the symmetric KL: a trust region around the pretrained function, at the cost of one more forward and
backward per step. R4F adds a spectrally normalised classification head (Miyato et al. 2018), W/σ(W),
so the head is 1-Lipschitz. The head is tiny (labels × hidden), so σ(W) is its exact largest singular
value (torch.linalg.matrix_norm, differentiable) rather than the running power-iteration estimate the
paper uses: the estimate converges to this value, and being stateless it resumes exactly and scores the
best checkpoint as it was evaluated. Before the artifact is saved the head becomes the plain weight
W/σ(W) again (`unnormalize_head`), so it loads anywhere.

Both enter the engine as an `Objective`: train_loss stays the task's (the term only adds gradient) and
the term is reported as `regularizer_loss`.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from app.training.base_facts import HEAD_MODULES
from app.training.stability.perturbation import (RunningMean, model_inputs, perturbed_embeddings, sample_noise,
                                                 symmetric_kl)
from app.training.stability.settings import RegularizerSettings
from app.training.stability.smart import Smart

Batch = dict[str, torch.Tensor]


def is_head(name: str) -> bool:
    """A parameter or module of the task head, by its qualified name (peft's copies included)."""
    return any(part in HEAD_MODULES for part in name.split("."))


class R3F:
    """Implements app.training.engine.Objective for R3F/R4F."""

    flops_factor = 2.0  # a noisy forward and its backward beside the clean ones

    def __init__(self, task_model: nn.Module, settings: RegularizerSettings):
        self.task_model, self.settings = task_model, settings
        self.term = RunningMean("regularizer_loss")

    def noise(self, embeddings: torch.Tensor) -> torch.Tensor:
        return embeddings + sample_noise(embeddings, self.settings.noise, self.settings.eps)

    def regularizer(self, batch: Batch, logits: torch.Tensor) -> torch.Tensor:
        """KL_S between the clean outputs and those on noisy embeddings (both differentiated)."""
        with perturbed_embeddings(self.task_model, self.noise):
            noisy = self.task_model(**model_inputs(batch)).logits
        return symmetric_kl(logits, noisy)

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        out = model(**batch)
        term = self.settings.weight * self.regularizer(batch, out.logits)
        self.term.add(term.detach())
        return out.loss + (term - term.detach())  # the value stays the task loss; the gradient gains the term

    def after_step(self, step: int, total_steps: int) -> None:
        pass

    def metrics(self) -> dict[str, float]:
        return self.term.read()

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        pass


def make_objective(task_model: nn.Module, settings: RegularizerSettings) -> R3F | Smart:
    """The engine objective for `regularizer` (R4F's head normalisation is applied when the model is built)."""
    return Smart(task_model, settings) if settings.type == "smart" else R3F(task_model, settings)


class SpectralNormalized(nn.Module):
    """The parametrization W ↦ W / σ(W), σ the largest singular value (R4F's head)."""

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight / torch.linalg.matrix_norm(weight.float(), ord=2).to(weight.dtype)


def normalize_head(model: nn.Module, num_labels: int) -> list[str]:
    """Spectrally normalise the head's output projections (trainable linear layers of the head with one
    output per label, as fairseq's R4F normalises `out_proj`); returns their names."""
    names = []
    for name, module in list(model.named_modules()):
        if (isinstance(module, nn.Linear) and is_head(name) and module.out_features == num_labels
                and module.weight.requires_grad and not parametrize.is_parametrized(module, "weight")):
            parametrize.register_parametrization(module, "weight", SpectralNormalized())
            names.append(name)
    return names


def unnormalize_head(model: nn.Module) -> None:
    """Fold the normalisation into plain weights (W/σ(W)), so the artifact is an ordinary head."""
    for module in model.modules():  # Linear: peft's wrappers forward attribute lookups to the layer they wrap
        if isinstance(module, nn.Linear) and parametrize.is_parametrized(module, "weight") and any(
                isinstance(p, SpectralNormalized) for p in module.parametrizations["weight"]):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
