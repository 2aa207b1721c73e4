"""The sparse task delta of diff pruning (Guo, Rush & Kim 2021) inside a frozen classifier.

Each targeted base tensor gets a `torch.nn.utils.parametrize` parametrization (`SparseDelta`):
`weight = base + δ`, computed wherever the tensor is used, so the auxiliary MLM head sharing the
encoder sees the delta too. Its tensors are parameters with requires_grad, so the shared loop's
optimizer, checkpoints, resume and best-checkpoint selection handle them unchanged:
  delta      w, the dense delta of the first stage (δ = dense_scale · w: Adam's steps are scale-free,
             so it learns at dense_scale × the learning rate)
  log_alpha  the L0 variant's hard-concrete gate parameters (log α = alpha_scale · log_alpha)
  kept       the second stage's corrections to the kept entries (Guo et al.'s fixmask fine-tuning);
             unused, hence untouched by the optimizer, until the mask is fixed
The estimate of the first stage is ê = P(z ≠ 0) ⊙ dense_scale · w (L0) or dense_scale · w (magnitude);
its projection M keeps the `keep` entries of largest |ê| across all tensors (Guo et al.'s magnitude
projection). δ by mode (`DiffPruned.delta_of`):
  first stage, training    z ⊙ dense_scale · w, z a hard-concrete sample (Louizos et al. 2018) from
                           torch's RNG, which the engine seeds and checkpoints (L0); dense_scale · w
  second stage, training   M ⊙ (ê + kept): w and log α no longer get gradients, so they, ê and M stay
                           fixed; only the kept entries (and the head) train, with a fresh Adam state
  evaluation, any stage    M ⊙ (ê + kept), which is ê's projection while kept is still 0: evaluation
                           always scores what ships, and the artifact (`sparse()`) holds exactly this
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from app.training.base import ProgressSink


@dataclass(frozen=True)
class HardConcrete:
    """Stretched, clamped binary-concrete gates (Louizos et al. 2018, eqs. 9-12)."""

    beta: float
    l: float
    r: float

    def sample(self, log_alpha: torch.Tensor) -> torch.Tensor:
        u = torch.rand_like(log_alpha).clamp_(1e-6, 1 - 1e-6)
        s = torch.sigmoid((u.log() - (-u).log1p() + log_alpha) / self.beta)
        return (s * (self.r - self.l) + self.l).clamp(0, 1)

    def p_nonzero(self, log_alpha: torch.Tensor) -> torch.Tensor:
        """P(z ≠ 0) = σ(log α − β log(−l / r)): the expected-L0 term of each gate, and its
        deterministic value outside sampling. (Louizos et al.'s test-time gate σ(log α)(r − l) + l,
        clamped, is 0 for every log α ≤ 0 at Guo et al.'s symmetric stretch, so it would empty the
        delta once the penalty has pushed the gates below 0.)"""
        return torch.sigmoid(log_alpha - self.beta * math.log(-self.l / self.r))


@dataclass(frozen=True)
class Scales:
    """Learning-rate multipliers, applied by reparametrisation (the shared loop has one learning rate)."""

    dense: float  # δ of the first stage
    alpha: float  # log α


class SparseDelta(nn.Module):
    """The parametrization of one base tensor: base + δ, δ as its `DiffPruned` says."""

    def __init__(self, name: str, base: torch.Tensor, gates: bool, alpha_init: float, scales: Scales,
                 owner: DiffPruned):
        super().__init__()
        self.name, self.scales = name, scales  # name: the base tensor's, in the classifier's state dict
        self.delta = nn.Parameter(torch.zeros(base.shape, dtype=torch.float32, device=base.device))
        self.log_alpha = nn.Parameter(torch.full_like(self.delta, alpha_init / scales.alpha)) if gates else None
        self.kept = nn.Parameter(torch.zeros_like(self.delta))
        self._owner = (owner,)  # a plain reference: the owner holds the model that holds this module

    def alpha(self) -> torch.Tensor:
        return self.log_alpha * self.scales.alpha

    def forward(self, base: torch.Tensor) -> torch.Tensor:
        return (base.float() + self._owner[0].delta_of(self)).to(base.dtype)


class DiffPruned(nn.Module):
    """A classifier whose targeted tensors carry a sparse delta. In the first stage the training
    loss gains the expected-L0 penalty λ·max(0, E[#non-zero] − keep) as a gradient only (the
    reported loss stays the task's); `step` counts training forwards, i.e. optimizer steps, and the
    mask is fixed from step `switch_step` + 1 on."""

    def __init__(self, model: nn.Module, names: list[str], *, gates: HardConcrete | None, alpha_init: float,
                 scales: Scales, l0_lambda: float, keep: int, switch_step: int, step: int, sink: ProgressSink):
        super().__init__()
        self.model, self.gates, self.l0_lambda, self.keep = model, gates, l0_lambda, keep
        self.switch_step, self.step, self.sink = switch_step, step, sink
        self.deltas: dict[str, SparseDelta] = {}
        for name in names:
            path, attr = name.rsplit(".", 1)
            module = model.get_submodule(path)
            delta = SparseDelta(name, getattr(module, attr), gates is not None, alpha_init, scales, self)
            parametrize.register_parametrization(module, attr, delta, unsafe=True)
            self.deltas[name] = delta
        self._cache: tuple[tuple, dict[str, torch.Tensor]] | None = None

    def get_base_model(self) -> nn.Module:
        """The wrapped classifier (how attach_aux_mlm finds the encoder)."""
        return self.model

    @property
    def targeted(self) -> int:
        return sum(d.delta.numel() for d in self.deltas.values())

    @property
    def fixed(self) -> bool:
        return self.step > self.switch_step

    def forward(self, **batch: torch.Tensor):
        if self.training:
            self.step += 1
            if self.step == self.switch_step + 1:
                kept = self.kept_count()
                self.sink.message(f"Diff pruning: from step {self.step} on, only the delta's {kept:,} largest "
                                  "entries train (projected; mask fixed)", data={"kept": kept, "step": self.step})
        out = self.model(**batch)
        if self.training and self.gates is not None and self.l0_lambda and not self.fixed:
            penalty = self.l0_lambda * torch.relu(self.expected_nonzero() - self.keep)
            out.loss = out.loss + (penalty - penalty.detach())
        return out

    def expected_nonzero(self) -> torch.Tensor:
        return sum(self.gates.p_nonzero(d.alpha()).sum() for d in self.deltas.values())

    def estimate(self, delta: SparseDelta) -> torch.Tensor:
        """ê: the first stage's deterministic delta (not differentiated)."""
        dense = delta.delta.detach() * delta.scales.dense
        return dense if delta.log_alpha is None else self.gates.p_nonzero(delta.alpha().detach()) * dense

    def delta_of(self, delta: SparseDelta) -> torch.Tensor:
        if delta.training and not self.fixed:
            dense = delta.delta * delta.scales.dense
            return dense if self.gates is None else self.gates.sample(delta.alpha()) * dense
        return (self.estimate(delta) + delta.kept) * self._masks()[delta.name]

    def _masks(self) -> dict[str, torch.Tensor]:
        """M: the `keep` entries of largest |ê| over all tensors (ties broken by topk, zeros never
        kept), one bool mask per tensor; recomputed only when w or log α changed (never once fixed)."""
        tensors = [t for d in self.deltas.values() for t in (d.delta, d.log_alpha) if t is not None]
        key = tuple((t.data_ptr(), t._version) for t in tensors)
        if self._cache is None or self._cache[0] != key:
            magnitudes = torch.cat([self.estimate(d).abs().flatten() for d in self.deltas.values()])
            chosen = torch.zeros_like(magnitudes, dtype=torch.bool)
            chosen[torch.topk(magnitudes, min(self.keep, magnitudes.numel()), sorted=False).indices] = True
            chosen &= magnitudes != 0
            parts = chosen.split([d.delta.numel() for d in self.deltas.values()])
            self._cache = key, {name: part.view_as(d.delta) for (name, d), part in zip(self.deltas.items(), parts)}
        return self._cache[1]

    @torch.no_grad()
    def sparse(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """name -> (flat indices, values) of M ⊙ (ê + kept), exactly what evaluation adds."""
        masks, out = self._masks(), {}
        for name, delta in self.deltas.items():
            indices = masks[name].flatten().nonzero().flatten()
            values = (self.estimate(delta) + delta.kept).flatten()[indices]
            dtype = torch.int32 if delta.delta.numel() < 2**31 else torch.int64
            out[name] = indices.to(dtype).cpu(), values.cpu().contiguous()
        return out

    def kept_count(self) -> int:
        return sum(int(mask.sum()) for mask in self._masks().values())
