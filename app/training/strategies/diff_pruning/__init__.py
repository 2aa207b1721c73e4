"""Diff pruning (Guo, Rush & Kim 2021): a sparse task delta over the frozen base, stored as indices + values."""
from app.training.config import AutoRule
from app.training.registry import StrategySpec, register_strategy
from app.training.strategies.diff_pruning.config import DiffPruningSettings

SPEC = register_strategy(StrategySpec(
    name="diff_pruning", settings_model=DiffPruningSettings, entrypoint=f"{__name__}.strategy:train",
    paper="Guo, Rush & Kim 2021, Parameter-Efficient Transfer Learning with Diff Pruning (gates: Louizos et al. 2018)",
    auto=AutoRule(learning_rate=1e-3, max_epochs=10, source=(
        "Guo et al. 2021 (BERT-large, GLUE): 1e-5 for the dense stage, 5e-5 for fixmask fine-tuning, 0.1 for log-α. "
        "On minilm-l6, election tweets (bench/peft.py data, 1,000 train, seed 0): lr 1e-3 for the head and kept "
        "entries (dense stage 0.1x, log-α 0.1) and 10 epochs reach 0.919 test accuracy (magnitude: 0.910) at 0.5% "
        "kept; 2e-4 and 5e-4 were worse on a 400-example grid")),
    artifact_files=("sparse_delta/delta.safetensors", "sparse_delta/sparse_delta.json"), reload="tuneforge",
    apply="app.training.strategies.diff_pruning.apply:apply_sparse_delta"))
