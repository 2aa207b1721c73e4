"""Validation of data files and settings: pure Python, what the API runs before queueing."""
from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from app.training.data import DatasetError, validate_classification_file
from app.training.registry import UnknownStrategyError, get_strategy


@pytest.mark.parametrize("content, fragment", [
    (b"", "no examples"),
    (b'{"text": "a", "label": "x"}\n{"text": "b", "label": "x"}\n', "at least 2 label classes"),
    (b'{"text": "a", "label": "x"}\n{"label": "y"}\n', "line 2"),
    (b'{"text": "a", "label": "x"}\n{"text": "", "label": "y"}\n', "line 2"),
    (b'{"text": "a"}\n', 'line 1: needs a "label"'),
    (b'{"text": "a", "label": true}\n', "line 1"),
    (b'{"text": "a", "label": 1.5}\n', "line 1"),
    (b'{"text": "a", "label": "x", "text_pair": 3}\n', "text_pair"),
    (b'{"text": "a", "label": "x", "text_pair": "b"}\n{"text": "c", "label": "y"}\n', "mixes rows"),
    (b'{"text": "a", "label": "x"}\n{"text": "b", "label": 2}\n', "mix strings and integers"),
    (b'{"text": "a", "label": "x"}\n{oops\n', "line 2: not valid JSON"),
    (b'{"text": "a", "label": "x"}\n\xff\xfe\n', "line 2: not valid UTF-8"),
    (b'"just a string"\n', "line 1: expected a JSON object"),
])
def test_bad_classification_files(tmp_path, content, fragment):
    path = tmp_path / "data.jsonl"
    path.write_bytes(content)
    with pytest.raises(DatasetError) as info:
        validate_classification_file(path)
    assert fragment in str(info.value)


def test_good_file_summary(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_bytes(b'{"text": "a", "text_pair": "b", "label": "y"}\n\n{"text": "c", "text_pair": "d", "label": "x"}\n')
    summary = validate_classification_file(path)
    assert summary.n_examples == 2 and summary.labels == ["x", "y"] and summary.has_pair


@pytest.mark.parametrize("method, settings", [
    ("lora", {"r": 0}), ("lora", {"r": 1000}), ("lora", {"lora_dropout": 1.5}), ("lora", {"typo": 1}),
    ("supervised", {"hyperparameters": {"n_epochs": 0}}), ("supervised", {"hyperparameters": {"batch_size": 5000}}),
    ("supervised", {"hyperparameters": {"learning_rate": 2.0}}),
    ("supervised", {"hyperparameters": {"learning_rate": 1e-4, "learning_rate_multiplier": 2}}),
    ("bitfit", {"hyperparameters": {"max_length": 4}}), ("bitfit", {"train_head": "maybe"}),
])
def test_impossible_settings_rejected(method, settings):
    with pytest.raises(ValidationError):
        get_strategy(method).settings_model.model_validate(settings)


def test_auto_hyperparameters_resolve():
    settings = get_strategy("lora").settings_model.model_validate({"hyperparameters": {"learning_rate_multiplier": 2}})
    hp = settings.hyperparameters.resolve(n_train=1000, default_lr=5e-4, seed=3)
    assert (hp.n_epochs, hp.batch_size, hp.learning_rate, hp.seed) == (3, 20, 1e-3, 3)
    assert settings.hyperparameters.resolve(n_train=2, default_lr=5e-4, seed=3).batch_size == 2


def test_unknown_strategy_lists_known_ones():
    with pytest.raises(UnknownStrategyError) as info:
        get_strategy("telepathy")
    assert "lora" in str(info.value) and "supervised" in str(info.value)


def test_api_side_imports_stay_torch_free():
    code = ("import sys, app.main, app.training.registry; "
            "bad = [m for m in ('torch', 'transformers', 'peft') if m in sys.modules]; print(bad); assert not bad")
    subprocess.run([sys.executable, "-c", code], check=True)
