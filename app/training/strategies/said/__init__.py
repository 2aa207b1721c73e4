"""SAID (Aghajanyan et al. 2021): a seeded Fastfood projection of d trained numbers (plus one scale per
tensor) moves every base tensor; the artifact is θ_d, λ, the head and the projection seed."""
from app.training.config import AutoRule
from app.training.registry import StrategySpec, register_strategy
from app.training.strategies.said.config import SaidSettings

SPEC = register_strategy(StrategySpec(
    name="said", settings_model=SaidSettings, entrypoint=f"{__name__}.strategy:train",
    paper="Aghajanyan, Zettlemoyer & Gupta 2021, Intrinsic Dimensionality Explains the Effectiveness of "
          "Language Model Fine-Tuning (SAID)",
    auto=AutoRule(learning_rate=1e-2, max_epochs=10, source=(
        "Intrinsic-SAID as run by Karimi Mahabadi et al. 2021 (Compacter, configs/intrinsic_said.json: Fastfood, "
        "lr 3e-2, 20 epochs on small GLUE sets); θ_d moves through unit-norm projections, so it needs a far larger "
        "rate than full fine-tuning. minilm-l6, 500 election tweets, 2 epochs: 3e-3 0.80, 1e-2 0.80, 3e-2 0.845, "
        "1e-1 diverges (0.465); at 10 epochs on 1,000 tweets 3e-2 is unsafe (3 seeds: 91.1, 50.05, 70.05 test) "
        "and 1e-2 steady (92.05, 91.65, 91.8); up to 10 epochs on small files like the other parameter-efficient "
        "methods")),
    artifact_files=("said/said.safetensors", "said/said_config.json"), reload="tuneforge",
    apply="app.training.strategies.said.apply:apply_said"))
