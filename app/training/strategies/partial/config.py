from pydantic import Field

from app.training.base_facts import BaseFacts, BaseProblem
from app.training.config import TaskMethodSettings


class PartialSettings(TaskMethodSettings):
    """Partial fine-tuning: only the top k encoder layers, the head and (optionally) the pooler train
    (Donahue et al. 2014, DeCAF; for transformers Lee et al. 2019, "What Would Elsa Do? Freezing Layers
    During Transformer Fine-Tuning"); k = 0 is a linear probe."""

    # a k beyond the base's depth is refused at submission (check_base) and again when the job starts
    top_layers: int = Field(2, ge=0, le=256, description=(
        "How many of the top encoder layers train (counted after drop_top_layers); 0 = a linear probe "
        "(head, plus the pooler if train_pooler). Lee et al. 2019: the top quarter of BERT's layers recovers "
        "~90% of full fine-tuning quality. At most the base's depth. auto's learning rate (1e-3) suits a few "
        "layers; when most of the encoder trains, give learning_rate_multiplier 0.05-0.1 (BERT's recipe)."))
    train_pooler: bool = Field(True, description=TaskMethodSettings.model_fields["train_pooler"].description)

    def check_base(self, facts: BaseFacts) -> list[BaseProblem]:
        """top_layers within the layers the base has left after drop_top_layers."""
        problems = super().check_base(facts)
        if problems or facts.depth is None:
            return problems
        left = facts.depth - self.drop_top_layers
        if self.top_layers > left:
            return [("top_layers", f"{self.depth_phrase(facts)}; choose top_layers ≤ {left}")]
        return []
