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
    print_table(["id", "kind", "owned by", "created"], [[m.id, m.kind or "", m.owned_by, when(m.created)]
                                                        for m in models])


def predict(model: Annotated[str, typer.Argument(help="A fine-tuned model name or its job id.")],
            texts: Annotated[list[str] | None, typer.Argument(help="Texts to classify.")] = None,
            file: Annotated[Path | None, typer.Option(
                "--file", help='JSONL of {"text": ...} rows (a validation file will do) to classify too.')] = None,
            messages: Annotated[Path | None, typer.Option(
                "--messages", help='JSONL of chat rows ({"messages": [...]}; a chat validation file will do: each '
                "conversation up to its last assistant reply) for a decoder trained on chat rows.")] = None,
            max_new_tokens: Annotated[int | None, typer.Option(
                help="text_to_text models: tokens to generate at most (default: the job's).")] = None,
            as_json: JsonOption = False, url: UrlOption = None, api_key: KeyOption = None) -> None:
    """Classify texts with a fine-tuned model: label and its probability per text (text_to_text models: the
    generated text, and the label it names)."""
    from app.client.errors import ClientError

    inputs: list = list(texts or [])
    if file is not None:
        inputs += read_inputs(file)
    if messages is not None:
        inputs += read_conversations(messages)
    if not inputs:
        raise ClientError("nothing to classify: give TEXT arguments, --file or --messages")
    with connect(url, api_key) as client:
        result = client.predict(model, inputs, max_new_tokens=max_new_tokens)
    if as_json:
        return print_json(result)
    shown = [i if isinstance(i, str) else f"{i['text']} | {i['text_pair']}" if "text" in i
             else i["messages"][-1]["content"] for i in inputs]
    print_table(["prediction", "probability", "text"], [
        [*answer(p), shown[p.index] if p.index < len(shown) else ""] for p in result.data])


def answer(p) -> tuple[str, str]:
    """(prediction, probability) columns for a prediction of any task type: a label, a regression value,
    a multi-label set or NER entities (the probability column is empty where the type has none)."""
    extra = p.model_extra or {}
    if "text" in extra:  # text_to_text: the generation, and the label it names (classification-trained jobs)
        named = "" if "matched" not in extra else f" -> {p.label}" if extra["matched"] else " (no label)"
        return f"{extra['text']}{named}", ""
    if "value" in extra:
        return f"{extra['value']:.4g}", ""
    if "entities" in extra:
        return "; ".join(f"{e['text']} ({e['entity']})" for e in extra["entities"]) or "(no entities)", ""
    if "labels" in extra:
        return ", ".join(extra["labels"]) or "(none)", ", ".join(f"{p.probabilities.get(x, 0.0):.3f}"
                                                                   for x in extra["labels"])
    return str(p.label), f"{p.probabilities.get(str(p.label), 0.0):.3f}"


def read_inputs(path: Path) -> list[str | dict[str, str]]:
    """The "text" (and "text_pair", when a row has one) of every row of a JSONL file; other fields, a
    label included, are ignored, so a validation file works as it is."""
    from app.client.errors import ClientError
    from app.training.data import DatasetError, iter_jsonl

    inputs: list[str | dict[str, str]] = []
    try:
        for number, row in iter_jsonl(path):
            text, pair = row.get("text"), row.get("text_pair")
            if not isinstance(text, str) or not isinstance(pair, str | None):
                raise DatasetError('needs a "text" string (and "text_pair", if any, a string)', number)
            inputs.append({"text": text, "text_pair": pair} if pair is not None else text)
    except (OSError, DatasetError) as exc:
        raise ClientError(f"{path}: {exc}") from exc
    return inputs


def read_conversations(path: Path) -> list[dict[str, list[dict[str, str]]]]:
    """{"messages"} per chat row of a JSONL file, without the assistant turns that end it (the replies to
    generate) and the training-only "weight"; the service checks roles and contents."""
    from app.client.errors import ClientError
    from app.training.data import DatasetError, iter_jsonl

    conversations = []
    try:
        for number, row in iter_jsonl(path):
            turns = row.get("messages")
            if not isinstance(turns, list) or not all(isinstance(m, dict) for m in turns):
                raise DatasetError('needs "messages": an array of {"role", "content"} objects', number)
            turns = [{k: v for k, v in m.items() if k != "weight"} for m in turns]
            while turns and turns[-1].get("role") == "assistant":
                turns.pop()
            if not turns:
                raise DatasetError("has no message before its assistant reply; give the user's turn", number)
            conversations.append({"messages": turns})
    except (OSError, DatasetError) as exc:
        raise ClientError(f"{path}: {exc}") from exc
    return conversations
