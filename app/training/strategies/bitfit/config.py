from pydantic import Field

from app.training.config import TaskMethodSettings


class BitFitSettings(TaskMethodSettings):
    """BitFit: only bias terms (and the task head) train (Ben-Zaken et al. 2021)."""

    train_head: bool = Field(True, description="Also train the new classification head (it starts random).")
