"""The Fastfood random projection (Le, Sarlós & Smola 2013), as intrinsic-dimension fine-tuning uses it
(Li et al. 2018; Aghajanyan et al. 2021): P_i = S·[H G Π H B]_blocks, never stored as a matrix.

One projection per base tensor, from the shared d'-dimensional vector θ' to the tensor's D_i
entries. θ' is zero-padded to n = 2^⌈log2 d'⌉ and ⌈D_i / n⌉ independent n×n blocks are stacked
(Le et al.'s construction), so a step costs O(D_i log n) per tensor, not O(D_i log D_i); the first
D_i outputs are kept. The scale makes P_i's columns unit-norm in expectation, as the reference
implementation's `divisor` does (each column's norm² over the stacked blocks is n·ΣG²).

Every random part is drawn from a `torch.Generator` seeded with the projection seed, on the CPU, so
`apply` rebuilds P bit-exactly from the seed alone.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

FACTOR_BITS = 5  # H_n = H_32 ⊗ H_32 ⊗ …: one small matmul per factor (≈2× faster on CPU than butterflies)
_HADAMARD: dict[tuple[int, torch.device, torch.dtype], torch.Tensor] = {}


def _hadamard(k: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The unnormalised k×k Sylvester Hadamard matrix (entries ±1)."""
    key = (k, device, dtype)
    if key not in _HADAMARD:
        h = torch.ones(1, 1, dtype=dtype)
        while h.shape[0] < k:
            h = torch.cat((torch.cat((h, h), 1), torch.cat((h, -h), 1)), 0)
        _HADAMARD[key] = h.to(device)
    return _HADAMARD[key]


def walsh_hadamard(x: torch.Tensor) -> torch.Tensor:
    """Unnormalised Walsh–Hadamard transform of each row of `x` (rows, n), n a power of two.

    H_n is a Kronecker power, so it applies one factor H_k per group of axes of the row viewed as
    (k, k, …): a matmul on the last axis, then that axis rotates to the front.
    """
    rows, n = x.shape
    bits = n.bit_length() - 1
    y = x
    while bits > 0:
        k = 1 << min(FACTOR_BITS, bits)
        y = (y.reshape(-1, k) @ _hadamard(k, x.device, x.dtype)).reshape(rows, n // k, k).transpose(1, 2)
        bits -= k.bit_length() - 1
    return y.reshape(rows, n)


class _WalshHadamard(torch.autograd.Function):
    """H is symmetric, so its backward is the same transform; nothing is saved for it."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return walsh_hadamard(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return walsh_hadamard(grad)


def block_size(d_shared: int) -> int:
    """n: the smallest power of two holding θ'."""
    return 1 << max(0, math.ceil(math.log2(d_shared)))


@dataclass
class FastfoodParts:
    """The random diagonals and permutations of one tensor's projection (all blocks)."""

    signs: torch.Tensor  # (blocks, n) ±1: B
    permutation: torch.Tensor  # (blocks·n,) int32: Π of each block, as flat indices (half int64's memory)
    gauss: torch.Tensor  # (blocks, n) N(0, 1): G
    scale: float  # makes columns unit-norm in expectation
    numel: int  # D_i

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"signs": self.signs, "permutation": self.permutation, "gauss": self.gauss}


def draw_parts(numel: int, n: int, generator: torch.Generator) -> FastfoodParts:
    """B, Π, G for a D_i = `numel` output, drawn (on the CPU) from `generator` in a fixed order."""
    blocks = -(-numel // n)
    signs = torch.randint(0, 2, (blocks, n), generator=generator).float().mul_(2).sub_(1)
    # a stable argsort of float64 uniforms: one call for every block's permutation
    order = torch.rand(blocks, n, generator=generator, dtype=torch.float64).argsort(dim=1, stable=True)
    permutation = (order + torch.arange(blocks).unsqueeze(1) * n).reshape(-1).to(torch.int32)
    gauss = torch.randn(blocks, n, generator=generator)
    scale = 1.0 / math.sqrt(gauss.double().square().sum().item() * numel / blocks)
    return FastfoodParts(signs, permutation, gauss, scale, numel)


def fastfood(theta: torch.Tensor, signs: torch.Tensor, permutation: torch.Tensor, gauss: torch.Tensor,
             scale: float | torch.Tensor, numel: int) -> torch.Tensor:
    """P_i θ' (D_i,) for θ' (d',): S·H·G·Π·H·B on each block, blocks stacked, the first D_i kept.
    `scale` may fold in a trained scalar (SAID's λ_i), saving a pass over D_i."""
    blocks, n = signs.shape
    x = torch.nn.functional.pad(theta, (0, n - theta.shape[0])) * signs  # B, broadcast over blocks
    x = _WalshHadamard.apply(x).reshape(-1).index_select(0, permutation).reshape(blocks, n) * gauss  # G Π H
    return _WalshHadamard.apply(x).reshape(-1)[:numel] * scale  # S H
