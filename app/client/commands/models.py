"""`tuneforge models list` (beside the operator's `models add`) and `tuneforge predict`."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from app.client.commands.common import JsonOption, KeyOption, UrlOption, connect, print_json, print_table, when


def list_models(as_json: JsonOption = False, url: UrlOption = None, api_key: KeyOption = None) -> None:
    """The base models this tenant may train on and its own fine-tuned models."""
    with connect(url, api_key) as client:
        models = client.list_models()
    if as_json:
        return print_json(models)
    print_table(["id", "owned by", "created"], [[m.id, m.owned_by, when(m.created)] for m in models])


def predict(model: Annotated[str, typer.Argument(help="A fine-tuned model name or its job id.")],
            texts: Annotated[list[str] | None, typer.Argument(help="Texts to classify.")] = None,
            file: Annotated[Path | None, typer.Option("--file", help='JSONL of {"text": ...} rows to classify too.')]
            = None,
            as_json: JsonOption = False, url: UrlOption = None, api_key: KeyOption = None) -> None:
    """Classify texts with a fine-tuned model: label and its probability per text."""
    from app.client.errors import ClientError
    from app.training.data import DatasetError, iter_texts

    inputs = list(texts or [])
    if file is not None:
        try:
            inputs += list(iter_texts(file))
        except (OSError, DatasetError) as exc:
            raise ClientError(f"{file}: {exc}") from exc
    if not inputs:
        raise ClientError("nothing to classify: give TEXT arguments or --file")
    with connect(url, api_key) as client:
        result = client.predict(model, inputs)
    if as_json:
        return print_json(result)
    probability = {p.index: p.probabilities.get(str(p.label)) for p in result.data}
    print_table(["label", "probability", "text"],
                [[p.label, f"{probability[p.index]:.3f}" if probability[p.index] is not None else "",
                  inputs[p.index] if p.index < len(inputs) else ""] for p in result.data])
