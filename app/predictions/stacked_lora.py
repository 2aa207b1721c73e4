"""Mixed-adapter LoRA batches as two batched matmuls per layer (Punica, Chen et al. 2023; S-LoRA, Sheng et
al. 2023): every row gathers its own adapter's A and B from per-layer stacks, so a batch naming 50 adapters
costs what a batch naming one does.

peft's mixed batches (`adapter_names=`) loop over the distinct adapters in every LoRA layer (Python index
lists, one small matmul pair each); with many adapters per batch that loop, not the arithmetic, bounds
throughput. Here each LoRA layer's adapters are stacked once (A as (n, in, r), B·scaling as (n, r, out),
zero-padded to the largest rank, plus an all-zero slot for rows that name no adapter) and a forward pass
is base(x) + bmm(bmm(x, A[rows]), B[rows]). Only vanilla LoRA layers (no DoRA or other variant, no LoRA
bias) are stacked; peft's own forward runs any other layer, and whole-trained modules (the head) keep
peft's per-row selection. The output equals peft's to float rounding (tests/predictions).
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import MethodType
from typing import Any

import torch
from peft.tuners.lora.layer import Linear as LoraLinear

BASE_ROW = "__base__"  # peft's name for a row that uses no adapter


@dataclass(frozen=True)
class Stack:
    a: torch.Tensor  # (adapters + 1, in, r)
    b: torch.Tensor  # (adapters + 1, r, out), scaling folded in; the last slot is zeros


def stackable(layer: LoraLinear) -> bool:
    """A vanilla LoRA Linear: plain A and B without bias, no DoRA or other variant."""
    return not layer.lora_variant and all(layer.lora_B[name].bias is None for name in layer.lora_B)


def _stack(layer: LoraLinear, names: list[str]) -> Stack:
    weight = layer.base_layer.weight
    rank = max(layer.lora_A[name].weight.shape[0] for name in names if name in layer.lora_A)
    a = weight.new_zeros(len(names) + 1, weight.shape[1], rank)
    b = weight.new_zeros(len(names) + 1, rank, weight.shape[0])
    for slot, name in enumerate(names):
        if name in layer.lora_A:  # an adapter that does not target this layer keeps zeros
            r = layer.lora_A[name].weight.shape[0]
            a[slot, :, :r] = layer.lora_A[name].weight.T
            b[slot, :r, :] = layer.lora_B[name].weight.T * layer.scaling[name]
    return Stack(a, b)


def _stacked_forward(layer: LoraLinear, stack: Stack, rows: torch.Tensor, x: torch.Tensor, *args: Any,
                     adapter_names: list[str] | None = None, **kwargs: Any) -> torch.Tensor:
    result = layer.base_layer(x, *args, **kwargs)
    flat = x.dim() == 2
    x3 = x.unsqueeze(1) if flat else x
    delta = torch.bmm(torch.bmm(x3.to(stack.a.dtype), stack.a[rows]), stack.b[rows])
    return result + (delta.squeeze(1) if flat else delta).to(result.dtype)


class StackedLora:
    """The stacks of one peft model's adapters; rebuilt after an adapter is added or removed."""

    def __init__(self) -> None:
        self._names: list[str] = []
        self._stacks: dict[LoraLinear, Stack] = {}

    def invalidate(self) -> None:
        self._names, self._stacks = [], {}

    def _build(self, model: torch.nn.Module, names: list[str]) -> None:
        with torch.no_grad():
            self._stacks = {m: _stack(m, names) for m in model.modules() if isinstance(m, LoraLinear)
                            and stackable(m) and any(name in m.lora_A for name in names)}
        self._names = names

    @contextmanager
    def rows(self, model: torch.nn.Module, adapters: list[str], row_names: list[str]) -> Iterator[None]:
        """Within the block, `model`'s stackable LoRA layers serve each row with the adapter `row_names`
        gives it (BASE_ROW: none); call the model with `adapter_names=row_names` as usual."""
        if self._names != adapters:
            self._build(model, adapters)
        slot = {name: i for i, name in enumerate(adapters)}
        rows = torch.tensor([slot.get(name, len(adapters)) for name in row_names])
        for layer, stack in self._stacks.items():
            layer.forward = MethodType(lambda self, x, *a, _s=stack, **k: _stacked_forward(self, _s, rows, x, *a, **k),
                                       layer)
        try:
            yield
        finally:
            for layer in self._stacks:
                del layer.forward
