"""The one method parser: `{"type": t, t: {...}}` → a validated, typed `Method`.

The job API, nested methods (`adaptive.then`, later `multitask` and chains) and the worker reading a
stored job all go through `parse_method`; `resolve_method` turns every "auto" hyper-parameter of a
method and of the methods nested in it into concrete values once, at submission. The resolved
method's wire form (`method_wire`) is what the job stores and shows; parsing it again (with
`resolved=True`) gives the same method back.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Annotated, Any

from pydantic import PlainSerializer, PlainValidator, ValidationError, ValidationInfo, WithJsonSchema

from app.training.base_facts import BaseFacts, BaseProblem
from app.training.config import RESOLVED, AutoRule, Hyperparameters, MethodSettings, SubmissionFacts
from app.training.data import DatasetSummary
from app.training.registry import (StrategySpec, UnknownStrategyError, default_strategy, get_strategy,
                                   list_strategies, task_method_names)


class MethodError(ValueError):
    """A method spec that cannot be used; `param` is the dotted path of the offending field."""

    def __init__(self, message: str, param: str, code: str | None = None):
        super().__init__(message)
        self.message, self.param, self.code = message, param, code


@dataclass(frozen=True)
class Method:
    """A validated method: its spec, its typed settings and, once resolved, its hyper-parameters."""

    spec: StrategySpec
    settings: MethodSettings
    hyperparameters: Hyperparameters | None = None

    @property
    def type(self) -> str:
        return self.spec.name

    @property
    def auto(self) -> AutoRule:
        """What "auto" resolves by: the method's rule, or the one its settings ask for (stability.recipe)."""
        return self.settings.auto_rule(self.spec.auto)


def first_error(exc: ValidationError, prefix: str) -> tuple[str, str]:
    """(param, message) of a pydantic error's first problem, the param being the dotted path under
    `prefix` ("" when neither names a field); the message counts the other problems."""
    first = exc.errors()[0]
    loc = ".".join(str(part) for part in first["loc"])
    extra = f" ({len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
    return ".".join(p for p in (prefix, loc) if p), f"{first['msg']}{extra}"


def parse_method(raw: Any, *, param: str = "method", task_only: bool = False, resolved: bool = False) -> Method:
    """Validate `{"type": t, t: {...}}` (None: the default method). `task_only` refuses methods that
    do not train the labelled task (a nested method's place); `resolved` accepts a stored method."""
    if raw is None:
        raw = {"type": default_strategy().name}
    if not isinstance(raw, dict):
        raise MethodError(f"{param} must be an object such as {{\"type\": \"{default_strategy().name}\"}}.", param)
    kind = raw.get("type")
    if not isinstance(kind, str) or len(kind) > 64:
        raise MethodError(f"{param}.type must name a strategy, one of: {', '.join(_names(task_only))}.",
                          f"{param}.type")
    try:
        spec = get_strategy(kind)
    except UnknownStrategyError as exc:
        raise MethodError(str(exc), f"{param}.type", code="unknown_method") from None
    if task_only and not spec.trains_task:
        raise MethodError(f"{param}.type must name a task method, one of: {', '.join(_names(True))}; "
                          f"{kind!r} does not train the labelled task.", f"{param}.type")
    unknown = set(raw) - {"type", kind}
    if unknown:
        raise MethodError(f"Unknown key(s) in {param}: {sorted(unknown)}; settings go in {param}.{kind}.", param)
    try:
        settings = spec.settings_model.model_validate(raw.get(kind) or {}, context={RESOLVED: resolved})
    except ValidationError as exc:
        where, message = first_error(exc, f"{param}.{kind}")
        raise MethodError(f"Invalid {where}: {message}.", where) from None
    return Method(spec, settings)


def _names(task_only: bool) -> list[str]:
    return task_method_names() if task_only else [s.name for s in list_strategies()]


def resolve_method(method: Method, n_train: int | None, seed: int) -> Method:
    """Every "auto" replaced, in this method and the methods nested in its settings, for a training
    file of `n_train` examples (None: the method was resolved before; nothing is "auto")."""
    nested = {name: resolve_method(value, n_train, seed) for name, value in method.settings
              if isinstance(value, Method)}
    settings = method.settings.model_copy(update=nested) if nested else method.settings
    return replace(method, settings=settings,
                   hyperparameters=method.settings.hyperparameters.resolve(n_train, method.auto, seed))


def base_problems(method: Method, facts: BaseFacts, path: str = "method") -> list[tuple[str, str]]:
    """(param, message) for each setting of this method, or of a method nested in it (an adapted encoder
    keeps its base's shape), that the base model cannot take; see MethodSettings.check_base."""
    return _problems(method, lambda settings: settings.check_base(facts), path)


def data_problems(method: Method, data: DatasetSummary, path: str = "method") -> list[tuple[str, str]]:
    """(param, message) for each setting of this method, or of a method nested in it, that the training
    file cannot take (a task type the method does not train, see StrategySpec.task_kinds; then
    MethodSettings.check_data)."""
    return _task_type_problems(method, data, path) + _problems(method, lambda settings: settings.check_data(data), path)


def _task_type_problems(method: Method, data: DatasetSummary, path: str) -> list[tuple[str, str]]:
    """A task method (here or nested) that cannot train the file's task type, with the spec's reason."""
    where, spec = f"{path}.{method.type}", method.spec
    problems = []
    if spec.trains_task and data.task not in spec.task_kinds:
        able = ", ".join(s.name for s in list_strategies() if data.task in s.task_kinds)
        problems.append((f"{path}.type", f"the training file holds {data.task} rows, which {method.type} cannot "
                                         f"train ({spec.task_reason}); methods that can: {able}"))
    for name, value in method.settings:
        if isinstance(value, Method):
            problems += _task_type_problems(value, data, f"{where}.{name}")
    return problems


def submission_problems(method: Method, facts: SubmissionFacts, path: str = "method") -> list[tuple[str, str]]:
    """(param, message) for each setting of this method, or of a method nested in it, that the rest of the
    job (no validation file) or the service's limits rule out; see MethodSettings.check_submission."""
    return _problems(method, lambda settings: settings.check_submission(facts), path)


def _problems(method: Method, check: Callable[[MethodSettings], list[BaseProblem]],
              path: str) -> list[tuple[str, str]]:
    where = f"{path}.{method.type}"
    problems = [(f"{where}.{field}", message) for field, message in check(method.settings)]
    for name, value in method.settings:
        if isinstance(value, Method):
            problems += _problems(value, check, f"{where}.{name}")
    return problems


def wire_hyperparameters(method: Method) -> dict[str, Any]:
    """A resolved method's hyper-parameters as the job shows them (OpenAI's keys first; no seed)."""
    hp = asdict(method.hyperparameters)
    hp.pop("seed")
    multiplier = hp["learning_rate"] / method.auto.learning_rate
    return {"n_epochs": hp.pop("n_epochs"), "batch_size": hp.pop("batch_size"),
            "learning_rate": hp.pop("learning_rate"), "learning_rate_multiplier": multiplier, **hp}


_SHOWN = ("n_epochs", "batch_size", "learning_rate", "warmup_ratio", "lr_scheduler")


def describe_resolution(method: Method, path: str = "method") -> list[tuple[str, dict[str, Any]]]:
    """(message, data) per method in the tree: what each schedule value resolved to, which were
    "auto" and the rule they came from — the job's events say it, so nobody has to guess."""
    given = method.settings.hyperparameters
    values = wire_hyperparameters(method)
    auto = [k for k in _SHOWN if getattr(given, k) == "auto"
            and not (k == "learning_rate" and given.learning_rate_multiplier != "auto")]
    shown = ", ".join(f"{k}={values[k]:g}" if isinstance(values[k], float) else f"{k}={values[k]}" for k in _SHOWN)
    message = (f"{path} ({method.type}) hyper-parameters: {shown}; max_grad_norm={values['max_grad_norm']}, "
               f"select_best={values['select_best']}")
    if auto:
        message += f". From the {method.type} rule ({', '.join(auto)} were auto): {method.auto.source}"
    out = [(message, {"method": method.type, "path": path, "auto": auto, "hyperparameters": values})]
    for name, value in method.settings:
        if isinstance(value, Method):
            out += describe_resolution(value, f"{path}.{method.type}.{name}")
    return out


def method_wire(method: Method) -> dict[str, Any]:
    """`{"type": t, t: {...}}` (nested methods in this form too). Once resolved: every setting, defaults
    included, and every concrete hyper-parameter; before: only what was given."""
    resolved = method.hyperparameters is not None
    settings = method.settings.model_dump(mode="json", exclude_unset=not resolved, exclude={"hyperparameters"})
    for name, value in method.settings:
        if isinstance(value, Method):
            settings[name] = method_wire(value)
    if resolved:
        settings["hyperparameters"] = wire_hyperparameters(method)
    elif "hyperparameters" in method.settings.model_fields_set:
        settings["hyperparameters"] = method.settings.hyperparameters.model_dump(mode="json", exclude_unset=True)
    return {"type": method.type, method.type: settings}


def _nested_task_method(value: Any, info: ValidationInfo) -> Method:
    if isinstance(value, Method):
        return value
    resolved = bool(info.context and info.context.get(RESOLVED))
    try:
        return parse_method(value, param=info.field_name or "method", task_only=True, resolved=resolved)
    except MethodError as exc:  # pydantic adds the outer path; the message keeps the inner one
        raise ValueError(exc.message.removeprefix("Invalid ").rstrip(".")) from None


# A settings field holding another task method (e.g. adaptive's `then`), validated by parse_method.
TaskMethod = Annotated[Method, PlainValidator(_nested_task_method), PlainSerializer(method_wire),
                       WithJsonSchema({"type": "object", "description": '{"type": "<method>", "<method>": {...}}'})]
