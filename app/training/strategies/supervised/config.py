from app.training.config import MethodSettings


class SupervisedSettings(MethodSettings):
    """Full fine-tuning: every weight trains, with a new classification head (Devlin et al. 2019)."""
