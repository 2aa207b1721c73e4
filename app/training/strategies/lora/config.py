from typing import Literal

from pydantic import Field

from app.training.config import TaskMethodSettings


class LoraSettings(TaskMethodSettings):
    """LoRA: low-rank updates of chosen linear layers, head trained alongside (Hu et al. 2021)."""

    r: int = Field(8, ge=1, le=256, description="Rank of the low-rank update matrices.")
    lora_alpha: float = Field(16, gt=0, le=4096, description="Scaling numerator: updates are scaled by alpha/r.")
    lora_dropout: float = Field(0.1, ge=0, le=0.9, description="Dropout on the LoRA branch input.")
    target_modules: list[str] | None = Field(
        None, min_length=1, description="Names of linear modules to adapt; default: attention query and value."
    )
    bias: Literal["none", "all", "lora_only"] = Field("none", description="Which biases train with the adapter.")
