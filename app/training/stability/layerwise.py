"""Layer-wise learning-rate decay (ELECTRA, Clark et al. 2020; Zhang et al. 2021, "Revisiting Few-sample
BERT Fine-tuning"): lower layers hold more general features and should move less.

With decay ξ and L encoder layers, the optimiser's groups are: everything above the encoder (the head,
a pooler, prompts, SAID's θ′, an auxiliary MLM head) at the full rate, encoder layer i (0 = lowest) at
rate·ξ^(L−i), the embeddings at rate·ξ^(L+1) (ELECTRA's depths: embeddings 0, layer i at i+1, head at
L+1). Only trainable parameters are grouped; groups run from the top down, so the first group (whose
rate the metrics report) is the full rate.
"""
from __future__ import annotations

from typing import Any

import torch

from app.training.structure import encoder_layers


def unwrapped(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers classifier inside a peft or tuneforge wrapper (the same parameter objects)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def embeddings_module(model: torch.nn.Module) -> torch.nn.Module:
    """The encoder's embeddings block (word, position, type embeddings and their norm)."""
    inner = unwrapped(model)
    encoder = getattr(inner, inner.base_model_prefix, inner)
    block = getattr(encoder, "embeddings", None)
    return block if isinstance(block, torch.nn.Module) else inner.get_input_embeddings()


def layer_depths(model: torch.nn.Module) -> tuple[dict[int, int], int]:
    """({id(parameter): depth}, top depth) for the embeddings (0) and encoder layers (1..L); anything
    else is at the top, L + 1."""
    layers = encoder_layers(unwrapped(model))[1]
    depths = {id(p): 0 for p in embeddings_module(model).parameters()}
    for i, layer in enumerate(layers):
        depths.update({id(p): i + 1 for p in layer.parameters()})
    return depths, len(layers) + 1


def layerwise_groups(trained: torch.nn.Module, task_model: torch.nn.Module, learning_rate: float,
                     decay: float) -> list[dict[str, Any]]:
    """AdamW parameter groups of `trained`'s trainable parameters, each with its decayed "lr" and a
    "name" ("head", "layer 3", "embeddings"); `task_model` is the classifier whose layers count (the
    model that trains may wrap it, e.g. with an auxiliary MLM head)."""
    depths, top = layer_depths(task_model)
    groups: dict[int, list[torch.nn.Parameter]] = {}
    for param in trained.parameters():
        if param.requires_grad:
            groups.setdefault(depths.get(id(param), top), []).append(param)
    names = {0: "embeddings", top: "head"}
    return [{"params": params, "lr": learning_rate * decay ** (top - depth),
             "name": names.get(depth, f"layer {depth - 1}")}
            for depth, params in sorted(groups.items(), reverse=True)]
