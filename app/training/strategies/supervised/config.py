from app.training.config import TaskMethodSettings


class SupervisedSettings(TaskMethodSettings):
    """Full fine-tuning: every weight trains, with a new classification head (Devlin et al. 2019)."""
