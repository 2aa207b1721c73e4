"""Checks that a JSON object the API returned is exactly one of the `openai` package's types.

The official client parses leniently (unknown fields kept, wrong types tolerated), so it hides
mismatches; here every field the type declares must be present, every other key must be one of our
documented extensions (README "OpenAI compatibility"), and the value must parse in pydantic's strict
mode and dump back unchanged.
"""
from __future__ import annotations

import json
import types
from collections.abc import Iterable
from fnmatch import fnmatch
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside `X`, `Optional[X]` or `List[X]`, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, types.UnionType, list):
        for arg in get_args(annotation):
            if (found := _model_in(arg)) is not None:
                return found
    return None


def _openai_part(model: type[BaseModel], obj: dict[str, Any], path: str, extensions: tuple[str, ...],
                 every_field: bool) -> dict[str, Any]:
    """`obj` without its documented extensions; a missing field or an undocumented key fails."""
    fields = model.model_fields
    if every_field:  # OpenAI's objects carry every key of their type, null or not
        missing = sorted(set(fields) - set(obj))
        assert not missing, f"{path or model.__name__} lacks {missing}"
    part: dict[str, Any] = {}
    for key, value in obj.items():
        where = f"{path}{key}"
        if key not in fields:
            assert any(fnmatch(where, pattern) for pattern in extensions), \
                f"{where} is not a field of OpenAI's {model.__name__} nor a documented extension"
            continue
        nested = _model_in(fields[key].annotation)
        if nested is not None and isinstance(value, dict):
            value = _openai_part(nested, value, f"{where}.", extensions, False)
        elif nested is not None and isinstance(value, list):
            value = [_openai_part(nested, v, f"{where}.", extensions, False) if isinstance(v, dict) else v
                     for v in value]
        part[key] = value
    return part


def assert_openai(model: type[BaseModel], obj: dict[str, Any], extensions: Iterable[str] = ()) -> None:
    """`obj` is exactly an OpenAI `model`, plus keys matching `extensions` (dotted paths, `*` globs)."""
    part = _openai_part(model, obj, "", tuple(extensions), True)
    parsed = model.model_validate_json(json.dumps(part), strict=True)
    assert parsed.model_dump(mode="json", exclude_unset=True) == part, (model.__name__, part)
