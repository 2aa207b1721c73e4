from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from app.training.virtual_tokens import VirtualTokenSettings


class PromptTuningSettings(VirtualTokenSettings):
    """Prompt tuning: learned embeddings prepended to the input embeddings train with the head; the
    encoder stays frozen (Lester et al. 2021, "The Power of Scale for Parameter-Efficient Prompt Tuning")."""

    prompt_tuning_init: Literal["random", "text"] = Field("random", description=(
        "Initial prompt: random vectors, or the embeddings of prompt_tuning_init_text's tokens (BERT's "
        "[CLS]/[SEP] included), repeated or cut to num_virtual_tokens (Lester et al. found word "
        "initialisation better than random)."))
    prompt_tuning_init_text: str | None = Field(None, max_length=2000, validate_default=True, description=(
        "Text whose token embeddings start the prompt, e.g. 'Classify the sentiment:'; required when "
        "prompt_tuning_init is 'text', refused otherwise."))

    @field_validator("prompt_tuning_init_text")
    @classmethod
    def _text_iff_text_init(cls, value: str | None, info: ValidationInfo) -> str | None:
        init = info.data.get("prompt_tuning_init")
        if init == "text" and (value is None or not value.strip()):
            raise ValueError("prompt_tuning_init is 'text': give the words to start from in prompt_tuning_init_text")
        if init == "random" and value is not None:
            raise ValueError("prompt_tuning_init_text is only used with prompt_tuning_init 'text'; set that or "
                             "leave the text out")
        return value
