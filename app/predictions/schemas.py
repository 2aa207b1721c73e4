"""Wire shapes of POST /v1/predictions: what FastAPI validates and documents (400s name the field)."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, model_validator

from app.predictions.limits import MAX_INPUT_CHARS, MAX_INPUTS, MAX_MODEL_CHARS
from app.training.strategies.text_to_text.config import MAX_NEW_TOKENS

Text = Annotated[str, Field(max_length=MAX_INPUT_CHARS)]


class PredictionInput(BaseModel):
    """One input: a text, or a text and its pair (sentence-pair tasks, as the training file had them).
    Lone surrogates (valid JSON escapes, not text) are refused by pydantic's own string parsing."""

    model_config = ConfigDict(extra="forbid")

    text: Text = Field(description="The text to classify.")
    text_pair: Text | None = Field(None, description="Its second segment, for models trained on pairs.")

    @model_validator(mode="before")
    @classmethod
    def _plain_text(cls, value: Any) -> Any:
        return {"text": value} if isinstance(value, str) else value


_INPUT_SCHEMA = {"anyOf": [
    {"type": "string", "maxLength": MAX_INPUT_CHARS, "description": "A text to classify."},
    {"type": "object", "additionalProperties": False, "required": ["text"], "properties": {
        "text": {"type": "string", "maxLength": MAX_INPUT_CHARS},
        "text_pair": {"anyOf": [{"type": "string", "maxLength": MAX_INPUT_CHARS}, {"type": "null"}]}}},
]}


class PredictionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"model": "ft:minilm-l6:tenant-…::ftjob-…", "input": ["great match", "stocks fell"]}]})

    model: str = Field(min_length=1, max_length=MAX_MODEL_CHARS, description=(
        "A succeeded fine-tuning job of yours: its `fine_tuned_model`, or its id."))
    threshold: float | None = Field(None, gt=0, lt=1, description=(
        "Multi-label models only: a label applies at this sigmoid probability (default: the job's "
        "multi_label_threshold, 0.5 unless it set one)."))
    max_new_tokens: int | None = Field(None, ge=1, le=MAX_NEW_TOKENS, description=(
        f"text_to_text models only: tokens to generate at most, 1-{MAX_NEW_TOKENS} (default: the job's "
        "max_new_tokens, 32 unless it set one); decoding is greedy."))
    input: list[Annotated[PredictionInput, WithJsonSchema(_INPUT_SCHEMA)]] = Field(
        min_length=1, max_length=MAX_INPUTS, description=f"1 to {MAX_INPUTS} texts, or "
        f'`{{"text", "text_pair"}}` objects, each at most {MAX_INPUT_CHARS} characters.')


class Entity(BaseModel):
    entity: str = Field(description="The entity type (the tag without its B-/I- prefix).")
    start: int = Field(description="Character offset of its first character in the input text.")
    end: int = Field(description="Character offset just past its last character.")
    text: str = Field(description="text[start:end].")
    words: list[int] = Field(description="[first word, last word + 1], words split on whitespace.")


class Prediction(BaseModel):
    """Per task type: `label` and `probabilities` (single-label), `value` (regression), `labels` and
    `probabilities` (multi-label, sigmoid per label), `tags` and `entities` (token classification), `text`
    (text_to_text; with `label` and `matched` when it was trained on classification rows)."""

    object: Literal["prediction"] = "prediction"
    index: int = Field(description="The input's position in the request.")
    label: str | None = Field(None, description=(
        "Single-label: the most probable label (labels are strings here, as in config.json's id2label)."))
    probabilities: dict[str, float] | None = Field(None, description=(
        "Single-label: softmax probability of every label; multi-label: each label's own sigmoid probability."))
    value: float | None = Field(None, description="Regression: the predicted number.")
    labels: list[str] | None = Field(None, description="Multi-label: the labels at or above the threshold.")
    tags: list[str] | None = Field(None, description="Token classification: one BIO tag per whitespace-split word.")
    entities: list[Entity] | None = Field(None, description="Token classification: the tagged entities, with spans.")
    text: str | None = Field(None, description="text_to_text: the generated text (greedy).")
    matched: bool | None = Field(None, description=(
        "text_to_text trained on classification rows: whether the generated text names one of the job's labels "
        "(then `label` is it; otherwise `label` is left out)."))


class PredictionList(BaseModel):
    object: Literal["list"] = "list"
    model: str = Field(description="The job's fine_tuned_model.")
    data: list[Prediction]
