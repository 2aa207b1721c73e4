"""The MLM phases of `adaptive` with `adapter`: a MAD-X language adapter (Pfeiffer et al. 2020, "MAD-X:
An Adapter-Based Framework for Multi-Task Cross-Lingual Transfer").

The base is frozen; a bottleneck adapter named `language` trains with the masked-LM objective, and
so do MLM-head weights the base checkpoint lacks (all-MiniLM-L6-v2 has no MLM transform), which would
otherwise stay random. A phase saves `bottleneck/` in the adapter artifact's format (see
app/training/strategies/adapter/apply.py) plus `mlm_head.safetensors` for the next phase (DAPT then
TAPT continue the same adapter and head); only `bottleneck/` reaches the job's artifact.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from app.training.base import TrainContext
from app.training.checkpoints import copy_into, trainable_state
from app.training.strategies.adapter.apply import CONFIG, WEIGHTS, adapter_config, load_adapter
from app.training.strategies.adapter.config import LanguageAdapterSettings
from app.training.strategies.adapter.modules import STACK, bottleneck_size, insert_adapters

LANGUAGE = "language"  # the adapter's name in its artifact; a stacking job renames it to its slot
MLM_HEAD = "mlm_head.safetensors"  # trained head weights the base lacked: carried between phases only


def _is_adapter(name: str) -> bool:
    return f".{STACK}.{LANGUAGE}." in name


def language_adapter_hooks(ctx: TrainContext, settings: LanguageAdapterSettings,
                           previous: Path | None) -> dict[str, Any]:
    """MlmPhase's `prepare` and `save` for one phase; `previous` is the earlier phase's output, whose
    adapter (and head) this phase continues."""

    def prepare(model: torch.nn.Module, missing: set[str]) -> None:
        if previous is None:
            size = bottleneck_size(model, settings.reduction_factor, ctx.base_model.id,
                                   "method.adaptive.adapter.reduction_factor")
            insert_adapters(model, LANGUAGE, settings.placement, size, settings.non_linearity, settings.init_scale)
        else:
            load_adapter(model, previous, LANGUAGE, ctx.base_model.sha256)
        tied = model.get_input_embeddings().weight  # the MLM decoder shares it: it stays frozen
        for name, weight in model.named_parameters():
            weight.requires_grad_(_is_adapter(name) or (name in missing and weight is not tied))
        if previous is not None and (previous / MLM_HEAD).is_file():
            copy_into(model, load_file(previous / MLM_HEAD))

    def save(model: torch.nn.Module, tokenizer: Any, output_dir: Path) -> None:
        state = trainable_state(model)
        (output_dir / WEIGHTS).parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v for k, v in state.items() if _is_adapter(k)}, output_dir / WEIGHTS,
                  metadata={"base_model": ctx.base_model.id, "base_model_sha256": ctx.base_model.sha256})
        save_file({k: v for k, v in state.items() if not _is_adapter(k)}, output_dir / MLM_HEAD)
        size = model.config.hidden_size // settings.reduction_factor
        config = {**adapter_config(model, settings, LANGUAGE, size, ctx.base_model), "objective": "masked_lm"}
        (output_dir / CONFIG).write_text(json.dumps(config, indent=2))

    return {"prepare": prepare, "save": save}
