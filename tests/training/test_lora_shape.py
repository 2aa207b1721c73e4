"""One LoRA shape (app.training.lora_shape) for every method that offers LoRA: the same fields, bounds, help
and error messages under lora, cloze.peft, adaptive.lora and text_to_text; only a default a method
declares as its own differs."""
from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from app.training.base_facts import BaseFacts
from app.training.lora_shape import LoraShape
from app.training.strategies.adaptive.config import AdaptiveLora, AdaptiveSettings
from app.training.strategies.cloze.config import ClozeLora
from app.training.strategies.lora.config import LoraSettings
from app.training.strategies.text_to_text.config import TextToTextSettings

FIELDS = ("r", "lora_alpha", "lora_dropout", "target_modules")
# each method's LoRA object, and what it needs besides the LoRA fields to validate
METHODS: list[tuple[type[BaseModel], dict]] = [
    (LoraSettings, {}), (AdaptiveLora, {}), (ClozeLora, {"type": "lora"}), (TextToTextSettings, {"peft": "lora"})]
# the defaults a method declares as its own (a generative model's LoRA)
OWN = {(TextToTextSettings, "lora_dropout"): ["default"], (TextToTextSettings, "target_modules"): ["description"]}


def _property(model: type[BaseModel], field: str) -> dict:
    return model.model_json_schema()["properties"][field]


@pytest.mark.parametrize("model", [m for m, _ in METHODS], ids=lambda m: m.__name__)
@pytest.mark.parametrize("field", FIELDS)
def test_every_method_publishes_the_shapes_schema(model: type[BaseModel], field: str) -> None:
    own = OWN.get((model, field), [])
    theirs = {k: v for k, v in _property(model, field).items() if k not in own}
    shared = {k: v for k, v in _property(LoraShape, field).items() if k not in own}
    assert theirs == shared


def test_only_text_to_text_keeps_its_own_defaults() -> None:
    assert [TextToTextSettings().lora_dropout, LoraSettings().lora_dropout, AdaptiveLora().lora_dropout] == [0.05, 0.1,
                                                                                                             0.1]
    assert "peft's choice" in _property(TextToTextSettings, "target_modules")["description"]
    assert _property(TextToTextSettings, "target_modules")["anyOf"] == _property(LoraShape, "target_modules")["anyOf"]


@pytest.mark.parametrize("field, value", [("r", 0), ("r", 257), ("lora_alpha", 0), ("lora_alpha", 5000),
                                          ("lora_dropout", -0.1), ("lora_dropout", 0.95), ("target_modules", []),
                                          ("target_modules", "some-linear")])
def test_every_method_refuses_a_bad_shape_with_the_same_message(field: str, value: object) -> None:
    messages = set()
    for model, needs in METHODS:
        with pytest.raises(ValidationError) as refused:
            model.model_validate({**needs, field: value})
        errors = [e for e in refused.value.errors() if e["loc"][0] == field]
        assert errors, f"{model.__name__} accepted {field}={value!r}"
        messages.add(tuple(e["msg"] for e in errors))
    assert len(messages) == 1, messages


def test_peft_config_carries_the_shape_and_the_methods_own_options() -> None:
    shape = LoraShape(r=4, lora_alpha=32, lora_dropout=0.2)
    config = shape.peft_config(["query"], bias="all")
    assert (config.r, config.lora_alpha, config.lora_dropout, config.target_modules, config.bias) == (
        4, 32, 0.2, {"query"}, "all")


def _encoder(model_type: str, layers: list[str]) -> BaseFacts:
    tensors = {f"encoder.layer.0.{name}.weight": (4, 4) for name in layers}
    return BaseFacts(name="tiny", model_type=model_type, depth=1, hidden_size=4, max_position_embeddings=16,
                     pad_token_id=0, tokenizer_max_length=16, tensors=tensors)


def test_adaptive_checks_the_default_targets_as_lora_does() -> None:
    """adaptive's MLM LoRA takes LoRA's per-model_type defaults, so a base without them is refused at submission
    (naming what to set), as lora and cloze refuse it."""
    deberta = _encoder("deberta-v2", ["query_proj", "value_proj"])
    adaptive = AdaptiveSettings(tapt=True, peft="lora")
    [(field, message)] = adaptive.check_base(deberta)
    assert field == "lora.target_modules" and "set target_modules" in message and "query_proj" in message
    assert LoraSettings().check_base(deberta)[0][1] == message
    distilbert = _encoder("distilbert", ["q_lin", "v_lin"])
    assert adaptive.check_base(distilbert) == [] and LoraSettings().check_base(distilbert) == []
