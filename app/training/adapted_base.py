"""An adapted encoder stored as its base plus a LoRA adapter (adaptive with `peft: "lora"`, Hu et al.
2021), loaded as one model: the base's weights with the low-rank updates merged in memory.

The directory (`encoder/` of the job's artifact, registered as `adapted:<job>`) holds config.json and
the tokenizer (copies of the base's), `adapter/` (peft's adapter_config.json + adapter_model.safetensors,
trained on the masked-LM model), `mlm_head.safetensors` (MLM-head weights the base lacked, trained
with the adapter) and `adapted_base.json` naming the base ({"id", "sha256", "path"}): a few MB, no
second copy of the base's weights. `load_pretrained` stands in for `<class>.from_pretrained(path)`
wherever a base model is loaded; for a plain model directory it is exactly that. The base may itself
be such a directory (an adaptive job over `adapted:<job>`): the updates then merge in order.

Torch is imported inside the functions: the API reads `weights_dir` (base facts) without it.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from app.training.errors import BaseModelMissing

ADAPTED_BASE = "adapted_base.json"
ADAPTER = "adapter"
MLM_HEAD = "mlm_head.safetensors"
PEFT_PREFIX = "base_model.model."  # how peft's save_pretrained names an adapter's tensors


def is_adapted(path: Path | str) -> bool:
    return (Path(path) / ADAPTED_BASE).is_file()


def base_dir(path: Path | str) -> Path:
    """The directory of the model an adapted directory builds on: its recorded path, else this host's copy by
    content hash (fetched from a remote object store the first time), else where the model with that id and
    content is registered now (an operator registered the files again elsewhere); BaseModelMissing otherwise."""
    record = json.loads((Path(path) / ADAPTED_BASE).read_text())
    recorded = Path(record["path"])
    if (recorded / "config.json").is_file():
        return recorded
    from app.base_models.service import local_model_dir, registered_copy
    from app.models import BaseModel

    for local in (local_model_dir(BaseModel(id=record["id"], path=record["path"], sha256=record["sha256"])),
                  registered_copy(record["id"], record["sha256"])):
        if local is not None and (local / "config.json").is_file():
            return local

    raise BaseModelMissing(record["id"], recorded, record["sha256"])


def weights_dir(path: Path | str) -> Path:
    """Where the model's full weights are: the directory itself, or (through adapted ones) its base's."""
    path = Path(path)
    while is_adapted(path):
        path = base_dir(path)
    return path


def check_loadable(model_id: str, path: Path | str) -> None:
    """Refuse, naming the model and the missing path, a base whose weights (or, through adapted directories,
    their root's) are not on this host, before a job starts training on it."""
    if not (weights_dir(path) / "config.json").is_file():

        raise BaseModelMissing(model_id, path)


def load_pretrained(model_class: Any, path: Path | str, **kwargs: Any) -> Any:
    """`model_class.from_pretrained(path, **kwargs)`, also for an adapted directory (base + merged LoRA
    + the MLM-head weights it trained); with `output_loading_info=True` the head weights it supplies
    are no longer listed as missing."""
    path = Path(path)
    if not is_adapted(path):
        return model_class.from_pretrained(path, **kwargs)
    loaded = load_pretrained(model_class, base_dir(path), **kwargs)
    model = loaded[0] if isinstance(loaded, tuple) else loaded
    merge_lora(model, path / ADAPTER)
    supplied = _copy_head(model, path / MLM_HEAD)
    if isinstance(loaded, tuple):
        filled = filled_keys(model, supplied, loaded[1]["missing_keys"])
        loaded[1]["missing_keys"] = [k for k in loaded[1]["missing_keys"] if k not in filled]
    return loaded


def filled_keys(model: Any, loaded: set[str], missing: Iterable[str]) -> set[str]:
    """The `missing` keys that `loaded` filled, tied aliases included (BERT's decoder bias is the head's bias)."""
    state = model.state_dict(keep_vars=True)
    filled = {id(state[k]) for k in loaded if k in state}
    return {k for k in missing if k in state and id(state[k]) in filled}


def _relative(name: str, prefix: str) -> str:
    """A parameter/module name relative to the encoder (below `bert.` and the like)."""
    return name[len(prefix) + 1:] if name.startswith(prefix + ".") else name


def merge_lora(model: Any, adapter_dir: Path) -> int:
    """Add scale·B·A to every encoder linear layer the adapter adapts; returns how many. The adapter
    was trained on a masked-LM model, `model` may be any class with the same encoder."""
    import torch
    from safetensors.torch import load_file

    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    r, alpha = config["r"], config["lora_alpha"]
    scale = alpha / (r ** 0.5 if config.get("use_rslora") else r)
    tensors = load_file(adapter_dir / "adapter_model.safetensors")
    trained_prefix = config.get("encoder_prefix", model.base_model_prefix)
    encoder = model.base_model
    merged = 0
    with torch.no_grad():
        for key in sorted(k for k in tensors if k.endswith("lora_A.weight")):
            module_name = _relative(key.removeprefix(PEFT_PREFIX).removesuffix(".lora_A.weight"), trained_prefix)
            layer = encoder.get_submodule(module_name)
            b = tensors[key.replace("lora_A", "lora_B")].float()
            layer.weight += (scale * b @ tensors[key].float()).to(layer.weight.dtype)
            merged += 1
    return merged


def _copy_head(model: Any, head_file: Path) -> set[str]:
    """Copy the trained MLM-head weights into `model` where it has them (a masked-LM class)."""
    from safetensors.torch import load_file

    if not head_file.is_file():
        return set()
    state = model.state_dict()
    found = {k: v for k, v in load_file(head_file).items() if k in state and state[k].shape == v.shape}
    if found:
        model.load_state_dict(found, strict=False)
    return set(found)
