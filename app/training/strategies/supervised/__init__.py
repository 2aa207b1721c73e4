"""Full fine-tuning (Devlin et al. 2019): the default method of a job that names none."""
from app.training.config import AutoRule
from app.training.registry import StrategySpec, register_strategy
from app.training.strategies.supervised.config import SupervisedSettings

SPEC = register_strategy(StrategySpec(
    name="supervised", settings_model=SupervisedSettings, entrypoint=f"{__name__}.strategy:train",
    paper="Devlin et al. 2019, BERT", auto=AutoRule(learning_rate=5e-5, max_epochs=5, source=(
        "Devlin et al. 2019 (lr 5e-5); Mosbach et al. 2021 (more epochs on small data): 3-5 epochs, ~500 steps")),
    artifact_files=("model/model.safetensors", "model/config.json", "model/tokenizer.json"),
    reload="transformers", default=True))
