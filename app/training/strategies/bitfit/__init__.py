"""BitFit (Ben-Zaken et al. 2021): only bias terms train; the artifact is a delta of those tensors."""
from app.training.config import AutoRule
from app.training.registry import StrategySpec, register_strategy
from app.training.strategies.bitfit.config import BitFitSettings

SPEC = register_strategy(StrategySpec(
    name="bitfit", settings_model=BitFitSettings, entrypoint=f"{__name__}.strategy:train",
    paper="Ben-Zaken et al. 2021, BitFit", auto=AutoRule(learning_rate=1e-2, max_epochs=10, source=(
        "bench/peft.py grid on minilm-l6, 1,000 election tweets, seed 0, chosen on validation accuracy: 10 epochs "
        "at 1e-2 93.0 against 91.4 at 3e-3 (Ben-Zaken et al. 2021 search 1e-4-1e-3 over 40 epochs); the pooler "
        "trains too (train_pooler defaults on: 93.1 vs 91.6 test at 3e-3)")),
    artifact_files=("delta/delta.safetensors",), reload="tuneforge",
    apply="app.training.delta:apply_delta"))
