"""Models in memory for predictions (torch): shared bases, LoRA pools, deltas and whole models.

Imported by the inference thread on the first prediction, never by `import app.main`. Everything
here runs on that one thread (app/predictions/batcher.py), so nothing here locks. The package
docstring (app/predictions/__init__.py) explains the design.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import count
from typing import Any, Protocol

import torch
from peft import PeftModel
from peft.utils import ModulesToSaveWrapper
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from app.predictions.batcher import Input, Work
from app.predictions.cache import LRUCache
from app.predictions.served import ServedModel
from app.predictions.stacked_lora import StackedLora
from app.predictions.text_engines import TextPool, load_whole
from app.training.adapted_base import load_pretrained
from app.training.artifacts import check_base, load_classifier, read_manifest, verify_files
from app.training.base import BaseModelRef
from app.training.delta import load_delta
from app.training.structure import restore_structure
from app.training.tasks import get_task
from app.training.tasks.predict import predict_rows

MIXABLE = (torch.nn.Linear, torch.nn.Embedding)  # modules peft's mixed batches can run per row


def encode(tokenizer: Any, inputs: list[Input], max_length: int | None) -> list[dict[str, list[int]]]:
    """Token ids per input, unpadded, truncated where the job truncated (`predict` does the same)."""
    limit = {"max_length": max_length} if max_length else {}
    features: list[dict[str, list[int]]] = [{} for _ in inputs]
    for paired in (False, True):  # one tokenizer call per kind: texts alone, texts with a pair
        rows = [i for i, (_, pair) in enumerate(inputs) if (pair is not None) == paired]
        if rows:
            encoded = tokenizer([inputs[i][0] for i in rows], [inputs[i][1] for i in rows] if paired else None,
                                truncation=True, **limit)
            for j, i in enumerate(rows):
                features[i] = {key: encoded[key][j] for key in encoded}
    return features


class Runner(Protocol):
    def logits(self, batch: dict[str, torch.Tensor], names: list[str]) -> torch.Tensor:
        """Logits of a padded batch; `names` says which loaded model each row is for."""


class SharedBase:
    """One base checkpoint's weights, loaded once: every instance built here points at the same tensors."""

    def __init__(self, ref: BaseModelRef):
        check_base({"base_model": {"id": ref.id, "sha256": ref.sha256}}, ref.path)
        self.ref = ref
        self.tokenizer = AutoTokenizer.from_pretrained(ref.path)
        self._weights: dict[str, torch.Tensor] = {}
        self._plain: dict[tuple[int, int, str], torch.nn.Module] = {}

    def instance(self, labels: int, drop: int, pooling: str) -> torch.nn.Module:
        """A new classifier with `labels` outputs, the top `drop` layers removed and the head reading
        `pooling` (the trained shape), over the shared tensors; only its fresh head is its own."""
        model, info = load_pretrained(
            AutoModelForSequenceClassification, self.ref.path, num_labels=labels, output_loading_info=True)
        state = model.state_dict()
        if not self._weights:
            fresh = set(info["missing_keys"])
            self._weights = {name: tensor for name, tensor in state.items() if name not in fresh}
        else:  # drop the copy just read; point at the shared tensors instead
            model.load_state_dict({name: tensor for name, tensor in self._weights.items()
                                   if name in state and state[name].shape == tensor.shape}, strict=False, assign=True)
        return restore_structure(model, {"drop_top_layers": drop, "pooling": pooling}).eval()

    def plain(self, labels: int, drop: int, pooling: str) -> torch.nn.Module:
        """The unwrapped instance of this shape that dense deltas stand in on (kept)."""
        if (labels, drop, pooling) not in self._plain:
            self._plain[labels, drop, pooling] = self.instance(labels, drop, pooling)
        return self._plain[labels, drop, pooling]


class LoraPool:
    """The LoRA adapters of one base, head shape and set of whole-trained modules in one peft model.

    Rows for any of its adapters run as one forward pass (`adapter_names=`, peft's mixed-adapter batches)
    when every module the adapters ship whole is one peft can split per row; otherwise each adapter's
    rows run after `set_adapter` (e.g. re-initialised encoder layers trained whole). The active adapter
    stays one of the loaded ones: peft's whole-trained modules pass rows through to the base otherwise."""

    def __init__(self, model: torch.nn.Module):
        self._model = model
        self.peft: PeftModel | None = None
        self.mixable = True
        self._stacked = StackedLora()

    def add(self, name: str, adapter_dir) -> None:
        if self.peft is None:
            self.peft = PeftModel.from_pretrained(self._model, adapter_dir, adapter_name=name).eval()
        else:
            self.peft.load_adapter(adapter_dir, adapter_name=name)
        self._changed()

    def _changed(self) -> None:
        """Mixable when every whole-trained module can be split per row and no adapter is a LoRA variant
        (peft refuses `adapter_names` with DoRA)."""
        self._stacked.invalidate()
        modules = list(self.peft.modules()) if self.peft is not None else []
        self.mixable = all(isinstance(m.original_module, MIXABLE) for m in modules
                           if isinstance(m, ModulesToSaveWrapper)) \
            and not any(getattr(m, "lora_variant", None) for m in modules)

    def remove(self, name: str) -> bool:
        """Unload one adapter; True when it was the last (peft loads none into an emptied model: drop the pool)."""
        names = list(self.peft.peft_config)
        if names == [name]:
            self.peft = None
            self._changed()
            return True
        if self.peft.active_adapter == name:
            self._activate(next(n for n in names if n != name))
        self.peft.delete_adapter(name)
        self._changed()
        return False

    def _activate(self, name: str) -> None:
        if self.peft.active_adapter != name:
            self.peft.set_adapter(name)

    def logits(self, batch: dict[str, torch.Tensor], names: list[str]) -> torch.Tensor:
        """Mixable: one pass, whichever adapters the rows name (no switch at all, even for one adapter), the
        LoRA layers gathering each row's matrices from stacks (stacked_lora.py) rather than looping over
        adapters. Otherwise one pass per adapter after `set_adapter`, whose cost grows with the adapters loaded."""
        if self.mixable:
            with self._stacked.rows(self.peft, list(self.peft.peft_config), names):
                return self.peft(**batch, adapter_names=names).logits
        parts = []
        for adapter in dict.fromkeys(names):
            rows = torch.tensor([i for i, n in enumerate(names) if n == adapter])
            self._activate(adapter)
            parts.append((rows, self.peft(**{k: v[rows] for k, v in batch.items()}).logits))
        out = torch.empty(len(names), parts[0][1].shape[-1], dtype=parts[0][1].dtype)
        for rows, logits in parts:
            out[rows] = logits
        return out


@dataclass
class DeltaModel:
    """A dense delta (BitFit, partial) over the shared base: its tensors stand in for the base's during the
    forward pass (`torch.func.functional_call`), so the base itself never changes."""

    model: torch.nn.Module
    tensors: dict[str, torch.Tensor]

    def logits(self, batch: dict[str, torch.Tensor], names: list[str]) -> torch.Tensor:
        return torch.func.functional_call(self.model, self.tensors, args=(), kwargs=batch).logits


@dataclass
class WholeModel:
    model: torch.nn.Module

    def logits(self, batch: dict[str, torch.Tensor], names: list[str]) -> torch.Tensor:
        return self.model(**batch).logits


@dataclass
class Loaded:
    """A served model ready to run: the runner it joins (its forward passes), its name there, its tokenizer."""

    runner: Runner
    name: str
    tokenizer: Any


class Engines:
    """Every model the process has loaded, behind two LRU caches, and the forward passes over them."""

    def __init__(self, max_adapters: int, max_models: int, batch_rows: int):
        self.bases: dict[tuple[str, str], SharedBase] = {}
        self.pools: dict[tuple[Any, ...], LoraPool] = {}
        self.text_pools: dict[tuple[str, str], TextPool] = {}  # generating bases, shared by their LoRA adapters
        self.adapters: LRUCache[str, Loaded] = LRUCache(max_adapters, self._unload)
        self.models: LRUCache[str, Loaded] = LRUCache(max_models)
        self.batch_rows = batch_rows
        self._names = count()

    def run(self, works: list[Work]) -> None:
        works = [work for work in works if not self._answered_alone(work)]
        for wave in self._waves(works):
            groups: dict[int, list[tuple[Work, Loaded]]] = {}
            for work in wave:
                try:
                    loaded = self.load(work.served)
                except Exception as exc:  # noqa: BLE001 - this request fails, the others go on
                    work.future.set_exception(exc)
                    continue
                groups.setdefault(id(loaded.runner), []).append((work, loaded))
            for members in groups.values():
                try:
                    self._forward(members)
                except Exception as exc:  # noqa: BLE001
                    for work, _ in members:
                        work.future.set_exception(exc)

    def _answered_alone(self, work: Work) -> bool:
        """Task types other than single-label classification (a number, a label set, tags per word) are
        answered here, per request, with the task's own outputs (app.training.tasks.predict)."""
        if work.served.task == "sequence_classification":
            return False
        try:
            loaded = self.load(work.served)
            if work.served.kind == "text":  # generation: the text, and the label it names
                work.future.set_result(loaded.runner.generate(
                    loaded.name, loaded.tokenizer, work.served, [text for text, _ in work.inputs],
                    work.served.max_new_tokens, self.batch_rows))
                return True
            examples = [{"text": text, "text_pair": pair} for text, pair in work.inputs]
            work.future.set_result(predict_rows(loaded.runner.model, loaded.tokenizer, examples,
                                                list(work.served.labels),
                                                get_task(work.served.task, work.served.threshold), self.batch_rows))
        except Exception as exc:  # noqa: BLE001 - this request fails, the others go on
            work.future.set_exception(exc)
        return True

    def _cache(self, served: ServedModel) -> LRUCache[str, Loaded]:
        whole = served.kind == "whole" or (served.kind == "text" and served.base is None)
        return self.models if whole else self.adapters

    def _waves(self, works: list[Work]) -> Iterator[list[Work]]:
        """`works` in order, cut where a wave would need more distinct models than a cache holds: loading
        one must never evict another that the same forward passes need."""
        wave: list[Work] = []
        seen: dict[int, set[str]] = {id(self.adapters): set(), id(self.models): set()}
        for work in works:
            cache = self._cache(work.served)
            keys = seen[id(cache)]
            if work.served.key not in keys and len(keys) == cache.capacity:
                yield wave
                wave, seen = [], {name: set() for name in seen}
                keys = seen[id(cache)]
            keys.add(work.served.key)
            wave.append(work)
        if wave:
            yield wave

    def _forward(self, members: list[tuple[Work, Loaded]]) -> None:
        """Every member's inputs through their shared runner, `batch_rows` rows per pass."""
        features: list[dict[str, list[int]]] = []
        names: list[str] = []
        spans: list[tuple[int, int]] = []
        for work, loaded in members:
            encoded = encode(loaded.tokenizer, work.inputs, work.served.max_length)
            spans.append((len(features), len(features) + len(encoded)))
            features += encoded
            names += [loaded.name] * len(encoded)
        runner, tokenizer = members[0][1].runner, members[0][1].tokenizer
        logits = []
        with torch.no_grad():
            for start in range(0, len(features), self.batch_rows):
                batch = tokenizer.pad(features[start:start + self.batch_rows], return_tensors="pt")
                logits.append(runner.logits(dict(batch), names[start:start + self.batch_rows]).float())
        rows = torch.cat(logits).tolist()
        for (work, _), (first, end) in zip(members, spans, strict=True):
            work.future.set_result(rows[first:end])

    def load(self, served: ServedModel) -> Loaded:
        cache = self._cache(served)
        loaded = cache.get(served.key)
        if loaded is None:
            loaded = self._load(served)
            cache.put(served.key, loaded)
        return loaded

    def _load(self, served: ServedModel) -> Loaded:
        if served.kind == "whole":
            model, tokenizer, _ = load_classifier(served.artifact_dir, served.base.path if served.base else None)
            return Loaded(WholeModel(model), served.key, tokenizer)
        if served.kind == "text" and served.base is None:
            runner, tokenizer = load_whole(served)
            return Loaded(runner, served.key, tokenizer)
        verify_files(served.artifact_dir, read_manifest(served.artifact_dir))
        if served.kind == "text":
            key = (str(served.base.path), served.base.sha256)
            text_pool = self.text_pools.get(key) or TextPool(served.base, served.model_kind)
            name = f"adapter{next(self._names)}"
            text_pool.add(name, served.artifact_dir / "adapter")
            self.text_pools[key] = text_pool
            return Loaded(text_pool, name, text_pool.tokenizer)
        base = self._base(served.base)
        if served.kind == "delta":
            model = base.plain(len(served.labels), served.drop_top_layers, served.pooling)
            return Loaded(DeltaModel(model, load_delta(served.artifact_dir, model)), served.key, base.tokenizer)
        shape = (base.ref.path, base.ref.sha256, len(served.labels), served.drop_top_layers, served.pooling,
                 served.modules_to_save)
        pool = self.pools.get(shape) or LoraPool(base.instance(len(served.labels), served.drop_top_layers,
                                                               served.pooling))
        name = f"adapter{next(self._names)}"  # peft names become module keys: no dots or slashes
        pool.add(name, served.artifact_dir / "adapter")
        self.pools[shape] = pool  # only once it holds an adapter
        return Loaded(pool, name, base.tokenizer)

    def _base(self, ref: BaseModelRef) -> SharedBase:
        key = (str(ref.path), ref.sha256)
        if key not in self.bases:
            self.bases[key] = SharedBase(ref)
        return self.bases[key]

    def _unload(self, key: str, loaded: Loaded) -> None:
        if isinstance(loaded.runner, TextPool) and loaded.runner.remove(loaded.name):
            self.text_pools = {k: pool for k, pool in self.text_pools.items() if pool is not loaded.runner}
        if isinstance(loaded.runner, LoraPool) and loaded.runner.remove(loaded.name):
            self.pools = {shape: pool for shape, pool in self.pools.items() if pool is not loaded.runner}
