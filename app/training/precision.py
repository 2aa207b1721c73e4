"""Mixed precision and activation checkpointing for the engine, with torch's own APIs.

Why torch.autocast / torch.amp.GradScaler directly and not `accelerate`: the engine keeps its hand-written
loop (exact resume, seeded masks, checkpoints that carry RNG and data position), so accelerate's
`Accelerator.prepare` would wrap objects the checkpoints already serialise themselves and add a second
place where device placement and state saving happen. What we need from it is three calls — autocast
around the forward, a GradScaler for fp16, gradient checkpointing on the model — which torch provides
directly (Micikevicius et al. 2018, "Mixed Precision Training": fp32 master weights, loss scaling for fp16).

Resolution of `precision`:
- auto: bf16 autocast on a CUDA device that supports bf16 (Ampere and later), fp16 + loss scaling on older
  CUDA devices, fp32 on CPU (CPU bf16 autocast is slower than fp32 on most CPUs without AMX);
- fp32 / bf16 / fp16: as asked; fp16 needs a CUDA device (CPU autocast has no fp16 loss scaling).
Weights, gradients and AdamW's moments stay fp32 in every mode.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch

from app.training.base import TrainingError

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Precision:
    """A resolved precision: the autocast dtype (None: fp32) and the fp16 loss scaler, if any."""

    name: str  # fp32 | bf16 | fp16
    device: torch.device
    scaler: torch.amp.GradScaler | None = None

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.name == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=_DTYPES[self.name])

    def scaler_state(self) -> dict[str, Any] | None:
        """The scaler's state (plain numbers) for a checkpoint's state.json."""
        return dict(self.scaler.state_dict()) if self.scaler is not None else None

    def load_scaler_state(self, state: dict[str, Any] | None) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)


def resolve_precision(asked: str, device: torch.device) -> Precision:
    """`asked` (auto/fp32/bf16/fp16) on `device`; a mode the device cannot run is the user's to change."""
    cuda = device.type == "cuda"
    bf16_ok = not cuda or torch.cuda.is_bf16_supported()
    if asked == "auto":
        name = ("bf16" if bf16_ok else "fp16") if cuda else "fp32"
    else:
        name = asked
    if name == "fp16" and not cuda:
        raise TrainingError(f"precision fp16 needs a GPU; this worker trains on {device.type}. Use auto, fp32 or "
                            "bf16.", code="invalid_precision", param="hyperparameters.precision")
    if name == "bf16" and not bf16_ok:
        raise TrainingError(f"precision bf16 is not supported by {torch.cuda.get_device_name(device)}; use auto "
                            "or fp16.", code="invalid_precision", param="hyperparameters.precision")
    scaler = torch.amp.GradScaler(device.type) if name == "fp16" else None
    return Precision(name, device, scaler)


def enable_gradient_checkpointing(model: torch.nn.Module) -> str:
    """Turn on activation checkpointing in every Hugging Face model inside `model` (a PEFT or auxiliary-head
    wrapper included); returns the class names it was turned on in. Non-reentrant checkpointing: it works
    with frozen embeddings (LoRA, BitFit) and replays dropout with the saved RNG state, so results match."""
    done = []
    for module in model.modules():
        if not getattr(module, "supports_gradient_checkpointing", False):
            continue
        if hasattr(module, "activation_checkpointing_enable"):  # transformers >= 5.x
            if not module.is_activation_checkpointing:
                module.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        elif hasattr(module, "gradient_checkpointing_enable"):
            if not module.is_gradient_checkpointing:
                module.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        else:
            continue
        done.append(type(module).__name__)
    if not done:
        raise TrainingError("gradient_checkpointing is not available for this model; set it to false.",
                            code="invalid_hyperparameters", param="hyperparameters.gradient_checkpointing")
    return ", ".join(dict.fromkeys(done))
