"""Letting peft hand its prefix to a transformers 5 encoder.

peft (0.21) passes the prefix as `past_key_values` and checks the backbone's forward signature for
that name; transformers 5 renamed it `cache` in BERT-style encoders (the old name is only a deprecated
alias), so peft refuses with "Model does not support past key values". The encoders below still
prepend a given cache's keys and values in every self-attention layer, bidirectionally and with the
padding mask extended over them; this module gives their forward the name peft looks for.
"""
from __future__ import annotations

import inspect

import torch

from app.training.base import TrainingError

# checked to attend over the prefix (the padding mask extended, outputs padding-invariant)
SUPPORTED = ("bert", "roberta", "xlm-roberta", "camembert", "electra", "ernie")


def accept_prefix(model: torch.nn.Module, base_id: str) -> torch.nn.Module:
    """`model` (a base classifier) with a backbone forward that takes peft's `past_key_values`; any
    architecture not in SUPPORTED is refused."""
    backbone = getattr(model, getattr(model, "base_model_prefix", ""), None)
    if model.config.model_type not in SUPPORTED or backbone is None:
        raise TrainingError(
            f"Prefix tuning needs an encoder whose attention takes prepended keys and values; {base_id} is a "
            f"{model.config.model_type!r} model. Supported: {', '.join(SUPPORTED)}. Use prompt_tuning (any "
            "encoder) or another method.", code="invalid_base_model", param="model")
    if "past_key_values" in inspect.signature(backbone.forward).parameters:
        return model  # transformers < 5: peft's own route
    original = backbone.forward

    def forward(*args, past_key_values=None, **kwargs):
        return original(*args, cache=past_key_values, **kwargs)

    backbone.forward = forward
    return model
