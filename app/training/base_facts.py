"""What a base model is, read without torch: its config.json and its safetensors headers.

The API refuses method settings the chosen base cannot take (more layers than it has, modules it
lacks, a bottleneck of width 0, …) at submission, before a job is stored, and must not import torch
to do it; the strategies refuse them again at train time as a backstop. A safetensors file starts
with an 8-byte little-endian header length and a JSON header of tensor name → dtype and shape, which
is all this needs. Facts are cached per directory, keyed on the files' size and mtime.
"""
from __future__ import annotations

import json
import logging
import math
import re
import struct
from dataclasses import dataclass, replace
from functools import cached_property, lru_cache
from pathlib import Path

from app.training.adapted_base import weights_dir
from app.training.errors import TrainingError

log = logging.getLogger(__name__)

MAX_HEADER = 100 * 2**20  # safetensors' own limit on the JSON header
FLOAT_DTYPES = frozenset({"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"})  # parameters; ints are buffers
# config keys some architectures use instead of the usual names (transformers' attribute_map)
ALIASES = {"num_hidden_layers": ("n_layers", "num_layers", "n_layer"), "hidden_size": ("dim", "d_model", "n_embd"),
           "max_position_embeddings": ("n_positions",)}
# encoders whose position ids start after padding_idx (RoBERTa-style embeddings): pad_token_id + 1 positions unused
PADDED_POSITIONS = frozenset({"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "data2vec-text", "longformer",
                              "roberta-prelayernorm", "ibert", "luke", "xmod", "esm"})
FIXED_PADDING_IDX = {"mpnet": 1}
LAYER = re.compile(r"(?:^|\.)layers?\.(\d+)\.")
HEAD_MODULES = ("classifier", "pre_classifier", "score")  # a classifier's new head, always present


# (field below `method.<type>`, what to change): a setting the chosen base model cannot take
BaseProblem = tuple[str, str]


class BaseFactsError(ValueError):
    """The directory is not a model this reader understands (no config.json, a broken header)."""


@dataclass(frozen=True)
class BaseFacts:
    """Facts about one base model. `tensors`: its floating-point tensors by name, as the base model of
    a classifier holds them (a checkpoint's `bert.` prefix and pretraining heads dropped); None when
    the model has no safetensors weights, so checks that need them are skipped."""

    name: str  # the base model's id, for messages
    model_type: str
    depth: int | None
    hidden_size: int | None
    max_position_embeddings: int | None
    pad_token_id: int | None
    tokenizer_max_length: int | None
    tensors: dict[str, tuple[int, ...]] | None

    @property
    def usable_positions(self) -> int | None:
        """Positions a token sequence can use; RoBERTa-style embeddings count from padding_idx + 1."""
        if self.max_position_embeddings is None:
            return None
        padding_idx = FIXED_PADDING_IDX.get(self.model_type)
        if padding_idx is None and self.model_type in PADDED_POSITIONS and self.pad_token_id is not None:
            padding_idx = self.pad_token_id
        return self.max_position_embeddings - (padding_idx + 1 if padding_idx is not None else 0)

    @cached_property
    def modules(self) -> frozenset[str]:
        """Every module path that holds a tensor, and its ancestors ("encoder", "encoder.layer.0", …)."""
        parts = (name.split(".")[:-1] for name in self.tensors or {})
        return frozenset(".".join(p[:i]) for p in parts for i in range(1, len(p) + 1))

    @cached_property
    def linear_modules(self) -> tuple[str, ...]:
        """Paths of the linear layers: modules with a 2-D weight that are not embedding tables."""
        return tuple(sorted(name.rsplit(".", 1)[0] for name, shape in (self.tensors or {}).items()
                            if name.endswith(".weight") and len(shape) == 2 and not is_embedding(name)))

    def linear_paths(self, exclude: set[str] = frozenset()) -> list[str]:
        """Paths of the linear layers, but for a layer whose path ends with a name in `exclude` (trained
        whole instead)."""
        return [path for path in self.linear_modules if not any(path.endswith(x) for x in exclude)]

    def linear_names(self, exclude: set[str] = frozenset()) -> list[str]:
        """Short names of the linear layers outside `exclude`, what peft's target_modules match on."""
        return sorted({path.rsplit(".", 1)[-1] for path in self.linear_paths(exclude)})

    def has_module(self, name: str) -> bool:
        """Whether some module's path ends with `name` (how modules_to_save is matched), the head included."""
        return any(path.endswith(name) for path in (*self.modules, *HEAD_MODULES))

    def pretrained_tensors(self, drop_top_layers: int = 0, reinit_top_layers: int = 0) -> dict[str, tuple[int, ...]]:
        """The tensors still pretrained once the top layers are dropped, then the pooler and the top layers
        left re-initialised (app.training.structure); those re-initialised start random, like the head."""
        cutoff = None if self.depth is None else self.depth - drop_top_layers - reinit_top_layers
        return {name: shape for name, shape in (self.tensors or {}).items()
                if not (cutoff is not None and (layer := layer_index(name)) is not None and layer >= cutoff)
                and not (reinit_top_layers and "pooler" in name.split(".")[:-1])}


def is_embedding(name: str) -> bool:
    """A tensor of an embedding table (word, position, token type): a module named `*embeddings`."""
    module = name.rsplit(".", 1)[0].rsplit(".", 1)[-1]
    return module.endswith(("embeddings", "embedding"))


def layer_index(name: str) -> int | None:
    """Which encoder layer a tensor belongs to (`encoder.layer.3.…` → 3); None outside the layers."""
    match = LAYER.search(name)
    return int(match.group(1)) if match else None


def numel(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def base_facts(path: Path, name: str) -> BaseFacts | None:
    """The facts of the model directory `path` (registered as `name`), or None when they cannot be read:
    the submission checks are then skipped and the strategy's train-time checks still apply."""
    try:
        return replace(_cached(str(path), _stamp(path)), name=name)
    except (OSError, ValueError, KeyError, TypeError, TrainingError) as exc:  # BaseFactsError, a malformed file, or
        # an adapted base whose root is gone (BaseModelMissing: the job says so when it runs)
        log.warning("cannot read the facts of base model %s at %s: %s", name, path, exc)
        return None


def _stamp(path: Path) -> tuple:
    """Size and mtime of the files read: a re-registered directory is read again."""
    files = [path / "config.json", path / "tokenizer_config.json", *_weight_files(path)]
    return tuple((f.name, s.st_size, s.st_mtime_ns) for f in files if f.is_file() for s in [f.stat()])


@lru_cache(maxsize=64)
def _cached(path: str, stamp: tuple) -> BaseFacts:
    return read_base_facts(Path(path))


def read_base_facts(path: Path, name: str = "") -> BaseFacts:
    """Read config.json, tokenizer_config.json (if any) and every safetensors header of `path`."""
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise BaseFactsError(f"no readable config.json: {exc}") from exc
    tokenizer = path / "tokenizer_config.json"
    tokenizer_max = _int(json.loads(tokenizer.read_text()).get("model_max_length")) if tokenizer.is_file() else None
    files = _weight_files(path)
    tensors = _base_tensors({k: v for f in files for k, v in read_header(f).items()}) if files else None
    return BaseFacts(name=name, model_type=str(config.get("model_type", "unknown")),
                     depth=_config_int(config, "num_hidden_layers"), hidden_size=_config_int(config, "hidden_size"),
                     max_position_embeddings=_config_int(config, "max_position_embeddings"),
                     pad_token_id=_int(config.get("pad_token_id")), tokenizer_max_length=tokenizer_max, tensors=tensors)


def _weight_files(path: Path) -> list[Path]:
    """model.safetensors, or the shards its index names (an adapted directory's: its base's)."""
    path = weights_dir(path)
    index = path / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (ValueError, KeyError, AttributeError) as exc:
            raise BaseFactsError(f"unreadable {index.name}: {exc}") from exc
        return [path / shard for shard in shards]
    single = path / "model.safetensors"
    return [single] if single.is_file() else []


def read_header(file: Path) -> dict[str, tuple[int, ...]]:
    """Floating-point tensor name → shape from a safetensors header; integer buffers are left out."""
    with file.open("rb") as handle:
        raw = handle.read(8)
        if len(raw) != 8:
            raise BaseFactsError(f"{file.name} is too short to be safetensors")
        (length,) = struct.unpack("<Q", raw)
        if length > MAX_HEADER:
            raise BaseFactsError(f"{file.name} declares a {length}-byte header, over safetensors' limit")
        try:
            header = json.loads(handle.read(length))
        except ValueError as exc:
            raise BaseFactsError(f"{file.name} has no JSON header: {exc}") from exc
    if not isinstance(header, dict):
        raise BaseFactsError(f"{file.name}'s header is not an object")
    return {name: tuple(entry["shape"]) for name, entry in header.items()
            if name != "__metadata__" and isinstance(entry, dict) and entry.get("dtype") in FLOAT_DTYPES}


def _base_tensors(tensors: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """The base model's tensors, its prefix stripped: a pretraining checkpoint (`bert.embeddings…`,
    `cls.predictions…`) keeps what lies under the prefix of its embeddings, a bare encoder everything."""
    prefixes = {name.split("embeddings.")[0] for name in tensors if "embeddings." in name}
    prefix = min(prefixes, key=len) if prefixes else ""
    if prefix and not prefix.endswith("."):
        prefix = ""
    return {name.removeprefix(prefix): shape for name, shape in tensors.items() if name.startswith(prefix)}


def _config_int(config: dict, key: str) -> int | None:
    for candidate in (key, *ALIASES.get(key, ())):
        if (value := _int(config.get(candidate))) is not None:
            return value
    return None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def target_problems(facts: BaseFacts, targets: list[str], exclude: set[str] = frozenset()) -> list[BaseProblem]:
    """`target_modules` naming anything but a linear layer of the base, as peft-wrapping strategies
    (app.training.peft_adapter.checked_targets) would refuse them at train time."""
    if facts.tensors is None:
        return []
    missing = unmatched_targets(targets, facts.linear_paths(exclude))
    if not missing:
        return []
    return [("target_modules", f"{missing} are not linear layers of {facts.name}; "
                               f"{target_choices(facts.linear_names(exclude))}")]


def matches_target(path: str, target: str) -> bool:
    """peft's rule for one target_modules string: the module's path is the target or ends with "." + it, so
    a short name ("dense") or a path suffix ("intermediate.dense") both work."""
    return path == target or path.endswith(f".{target}")


def unmatched_targets(targets: list[str], paths: list[str]) -> list[str]:
    """The targets that match none of the linear-layer `paths`."""
    return [t for t in targets if not any(matches_target(p, t) for p in paths)]


def target_choices(names: list[str]) -> str:
    """What the message of a refused target_modules offers instead."""
    return f"choose from {names}, or a path suffix ending in one of them (e.g. 'intermediate.dense')"
