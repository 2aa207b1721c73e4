"""Wire shapes of POST /v1/predictions: what FastAPI validates and documents (400s name the field)."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, WithJsonSchema, field_validator, model_validator
from pydantic_core import PydanticCustomError

from app.predictions.limits import MAX_CONVERSATION_CHARS, MAX_INPUT_CHARS, MAX_INPUTS, MAX_MESSAGES, MAX_MODEL_CHARS
from app.training.strategies.text_to_text.config import MAX_NEW_TOKENS

Text = Annotated[str, Field(max_length=MAX_INPUT_CHARS)]


class ChatMessage(BaseModel):
    """One turn of an OpenAI chat conversation (the roles of the chat rows the job trained on)."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"] = Field(description="Who speaks: system, user or assistant.")
    content: Text = Field(description="What they say (a string).")
    name: str | None = Field(None, max_length=64, description="Accepted as in OpenAI's format; not read.")


class PredictionInput(BaseModel):
    """One input: a text, a text and its pair (sentence-pair tasks, as the training file had them), or, for a
    decoder trained on chat rows, a conversation (`{"messages": [...]}` or the bare list of messages) that the
    model continues with the assistant's reply. Lone surrogates (valid JSON escapes, not text) are refused by pydantic's
    own string parsing."""

    model_config = ConfigDict(extra="forbid")

    messages: list[ChatMessage] | None = Field(None, min_length=1, max_length=MAX_MESSAGES, description=(
        "A conversation for a decoder trained on chat rows (usually ending with the user's turn); the assistant's "
        "reply is generated."))  # before text: see _text
    text: Text | None = Field(None, validate_default=True, description="The text to classify.")
    text_pair: Text | None = Field(None, description="Its second segment, for models trained on pairs.")

    @model_validator(mode="before")
    @classmethod
    def _plain_text(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"text": value}
        return {"messages": value} if isinstance(value, list) else value

    @field_validator("messages")
    @classmethod
    def _a_conversation_to_answer(cls, messages: list[ChatMessage] | None) -> list[ChatMessage] | None:
        if messages is None:
            return None
        if (total := sum(len(m.content) for m in messages)) > MAX_CONVERSATION_CHARS:
            raise ValueError(f"the messages hold {total} characters together; keep a conversation to "
                             f"{MAX_CONVERSATION_CHARS} (its oldest turns matter least)")
        return messages

    @field_validator("text")
    @classmethod
    def _text(cls, text: str | None, info: ValidationInfo) -> str | None:
        """Required unless the item is a conversation (`messages`, validated first, is then in info.data)."""
        if text is None and "messages" in info.data and info.data["messages"] is None:  # absent, not invalid
            raise PydanticCustomError("missing", 'Field required: give "text" (or "messages", a conversation)')
        return text

    @model_validator(mode="after")
    def _text_or_messages(self) -> PredictionInput:
        if self.text is not None and self.messages is not None:
            raise ValueError('give either "text" (with "text_pair", if any) or "messages", not both')
        if self.messages is not None and self.text_pair is not None:
            raise ValueError('"text_pair" goes with "text", not with "messages"; leave it out')
        return self

    @property
    def conversation(self) -> list[dict[str, str]] | None:
        return [{"role": m.role, "content": m.content} for m in self.messages] if self.messages is not None else None


_MESSAGES_SCHEMA = {"type": "array", "minItems": 1, "maxItems": MAX_MESSAGES, "items": {
    "type": "object", "additionalProperties": False, "required": ["role", "content"], "properties": {
        "role": {"enum": ["system", "user", "assistant"]}, "content": {"type": "string", "maxLength": MAX_INPUT_CHARS},
        "name": {"anyOf": [{"type": "string", "maxLength": 64}, {"type": "null"}]}}}}
_INPUT_SCHEMA = {"anyOf": [
    {"type": "string", "maxLength": MAX_INPUT_CHARS, "description": "A text to classify."},
    {"type": "object", "additionalProperties": False, "required": ["text"], "properties": {
        "text": {"type": "string", "maxLength": MAX_INPUT_CHARS},
        "text_pair": {"anyOf": [{"type": "string", "maxLength": MAX_INPUT_CHARS}, {"type": "null"}]}}},
    {"type": "object", "additionalProperties": False, "required": ["messages"], "description": (
        "Decoders trained on chat rows: a conversation, continued with the assistant's reply."),
     "properties": {"messages": _MESSAGES_SCHEMA}},
    {**_MESSAGES_SCHEMA, "description": "The same conversation as a bare list of messages."},
]}


class PredictionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"model": "ft:minilm-l6:tenant-…::ftjob-…", "input": ["great match", "stocks fell"]}]})

    model: str = Field(min_length=1, max_length=MAX_MODEL_CHARS, description=(
        "A succeeded fine-tuning job of yours: its `fine_tuned_model`, or its id."))
    threshold: float | None = Field(None, gt=0, lt=1, description=(
        "Multi-label models only: a label applies at this sigmoid probability (default: the job's "
        "multi_label_threshold, as its manifest records it: chosen on validation when left on auto)."))
    max_new_tokens: int | None = Field(None, ge=1, le=MAX_NEW_TOKENS, description=(
        f"text_to_text models only: tokens to generate at most, 1-{MAX_NEW_TOKENS} (default: the job's "
        "max_new_tokens, 32 unless it set one); decoding is greedy."))
    input: list[Annotated[PredictionInput, WithJsonSchema(_INPUT_SCHEMA)]] = Field(
        min_length=1, max_length=MAX_INPUTS, description=f"1 to {MAX_INPUTS} texts, or "
        f'`{{"text", "text_pair"}}` objects, each at most {MAX_INPUT_CHARS} characters; for a decoder trained on '
        f'chat rows also conversations, `{{"messages": [{{"role", "content"}}, ...]}}` or the bare list (the '
        f"assistant's reply is generated; {MAX_CONVERSATION_CHARS} characters of content at most).")


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
