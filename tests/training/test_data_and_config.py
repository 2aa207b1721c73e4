"""Validation of data files and settings: pure Python, what the API runs before queueing."""
from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from app.training.config import AutoRule, HyperparameterSettings
from app.training.data import DatasetError, iter_jsonl, load_classification_examples, validate_classification_file
from app.training.registry import UnknownStrategyError, get_strategy, list_strategies

GOOD = b'{"text": "a", "label": "x"}\n'


@pytest.mark.parametrize("content, line, fragment", [
    (b"", None, "no examples"),
    (b"\n  \n", None, "no examples"),
    (GOOD + b'{"text": "b", "label": "x"}\n', None, "at least 2 label classes"),
    (GOOD + b'{"label": "y"}\n', 2, 'missing the "text" field'),
    (GOOD + b'{"text": "", "label": "y"}\n', 2, '"text" is empty'),
    (GOOD + b'{"text": "  ", "label": "y"}\n', 2, '"text" is empty'),
    (GOOD + b'{"text": ["b"], "label": "y"}\n', 2, '"text" must be a string'),
    (b'{"text": "a"}\n', 1, 'missing the "label" field'),
    (b'{"text": "a", "label": true}\n', 1, '"label" must be a non-empty string or an integer, got true'),
    (b'{"text": "a", "label": 1.5}\n', None, "regression needs labels that vary"),  # a fraction: regression
    (GOOD + b'{"text": "b", "label": 1.5}\n', 2, "is a regression row"),
    (b'{"text": "a", "label": null}\n', 1, "got null"),
    (b'{"text": "a", "label": ""}\n', 1, '"label" must be a non-empty'),
    (b'{"text": "a", "label": "x", "text_pair": 3}\n', 1, '"text_pair" must be a string'),
    (b'{"text": "a", "label": "x", "text_pair": "b"}\n\n{"text": "c", "label": "y"}\n', 3,
     'lacks "text_pair" but line 1 has one'),
    (GOOD + b'{"text": "c", "label": "y", "text_pair": "b"}\n', 2, 'has "text_pair" but line 1 does not'),
    (GOOD + b'{"text": "b", "label": 2}\n', None, "mix strings and integers"),
    (GOOD + b"{oops\n", 2, "not valid JSON"),
    (GOOD + b"\xff\xfe\n", 2, "not valid UTF-8"),
    (b'"just a string"\n', 1, "expected a JSON object"),
    (b"[1, 2]\n", 1, "got a JSON array"),
])
def test_bad_classification_files(tmp_path, content, line, fragment):
    path = tmp_path / "data.jsonl"
    path.write_bytes(content)
    with pytest.raises(DatasetError) as info:
        validate_classification_file(path)
    assert info.value.line == line
    assert fragment in info.value.message
    assert str(info.value).startswith(f"line {line}: ") if line else not str(info.value).startswith("line")


def test_max_errors_collects_several_row_problems(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_bytes(GOOD + b'{"text": 1, "label": "y"}\n{"label": "y"}\n{"text": "z"}\n{"text": "w"}\n')
    with pytest.raises(DatasetError) as info:
        validate_classification_file(path, max_errors=3)
    assert [e.line for e in info.value.errors] == [2, 3, 4]
    assert "also line 3" in str(info.value) and "line 5" not in str(info.value)
    with pytest.raises(DatasetError) as info:
        validate_classification_file(path)
    assert [e.line for e in info.value.errors] == [2]


def test_iter_jsonl_reports_first_bad_line_and_skips_blank_ones(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_bytes(b'{"a": 1}\n\n{"b": 2}\n{bad\n{"c": 3}\n')
    seen = []
    with pytest.raises(DatasetError) as info:
        for number, obj in iter_jsonl(path):
            seen.append(number)
    assert seen == [1, 3] and info.value.line == 4


def test_good_file_summary(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_bytes(b'{"text": "a", "text_pair": "b", "label": "y"}\n\n{"text": "cd", "text_pair": "e", "label": "x"}\n'
                     b'{"text": "f", "text_pair": "g", "label": "y", "extra": 1}\n')
    summary = validate_classification_file(path)
    assert (summary.n_examples, summary.labels, summary.has_pair, summary.n_chars) == (3, ["x", "y"], True, 7)
    assert summary.label_counts == {"x": 1, "y": 2}
    examples = load_classification_examples(path)
    assert [(e.text, e.text_pair, e.label) for e in examples][1] == ("cd", "e", "x")


def test_integer_labels_stay_integers(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_bytes(b'{"text": "a", "label": 10}\n{"text": "b", "label": 2}\n')
    assert validate_classification_file(path).labels == [2, 10]


@pytest.mark.parametrize("method, settings, loc", [
    ("lora", {"r": 0}, "r"), ("lora", {"r": 1000}, "r"), ("lora", {"lora_dropout": 1.5}, "lora_dropout"),
    ("lora", {"typo": 1}, "typo"), ("lora", {"target_modules": []}, "target_modules"),
    ("lora", {"bias": "some"}, "bias"),
    ("supervised", {"hyperparameters": {"n_epochs": 0}}, "n_epochs"),
    ("supervised", {"hyperparameters": {"n_epochs": 51}}, "n_epochs"),
    ("supervised", {"hyperparameters": {"n_epochs": "many"}}, "n_epochs"),
    ("supervised", {"hyperparameters": {"batch_size": 0}}, "batch_size"),
    ("supervised", {"hyperparameters": {"batch_size": 5000}}, "batch_size"),
    ("supervised", {"hyperparameters": {"learning_rate": 0}}, "learning_rate"),
    ("supervised", {"hyperparameters": {"learning_rate": 2.0}}, "learning_rate"),
    ("supervised", {"hyperparameters": {"learning_rate_multiplier": 0}}, "learning_rate_multiplier"),
    ("supervised", {"hyperparameters": {"learning_rate_multiplier": 101}}, "learning_rate_multiplier"),
    ("supervised", {"hyperparameters": {"learning_rate": 1e-4, "learning_rate_multiplier": 2}}, "hyperparameters"),
    ("supervised", {"hyperparameters": {"n_epoch": 3}}, "n_epoch"),
    ("bitfit", {"hyperparameters": {"max_length": 4}}, "max_length"),
    ("bitfit", {"hyperparameters": {"max_length": 4096}}, "max_length"),
    ("bitfit", {"hyperparameters": {"warmup_ratio": 0.9}}, "warmup_ratio"),
    ("bitfit", {"hyperparameters": {"weight_decay": -1}}, "weight_decay"),
    ("bitfit", {"hyperparameters": {"checkpoint_every": 0}}, "checkpoint_every"),
    ("bitfit", {"hyperparameters": {"eval_every": 0}}, "eval_every"),
    ("bitfit", {"train_head": "maybe"}, "train_head"),
])
def test_impossible_settings_rejected(method, settings, loc):
    with pytest.raises(ValidationError) as info:
        get_strategy(method).settings_model.model_validate(settings)
    assert loc in {str(part) for error in info.value.errors() for part in error["loc"]}


def test_every_settings_field_has_help_text():
    for spec in list_strategies():
        for model in (spec.settings_model, HyperparameterSettings):
            for name, info in model.model_fields.items():
                assert info.description, f"{model.__name__}.{name} has no description"


def test_auto_hyperparameters_resolve():
    settings = get_strategy("lora").settings_model.model_validate({"hyperparameters": {"learning_rate_multiplier": 2}})
    rule = AutoRule(learning_rate=5e-4)
    hp = settings.hyperparameters.resolve(n_train=1000, rule=rule, seed=3)
    assert (hp.n_epochs, hp.batch_size, hp.learning_rate, hp.seed, hp.max_length) == (3, 20, 1e-3, 3, 128)
    assert settings.hyperparameters.resolve(n_train=2, rule=rule, seed=3).batch_size == 2
    assert settings.hyperparameters.resolve(n_train=100, rule=rule, seed=3).batch_size == 4
    assert settings.hyperparameters.resolve(n_train=10**6, rule=rule, seed=3).batch_size == 32
    explicit = HyperparameterSettings(n_epochs=2, batch_size=8, learning_rate=0.01).resolve(100, rule, 0)
    assert (explicit.n_epochs, explicit.batch_size, explicit.learning_rate) == (2, 8, 0.01)


def test_unknown_strategy_lists_known_ones():
    with pytest.raises(UnknownStrategyError) as info:
        get_strategy("telepathy")
    assert all(name in str(info.value) for name in ("lora", "supervised", "bitfit"))


def test_registry_specs_name_papers_and_load_entrypoints_lazily():
    names = [spec.name for spec in list_strategies()]
    assert {"supervised", "lora", "bitfit"} <= set(names)
    for spec in list_strategies():
        assert spec.paper and spec.auto.learning_rate > 0 and spec.task_kinds
        assert spec.settings_model.__doc__ and ":" in spec.entrypoint


@pytest.mark.parametrize("modules", [
    "app.training.registry, app.training.methods, app.training.data, app.training.config, app.training.artifacts",
])
def test_api_side_training_imports_stay_torch_free(modules):
    code = (f"import sys, {modules}; "
            "bad = [m for m in ('torch', 'transformers', 'peft', 'numpy') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
