"""What trains in a cloze job, and how it is saved (`cloze.peft`), over LoRA's and BitFit's own code paths.

- none: every weight (the MLM decoder stays tied to the word embeddings); `mlm/`, a whole masked-LM.
- lora (Hu et al. 2021): peft LoRA matrices on the encoder; weights the base lacked (an untrained MLM-head
  transform, re-initialised layers) train whole in `modules_to_save`; `adapter/` (save_adapter).
- bitfit (Ben-Zaken et al. 2021): bias terms, plus the weights the base lacked; `delta/` (save_delta).
The MLM decoder (the output embedding, tied to the input one) never trains under peft and never ships:
the base has it. Its bias, when the base lacked one, starts at zero; BitFit trains it, LoRA keeps it.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from app.training.base import TrainContext, TrainingError
from app.training.delta import save_delta
from app.training.peft_adapter import all_linear_names, checked_targets, new_module_names, save_adapter
from app.training.strategies.cloze.apply import WHOLE
from app.training.strategies.cloze.config import ClozeLora, ClozeSettings
from app.training.strategies.lora.config import default_targets

Save = Callable[[Any, Path], None]  # save(tokenizer, output_dir)


def _decoder(mlm: torch.nn.Module) -> tuple[str, set[str]]:
    """(module name, parameter names) of the MLM decoder, the output embedding."""
    output = mlm.get_output_embeddings()
    name = next(n for n, m in mlm.named_modules() if m is output)
    ids = {id(p) for p in output.parameters()}
    return name, {n for n, p in mlm.named_parameters(remove_duplicate=False) if id(p) in ids}


def prepare_parameters(mlm: torch.nn.Module, ctx: TrainContext, settings: ClozeSettings,
                       new_parameters: set[str]) -> tuple[torch.nn.Module, Save]:
    """The model to train (requires_grad set, peft-wrapped for LoRA) and how its artifact is saved."""
    if settings.peft is None:
        def save_whole(tokenizer: Any, output_dir: Path) -> None:
            mlm.save_pretrained(output_dir / WHOLE)
            tokenizer.save_pretrained(output_dir / WHOLE)
        return mlm, save_whole
    decoder, decoder_parameters = _decoder(mlm)
    if isinstance(settings.peft, ClozeLora):
        model = _lora(mlm, ctx, settings.peft, new_parameters - decoder_parameters, decoder)
        return model, lambda tokenizer, output_dir: save_adapter(model, tokenizer, output_dir, ctx, new_parameters)
    for name, param in mlm.named_parameters():
        param.requires_grad_(name.endswith(".bias") or (name in new_parameters and name not in decoder_parameters))
    return mlm, lambda tokenizer, output_dir: save_delta(mlm, tokenizer, output_dir, ctx, new_parameters)


def _lora(mlm: torch.nn.Module, ctx: TrainContext, lora: ClozeLora, new_parameters: set[str], decoder: str):
    from peft import LoraConfig, get_peft_model

    whole = new_module_names(new_parameters)
    if lora.target_modules == "all-linear":
        targets = all_linear_names(mlm, exclude={*whole, decoder})
    else:
        try:
            targets = checked_targets(mlm, ctx, lora.target_modules or default_targets(mlm.config.model_type), whole)
        except TrainingError as exc:
            exc.param = f"method.{ctx.method}.peft.target_modules"
            raise
    config = LoraConfig(target_modules=targets, modules_to_save=whole or None, r=lora.r, lora_alpha=lora.lora_alpha,
                        lora_dropout=lora.lora_dropout)
    return get_peft_model(mlm, config)
