"""/v1/predictions: labels and probabilities from a succeeded fine-tuning job."""
from __future__ import annotations

import dataclasses

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from app.api.deps import SessionDep, TenantDep
from app.api.errors import ErrorResponse
from app.core.errors import BadRequest
from app.predictions import service
from app.predictions.limits import MAX_INPUT_CHARS, MAX_INPUTS
from app.predictions.schemas import PredictionList, PredictionRequest

router = APIRouter(prefix="/v1/predictions", tags=["predictions"])

RESPONSES: dict[int | str, dict] = {status: {"model": ErrorResponse, "description": description} for status, description in [
    (400, f"Invalid body (`param` names the field: empty `input`, over {MAX_INPUTS} inputs, a text over "
          f"{MAX_INPUT_CHARS} characters, a malformed conversation or one sent to a model not trained on chat rows), "
          "a base model, or a job that trained no classifier (`model_not_servable`)"),
    (404, "No such model among your jobs (another tenant's is not found either)"),
    (409, "The job has not succeeded (`model_not_ready`), or its artifact or base model is missing or changed"),
    (503, "This process could not answer within predictions_timeout; retry after Retry-After seconds"),
]}


@router.post("", response_model=PredictionList, response_model_exclude_none=True, responses=RESPONSES)
async def create_predictions(body: PredictionRequest, session: SessionDep, tenant: TenantDep) -> dict:
    """Predict `input` with a fine-tuned model: per input, the most probable label and every label's
    probability (regression: `value`; multi-label: `labels` at or above `threshold` and each label's
    sigmoid probability; token classification: `tags` per whitespace-split word and `entities` with
    character spans; text_to_text: the generated `text`, and the `label` it names for a job trained on
    classification rows; a decoder trained on chat rows also answers conversations, `{"messages": [...]}`, with
    the assistant's reply). Adapters of one base share it in memory and one forward pass; outputs equal loading
    the artifact alone (`load_classifier` + `predict`)."""
    served = await run_in_threadpool(service.resolve, session, tenant.id, body.model)
    if body.threshold is not None:
        served = dataclasses.replace(served, threshold=body.threshold)
    if body.max_new_tokens is not None:
        if served.kind != "text":
            raise BadRequest(f"max_new_tokens applies to text_to_text models, and {body.model} is a classifier; "
                             "leave it out.", param="max_new_tokens")
        served = dataclasses.replace(served, max_new_tokens=body.max_new_tokens)
    service.check_conversations(served, body.input)
    rows = await service.predict(served, body.input)
    return service.prediction_list(served, rows)
