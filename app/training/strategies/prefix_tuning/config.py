from __future__ import annotations

from pydantic import Field, ValidationInfo, field_validator

from app.training.virtual_tokens import VirtualTokenSettings


class PrefixTuningSettings(VirtualTokenSettings):
    """Prefix tuning: learned keys and values prepended in every attention layer train with the head;
    the encoder stays frozen (Li & Liang 2021, "Prefix-Tuning"; for encoders as in P-Tuning v2, Liu et
    al. 2022)."""

    prefix_projection: bool = Field(False, description=(
        "Reparameterise the prefix through a two-layer MLP while training (Li & Liang 2021; P-Tuning v2 "
        "found it task-dependent). The artifact keeps only the projected prefix, so it is the same size."))
    encoder_hidden_size: int | None = Field(None, ge=1, le=8192, description=(
        "Hidden width of the reparameterisation MLP; only with prefix_projection (default 512, Li & Liang 2021)."))

    @field_validator("encoder_hidden_size")
    @classmethod
    def _only_when_projecting(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and not info.data.get("prefix_projection"):
            raise ValueError("encoder_hidden_size sizes the prefix_projection MLP; set prefix_projection to true "
                             "or leave encoder_hidden_size out")
        return value
