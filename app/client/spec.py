"""A job's request body from a spec file (JSON or YAML) and command-line flags, flags winning.

YAML is read with PyYAML, which every install has (transformers, accelerate and huggingface_hub
require it); should it be missing, a YAML spec is refused with a line saying to use JSON.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from app.client.errors import ClientError


def load_spec(path: Path) -> dict[str, Any]:
    """The body in a .json, .yaml or .yml file (any other name: JSON, then YAML), as a dict."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ClientError(f"cannot read spec {path}: {exc.strerror or exc}") from exc
    if path.suffix.lower() not in (".yaml", ".yml"):
        try:
            return _object(json.loads(text), path)
        except json.JSONDecodeError as exc:
            if path.suffix.lower() == ".json":
                raise ClientError(f"spec {path} is not valid JSON: {exc.msg} at line {exc.lineno}") from exc
    try:
        import yaml
    except ImportError as exc:
        raise ClientError(f"spec {path}: YAML needs PyYAML (pip install pyyaml); write the spec as JSON") from exc
    try:
        return _object(yaml.safe_load(text), path)
    except yaml.YAMLError as exc:
        raise ClientError(f"spec {path} is not valid YAML or JSON: {' '.join(str(exc).split())}") from exc


def _object(value: Any, path: Path) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ClientError(f"spec {path} must hold one object (the job's request body), not a {type(value).__name__}")
    return value


def parse_pairs(pairs: list[str], option: str, raw: bool = False) -> dict[str, Any]:
    """`KEY=VALUE` flags as a dict; unless `raw` (strings only, e.g. metadata), a VALUE that reads as JSON
    (8, 0.1, true, null, [..]) is that value, anything else the string itself ("auto", "cosine")."""
    parsed: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ClientError(f"{option} takes KEY=VALUE, got {pair!r}")
        try:
            parsed[key.strip()] = value if raw else json.loads(value)
        except json.JSONDecodeError:
            parsed[key.strip()] = value
    return parsed


def set_dotted(target: dict[str, Any], dotted: str, value: Any) -> None:
    """`target["a"]["b"] = value` for "a.b", making the dicts on the way."""
    *parents, leaf = dotted.split(".")
    for name in parents:
        target = target.setdefault(name, {})
        if not isinstance(target, dict):
            raise ClientError(f"cannot set {dotted!r}: {name!r} is not an object")
    target[leaf] = value


def build_body(spec: dict[str, Any], *, method: str | None = None, settings: dict[str, Any] | None = None,
               hyperparameters: dict[str, Any] | None = None, metadata: dict[str, Any] | None = None,
               **fields: Any) -> dict[str, Any]:
    """The spec with the flags applied: plain `fields` (model, training_file, seed, …) replace the spec's;
    `method` names the type (keeping the spec's settings when it is the same type); `settings` (dotted
    keys) go into `method.<type>`; `hyperparameters` into the method's, or top level without a method."""
    body = copy.deepcopy(spec)
    body.update({k: v for k, v in fields.items() if v is not None})
    if method and (body.get("method") or {}).get("type") != method:
        body["method"] = {"type": method, method: {}}
    if settings and not body.get("method"):
        body["method"] = {"type": "supervised", "supervised": {}}
    if body.get("method"):
        own = body["method"].setdefault(body["method"].get("type", "supervised"), {})
        for key, value in (settings or {}).items():
            set_dotted(own, key, value)
        if hyperparameters:
            own.setdefault("hyperparameters", {}).update(hyperparameters)
    elif hyperparameters:
        body.setdefault("hyperparameters", {}).update(hyperparameters)
    if metadata:
        body.setdefault("metadata", {}).update(metadata)
    for required, flag in (("model", "--model"), ("training_file", "--training-file")):
        if not body.get(required):
            raise ClientError(f"a job needs {required}: pass {flag} or give it in --spec")
    return body
