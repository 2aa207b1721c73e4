"""What trains in a cloze job, and how it is saved (`cloze.peft`), over LoRA's and BitFit's own code paths.

- none: every weight (the MLM decoder stays tied to the word embeddings); `mlm/`, a whole masked-LM.
- lora (Hu et al. 2021): peft LoRA matrices on the encoder; weights the base lacked (an untrained MLM-head
  transform, re-initialised layers) train whole in `modules_to_save`; `adapter/` (save_adapter).
- bitfit (Ben-Zaken et al. 2021): bias terms, plus the weights the base lacked; `delta/` (save_delta).
The MLM decoder (the output embedding, tied to the input one) never trains under peft and never ships:
the base has it. Its bias, when the base lacked one, starts at zero; BitFit trains it, LoRA keeps it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from app.training.base import TrainContext
from app.training.delta import save_delta
from app.training.peft_adapter import encoder_targets, new_module_names, save_adapter
from app.training.strategies.cloze.apply import WHOLE
from app.training.strategies.cloze.config import ClozeLora, ClozeSettings


def _decoder(mlm: torch.nn.Module) -> tuple[str, set[str]]:
    """(module name, parameter names) of the MLM decoder, the output embedding."""
    output = mlm.get_output_embeddings()
    name = next(n for n, m in mlm.named_modules() if m is output)
    ids = {id(p) for p in output.parameters()}
    return name, {n for n, p in mlm.named_parameters(remove_duplicate=False) if id(p) in ids}


def prepare_parameters(mlm: torch.nn.Module, ctx: TrainContext, settings: ClozeSettings,
                       new_parameters: set[str]) -> torch.nn.Module:
    """The model to train: requires_grad set as cloze.peft says, peft-wrapped for LoRA."""
    if settings.peft is None:
        return mlm
    decoder, decoder_parameters = _decoder(mlm)
    if isinstance(settings.peft, ClozeLora):
        return _lora(mlm, ctx, settings.peft, new_parameters - decoder_parameters, decoder)
    for name, param in mlm.named_parameters():
        param.requires_grad_(name.endswith(".bias") or (name in new_parameters and name not in decoder_parameters))
    return mlm


def save_weights(model: torch.nn.Module, tokenizer: Any, output_dir: Path, ctx: TrainContext, settings: ClozeSettings,
                 new_parameters: set[str]) -> None:
    """`model` (what prepare_parameters returned) as cloze.peft's layout: mlm/, adapter/ or delta/."""
    if settings.peft is None:
        model.save_pretrained(output_dir / WHOLE)
        tokenizer.save_pretrained(output_dir / WHOLE)
    elif isinstance(settings.peft, ClozeLora):
        save_adapter(model, tokenizer, output_dir, ctx, new_parameters)
    else:
        save_delta(model, tokenizer, output_dir, ctx, new_parameters)


def _lora(mlm: torch.nn.Module, ctx: TrainContext, lora: ClozeLora, new_parameters: set[str], decoder: str):
    from peft import get_peft_model

    whole = new_module_names(new_parameters)
    targets = encoder_targets(mlm, ctx, lora.target_modules, whole, never={decoder}, field="peft.target_modules")
    return get_peft_model(mlm, lora.peft_config(targets, modules_to_save=whole or None))
