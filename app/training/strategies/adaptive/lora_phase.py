"""The MLM phases of `adaptive` with `peft: "lora"`: a LoRA adapter (Hu et al. 2021) on the frozen
encoder learns the domain instead of a full encoder copy (parameter-efficient DAPT/TAPT).

The adapter adapts encoder linear layers only; MLM-head weights the base lacks (minilm-l6 ships none)
train with it (after the head warm-up, when there is one), the tied decoder staying frozen, and the
head's own weights are saved beside it (`mlm_head.safetensors`, ~0.7 MB for minilm-l6). A phase
writes the adapted directory of app.training.adapted_base (config, tokenizer, adapter/,
mlm_head.safetensors, adapted_base.json); TAPT after DAPT continues the same adapter and head.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file

from app.training.adapted_base import ADAPTED_BASE, ADAPTER, MLM_HEAD, PEFT_PREFIX, filled_keys
from app.training.base import TrainContext, TrainingError
from app.training.base_facts import matches_target, target_choices, unmatched_targets
from app.training.lora_shape import default_targets
from app.training.peft_adapter import linear_module_names
from app.training.strategies.adaptive.config import AdaptiveLora

if TYPE_CHECKING:
    from peft import LoraConfig

LORA = "lora_"
NAME = "default"  # the injected adapter's name in the model's parameter names


def _named(key: str) -> str:
    """peft's saved name (…query.lora_A.weight) as the injected parameter's (…query.lora_A.default.weight)."""
    stem, _, leaf = key.rpartition(".")
    return f"{stem}.{NAME}.{leaf}"


def _targets(model: torch.nn.Module, settings: AdaptiveLora, ctx: TrainContext) -> list[str]:
    """Full names of the encoder's linear layers to adapt (never the MLM head's)."""
    prefix = model.base_model_prefix + "."
    encoder = [name for name, m in model.named_modules() if isinstance(m, torch.nn.Linear) and name.startswith(prefix)]
    if settings.target_modules == "all-linear":
        return encoder
    wanted = settings.target_modules or default_targets(model.config.model_type)
    if missing := unmatched_targets(wanted, encoder):
        raise TrainingError(f"lora.target_modules {missing} are not linear layers of {ctx.base_model.id}'s encoder; "
                            f"{target_choices(linear_module_names(model.base_model))}", code="invalid_method_settings",
                            param="method.adaptive.lora.target_modules")
    return [name for name in encoder if any(matches_target(name, t) for t in wanted)]


def lora_hooks(ctx: TrainContext, settings: AdaptiveLora, previous: Path | None) -> dict[str, Any]:
    """MlmPhase's `prepare` and `save`; `previous` is the earlier phase's adapted directory to continue."""
    from peft import inject_adapter_in_model

    head_keys: list[str] = []  # the MLM head's own weights (the tied decoder apart): saved whole
    configs: list[LoraConfig] = []  # the config prepare injected, saved with the adapter

    def prepare(model: torch.nn.Module, missing: set[str]) -> set[str]:
        configs.append(settings.peft_config(_targets(model, settings, ctx)))
        inject_adapter_in_model(configs[-1], model)
        supplied: set[str] = set()
        if previous is not None:
            adapter = load_file(previous / ADAPTER / "adapter_model.safetensors")
            model.load_state_dict({_named(k.removeprefix(PEFT_PREFIX)): v for k, v in adapter.items()}, strict=False)
            head = load_file(previous / MLM_HEAD)
            model.load_state_dict(head, strict=False)
            supplied = filled_keys(model, set(head), missing)
        tied, encoder = model.get_input_embeddings().weight, model.base_model_prefix + "."
        for name, weight in model.named_parameters():
            if not name.startswith(encoder) and LORA not in name and weight is not tied:
                head_keys.append(name)
            weight.requires_grad_(LORA in name or (name in missing and weight is not tied))
        return supplied

    def save(model: torch.nn.Module, tokenizer: Any, output_dir: Path) -> None:
        adapter_dir = output_dir / ADAPTER
        adapter_dir.mkdir(parents=True, exist_ok=True)
        state = {PEFT_PREFIX + k.replace(f".{NAME}.", "."): v.detach().cpu().contiguous()
                 for k, v in model.state_dict().items() if LORA in k}
        save_file(state, adapter_dir / "adapter_model.safetensors",
                  metadata={"base_model": ctx.base_model.id, "base_model_sha256": ctx.base_model.sha256})
        configs[-1].save_pretrained(str(adapter_dir))
        record = json.loads((adapter_dir / "adapter_config.json").read_text())
        record.update(base_model_name_or_path=ctx.base_model.id, encoder_prefix=model.base_model_prefix)
        (adapter_dir / "adapter_config.json").write_text(json.dumps(record, indent=2))
        params = dict(model.named_parameters())
        save_file({k: params[k].detach().cpu().contiguous() for k in head_keys}, output_dir / MLM_HEAD)
        model.config.save_pretrained(output_dir)
        tokenizer.save_pretrained(output_dir)
        base = {"id": ctx.base_model.id, "sha256": ctx.base_model.sha256,
                "path": str(Path(ctx.base_model.path).resolve())}
        (output_dir / ADAPTED_BASE).write_text(json.dumps(base, indent=2))

    return {"prepare": prepare, "save": save, "warmup_with_adapter": True}
