"""Bottleneck adapter modules and where they go in a BERT-family encoder.

Each adapter site is a post-LN sub-layer output (BERT's `BertSelfOutput` / `BertOutput`, RoBERTa's,
ELECTRA's, …): `LayerNorm(dropout(dense(h)) + residual)`. A forward hook on `dense` passes its output
through the site's `AdapterStack` first, so the adapter sits before the residual LayerNorm, where
Houlsby et al. 2019 put it. The base's own tensors keep their names; adapters live under
`<site>.adapters.<name>.`, so several named adapters can later stack at one site (MAD-X, Pfeiffer et
al. 2020: a frozen language adapter under a task adapter).
"""
from __future__ import annotations

from functools import partial

import torch
from torch import nn

from app.training.base import TrainingError

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "swish": nn.SiLU}
# sub-layer outputs below each encoder layer that get an adapter, per placement
SITES: dict[str, tuple[str, ...]] = {"pfeiffer": ("output",), "houlsby": ("attention.output", "output")}
STACK = "adapters"  # the attribute of a site holding its AdapterStack


class Bottleneck(nn.Module):
    """h + up(act(down(h))); both projections start near zero (truncated normal, std `init_scale`,
    Houlsby et al. 2019), so the adapted model starts as the base."""

    def __init__(self, hidden: int, size: int, non_linearity: str, init_scale: float,
                 dtype: torch.dtype | None = None, device: torch.device | None = None):
        super().__init__()
        self.down = nn.Linear(hidden, size, dtype=dtype, device=device)
        self.act = ACTIVATIONS[non_linearity]()
        self.up = nn.Linear(size, hidden, dtype=dtype, device=device)
        for projection in (self.down, self.up):
            nn.init.trunc_normal_(projection.weight, std=init_scale, a=-2 * init_scale, b=2 * init_scale)
            nn.init.zeros_(projection.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden + self.up(self.act(self.down(hidden)))


class AdapterStack(nn.ModuleDict):
    """Named bottlenecks at one site, applied in insertion order (a language adapter first, then a
    task adapter over it, as in MAD-X)."""

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        for bottleneck in self.values():
            hidden = bottleneck(hidden)
        return hidden


def _through_stack(site: nn.Module, dense: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
    return getattr(site, STACK)(output)


def encoder_layers(model: nn.Module) -> list[nn.Module]:
    """The encoder layers of a BERT/RoBERTa-style classifier; any other architecture is refused."""
    layers = getattr(getattr(model.base_model, "encoder", None), "layer", None)
    if not (isinstance(layers, nn.ModuleList) and len(layers)
            and all(_is_site(layer, path) for layer in layers for path in SITES["houlsby"])):
        raise TrainingError(
            f"Bottleneck adapters need a BERT-style encoder (BERT, RoBERTa, XLM-R, ELECTRA, …: encoder.layer[i] "
            f"with attention.output and output, each dense + LayerNorm); {model.config.model_type!r} is not one. "
            "Choose such a base model, or another method (lora, ia3, bitfit).", code="invalid_base_model",
            param="model")
    return list(layers)


def _is_site(layer: nn.Module, path: str) -> bool:
    """`path` below `layer` is a post-LN sub-layer output: a dense projection and a LayerNorm."""
    try:
        site = layer.get_submodule(path)
    except AttributeError:
        return False
    return isinstance(getattr(site, "dense", None), nn.Linear) and isinstance(getattr(site, "LayerNorm", None),
                                                                               nn.LayerNorm)


def bottleneck_size(model: torch.nn.Module, factor: int, base_id: str, param: str) -> int:
    """hidden // reduction_factor, refused (naming `param`) when that leaves no width."""
    hidden = model.config.hidden_size
    if hidden // factor < 1:
        raise TrainingError(f"reduction_factor {factor} leaves no bottleneck: {base_id} has hidden size "
                            f"{hidden}, and {hidden} // {factor} = 0; choose reduction_factor <= {hidden}.",
                            code="invalid_method_settings", param=param)
    return hidden // factor


def insert_adapters(model: nn.Module, name: str, placement: str, size: int, non_linearity: str,
                    init_scale: float) -> list[str]:
    """Add bottleneck `name` at every site of `placement`; returns the sites' module paths."""
    hidden, sites = model.config.hidden_size, []
    prefix = model.base_model_prefix
    for i, layer in enumerate(encoder_layers(model)):
        for path in SITES[placement]:
            site = layer.get_submodule(path)
            if not hasattr(site, STACK):
                setattr(site, STACK, AdapterStack())
                site.dense.register_forward_hook(partial(_through_stack, site))
            like = site.dense.weight  # the adapter takes the base's dtype and device
            getattr(site, STACK)[name] = Bottleneck(hidden, size, non_linearity, init_scale, like.dtype, like.device)
            sites.append(f"{prefix}.encoder.layer.{i}.{path}")
    return sites
