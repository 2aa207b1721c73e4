"""SMART (Jiang et al. 2020, "SMART: Robust and Efficient Fine-Tuning for Pre-trained Natural Language
Models through Principled Regularized Optimization").

loss = task loss + λ·R_s + μ·D_Breg, where
  R_s      smoothness-inducing adversarial regulariser: KL_S(f(x + δ), f(x)) with δ found by one projected,
           ∞-norm-normalised gradient ascent step (step size η = 1e-3) from N(0, ε²) (or uniform) noise on
           the input embeddings, projected onto ‖δ‖∞ ≤ ε (the paper's Algorithm 1, T_x̃ = 1);
  D_Breg   Bregman proximal point term: KL_S(f(x; θ), f(x; θ̃)) against a momentum teacher θ̃ ← βθ̃ + (1−β)θ
           after every step, β = 0.99 for the first 10% of the steps and 0.999 after (the paper's
           settings, μ = 1). The teacher scores in evaluation mode (no dropout): a fixed target.
The teacher is state: checkpoints carry it (Objective.state_dict), so a resumed run is exact.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from app.training.stability.perturbation import (RunningMean, model_inputs, perturbed_embeddings, sample_noise,
                                                 symmetric_kl)
from app.training.stability.settings import RegularizerSettings

Batch = dict[str, torch.Tensor]
STEP_SIZE = 1e-3  # η of the ascent step
BREGMAN_WEIGHT = 1.0  # μ
MOMENTUM_EARLY, MOMENTUM_LATE, EARLY_FRACTION = 0.99, 0.999, 0.1


class Smart:
    """Implements app.training.engine.Objective for SMART."""

    flops_factor = 3.5  # clean, start and adversarial forwards with their backwards, and the teacher's forward

    def __init__(self, task_model: nn.Module, settings: RegularizerSettings):
        self.task_model, self.settings = task_model, settings
        self.teacher = {name: p.detach().clone() for name, p in task_model.named_parameters() if p.requires_grad}
        self.smoothness, self.proximity = RunningMean("regularizer_loss"), RunningMean("bregman_loss")

    def adversarial_perturbation(self, inputs: Batch, logits: torch.Tensor) -> torch.Tensor:
        """δ after one projected ascent step on KL_S(f(x + δ), f(x)) (clean outputs held fixed)."""
        eps, start = self.settings.eps, {}

        def noisy(embeddings: torch.Tensor) -> torch.Tensor:
            start["delta"] = sample_noise(embeddings, self.settings.noise, eps).requires_grad_()
            return embeddings + start["delta"]
        with perturbed_embeddings(self.task_model, noisy):
            gap = symmetric_kl(self.task_model(**inputs).logits, logits.detach())
        (grad,) = torch.autograd.grad(gap, start["delta"])
        step = grad / (grad.abs().amax(dim=-1, keepdim=True) + 1e-12)  # ∞-norm per token
        return (start["delta"].detach() + STEP_SIZE * step).clamp(-eps, eps)

    def teacher_logits(self, inputs: Batch) -> torch.Tensor:
        was_training = self.task_model.training
        self.task_model.eval()
        try:
            with torch.no_grad():
                return functional_call(self.task_model, self.teacher, args=(), kwargs=inputs, strict=False).logits
        finally:
            self.task_model.train(was_training)

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        out = model(**batch)
        inputs = model_inputs(batch)
        delta = self.adversarial_perturbation(inputs, out.logits)
        with perturbed_embeddings(self.task_model, lambda embeddings: embeddings + delta):
            smoothness = symmetric_kl(self.task_model(**inputs).logits, out.logits)
        proximity = symmetric_kl(out.logits, self.teacher_logits(inputs))
        term = self.settings.weight * smoothness + BREGMAN_WEIGHT * proximity
        self.smoothness.add(smoothness.detach() * self.settings.weight)
        self.proximity.add(proximity.detach())
        return out.loss + (term - term.detach())  # the value stays the task loss; the gradient gains the terms

    @torch.no_grad()
    def after_step(self, step: int, total_steps: int) -> None:
        beta = MOMENTUM_EARLY if step <= EARLY_FRACTION * total_steps else MOMENTUM_LATE
        for name, param in self.task_model.named_parameters():
            if name in self.teacher:
                self.teacher[name].mul_(beta).add_(param.detach(), alpha=1 - beta)

    def metrics(self) -> dict[str, float]:
        return {**self.smoothness.read(), **self.proximity.read()}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {f"teacher.{name}": tensor for name, tensor in self.teacher.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.teacher) - {name.removeprefix("teacher.") for name in state}
        if missing:
            raise ValueError(f"the checkpoint has no SMART teacher for {sorted(missing)[:3]}")
        device = next(iter(self.teacher.values())).device
        self.teacher = {name: state[f"teacher.{name}"].to(device) for name in self.teacher}

