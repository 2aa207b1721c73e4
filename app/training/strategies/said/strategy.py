"""SAID / DID (Aghajanyan, Zettlemoyer & Gupta 2021, "Intrinsic Dimensionality Explains the
Effectiveness of Language Model Fine-Tuning"): θ_i = θ₀,i + λ_i·P_i·θ', P a seeded Fastfood projection.

Artifact: `said/said.safetensors` (`said.theta`, `said.scales` under SAID, the head by state-dict
name) and `said/said_config.json` (d, seed, flag, the projected tensors and shapes, the base), applied
over the shared base by `app.training.strategies.said.apply:apply_said`, which rebuilds P from the seed.
"""
from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import save_file

from app.training.base import TrainContext, TrainingError, TrainResult
from app.training.task_run import run_classification
from app.training.delta import is_new_or_head
from app.training.strategies.said.config import SaidSettings
from app.training.strategies.said.projection import SPACE, IntrinsicSpace, Target, attach, select_targets

WEIGHTS = Path("said") / "said.safetensors"
CONFIG = Path("said") / "said_config.json"
FORMAT = "tuneforge-said/1"


def projection_seed(settings: SaidSettings, job_seed: int) -> int:
    """The given seed, or one derived from the job's (kept apart from the head's initialisation)."""
    if settings.projection_seed is not None:
        return settings.projection_seed
    return (job_seed * 1_000_003 + 0x5A1D) % 2**63


def _checked(ctx: TrainContext, settings: SaidSettings, targets: list[Target]) -> None:
    """d must fit the model: at most the projected parameter count, and above m under SAID."""
    total, param = sum(t.numel for t in targets), f"method.{ctx.method}.d"
    scope = "including" if settings.include_embeddings else "excluding"
    if settings.d > total:
        raise TrainingError(f"d={settings.d} exceeds the {total:,} parameters of {ctx.base_model.id} that are "
                            f"projected ({len(targets)} tensors, {scope} embeddings); choose d ≤ {total}.",
                            code="invalid_method_settings", param=param)
    if settings.said and settings.d <= len(targets):
        raise TrainingError(f"d={settings.d} leaves no shared dimension: SAID spends one of d on the scale of each "
                            f"of the {len(targets)} projected tensors of {ctx.base_model.id}; choose d > "
                            f"{len(targets)} or said: false.", code="invalid_method_settings", param=param)


def _prepare(model, ctx: TrainContext, new_parameters: set[str]):
    settings = ctx.settings_as(SaidSettings)
    targets = select_targets(model, new_parameters, settings.include_embeddings)
    _checked(ctx, settings, targets)
    for name, param in model.named_parameters():
        param.requires_grad_(is_new_or_head(name, new_parameters))
    space = attach(model, targets, settings.d, settings.said, projection_seed(settings, ctx.hyperparameters.seed))
    ctx.sink.message(f"{'SAID' if settings.said else 'DID'}: d={settings.d} ({space.theta.numel():,} shared + "
                     f"{0 if space.scales is None else space.scales.numel()} scales) over "
                     f"{sum(t.numel for t in targets):,} parameters in {len(targets)} tensors; Fastfood blocks of "
                     f"{space.block_size}, projection seed {space.seed}",
                     data={"d": settings.d, "tensors": len(targets), "projection_seed": space.seed})
    return model


def _save(model, tokenizer, output_dir: Path, ctx: TrainContext, new_parameters: set[str]) -> None:
    space: IntrinsicSpace = getattr(model, SPACE)
    head = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if is_new_or_head(n, new_parameters)}
    weights = {f"{SPACE}.theta": space.theta.detach().cpu().contiguous(), **head}
    if space.scales is not None:
        weights[f"{SPACE}.scales"] = space.scales.detach().cpu().contiguous()
    (output_dir / WEIGHTS).parent.mkdir(parents=True, exist_ok=True)
    base = {"id": ctx.base_model.id, "sha256": ctx.base_model.sha256}
    save_file(weights, output_dir / WEIGHTS, metadata={"base_model": base["id"], "base_model_sha256": base["sha256"]})
    settings = ctx.settings_as(SaidSettings)
    (output_dir / CONFIG).write_text(json.dumps({
        "format": FORMAT, "projection": "fastfood", "d": space.d, "d_shared": space.theta.numel(),
        "said": space.scales is not None, "include_embeddings": settings.include_embeddings,
        "projection_seed": space.seed, "block_size": space.block_size,
        "tensors": [{"name": t.name, "shape": list(t.shape)} for t in space.targets],
        "head": sorted(head), "base_model": base}, indent=2))


def train(ctx: TrainContext) -> TrainResult:
    return run_classification(ctx, _prepare, _save)
