"""The OpenAPI request body of POST /v1/fine_tuning/jobs, as the service parses it: CreateJobRequest
with `method` the union of the registered methods, `{"type": t, t: <t's settings>}`.

The endpoint reads the body itself (every malformed body a 400 in OpenAI's shape), so FastAPI cannot
derive this; it is built from the registry, whose discovery imports only each method's config (no torch).
"""
from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, create_model

from app.jobs.schemas import CreateJobRequest
from app.training.registry import StrategySpec, default_strategy, list_strategies

BODY_NAME = "CreateFineTuningJobRequest"


def _method_model(spec: StrategySpec) -> type[BaseModel]:
    """`{"type": "<name>", "<name>": {settings}}` for one registered method."""
    camel = "".join(part.title() for part in spec.name.split("_"))
    return create_model(
        f"{camel}Method",
        __config__=ConfigDict(extra="forbid"),
        __doc__=f"method.type {spec.name!r}: {spec.paper}",
        type=(Literal[spec.name], Field(description="The method (strategy) to train with.")),
        **{spec.name: (spec.settings_model | None, Field(None, description=f"Settings of {spec.name}."))},
    )


def _body_model() -> type[BaseModel]:
    methods = tuple(_method_model(spec) for spec in list_strategies())
    method = Annotated[Union[methods], Field(discriminator="type")]  # noqa: UP007 - a runtime tuple of types
    return create_model(
        BODY_NAME, __base__=CreateJobRequest,
        method=(method | None, Field(None, description=(
            f"The method and its settings; default {{\"type\": \"{default_strategy().name}\"}}."))),
    )


def document_create_job(openapi: dict[str, Any], path: str = "/v1/fine_tuning/jobs") -> None:
    """Declare the create body (required) and its component schemas in `openapi`, in place."""
    schema = _body_model().model_json_schema(ref_template="#/components/schemas/{model}")
    components = openapi.setdefault("components", {}).setdefault("schemas", {})
    for name, definition in {**schema.pop("$defs", {}), BODY_NAME: schema}.items():
        if components.get(name, definition) != definition:
            raise ValueError(f"OpenAPI component {name} is defined twice, differently")
        components[name] = definition
    openapi["paths"][path]["post"]["requestBody"] = {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{BODY_NAME}"}}},
    }
