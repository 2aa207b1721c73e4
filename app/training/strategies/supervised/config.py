from typing import ClassVar

from app.training.config import TaskMethodSettings


class SupervisedSettings(TaskMethodSettings):
    """Full fine-tuning: every weight trains, with a new classification head (Devlin et al. 2019)."""

    few_shot_recipe: ClassVar[bool] = True  # Mosbach et al. 2021 below 500 examples (stability.recipe "auto")
