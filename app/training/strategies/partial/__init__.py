"""Partial fine-tuning (Donahue et al. 2014; Lee et al. 2019): only the top k encoder layers (+ head,
pooler) train; the artifact is a delta of those tensors. k = 0 is a linear probe."""
from app.training.config import AutoRule
from app.training.registry import StrategySpec, register_strategy
from app.training.strategies.partial.config import PartialSettings

SPEC = register_strategy(StrategySpec(
    name="partial", settings_model=PartialSettings, entrypoint=f"{__name__}.strategy:train",
    paper="Donahue et al. 2014, DeCAF; Lee et al. 2019, What Would Elsa Do? Freezing Layers During "
          "Transformer Fine-Tuning",
    auto=AutoRule(learning_rate=1e-3, max_epochs=10, source=(
        "A linear probe on frozen features is trained at ~1e-3 (SentEval's Adam probes, Conneau & Kiela 2018); "
        "Lee et al. 2019 tune the top layers with BERT's recipe. Grid on minilm-l6, 1,000 election tweets, "
        "validation accuracy: top_layers=2 91.6/91.2/91.2 at 1e-4/3e-4/1e-3 (3 epochs), 92.6 at 1e-3 x 10 "
        "epochs; the probe (top_layers=0) 75.8 at 1e-4, 81.8 at 1e-3, 82.6 at 1e-3 x 10 epochs")),
    artifact_files=("delta/delta.safetensors",), reload="tuneforge",
    apply="app.training.delta:apply_delta"))
