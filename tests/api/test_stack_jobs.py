"""Creating `adapter` jobs with a MAD-X `stack` (Pfeiffer et al. 2020): the stacked jobs must be the
tenant's own succeeded bottleneck adapters on the same base; anything else a 400 naming
`method.adapter.stack` and what to change, with nothing stored. Stacked jobs are rows in the real
PostgreSQL with their adapter_config.json where the worker would have published it."""
from __future__ import annotations

import json

import pytest

from app.artifacts.service import job_artifact_dir
from app.core.db import session_scope
from app.core.ids import new_id
from app.models import Artifact, BaseModel, Job
from tests.api.helpers import assert_error, classification_rows, jsonl, upload
from tests.api.test_jobs import _jobs, create
from tests.conftest import new_tenant

STACK = "method.adapter.stack"


def stacked_job(tenant_id: str, model: str = "tiny-bert", status: str = "succeeded", adapter: dict | None = None,
                method: str = "adaptive") -> str:
    """A finished job row; with `adapter`, its published bottleneck/adapter_config.json (fields over defaults)."""
    with session_scope() as db:
        sha256 = db.get(BaseModel, "tiny-bert").sha256
        job = Job(id=new_id("ftjob-"), tenant_id=tenant_id, model=model, status=status, training_file="file-x",
                  method={"type": method, method: {}}, seed=0, attempt=1)
        db.add(job)
        db.flush()
        if adapter is not None:
            config = {"name": "language", "placement": "pfeiffer", "train_layer_norm": False,
                      "base_model": {"id": "tiny-bert", "sha256": sha256}, **adapter}
            path = job_artifact_dir(job) / "bottleneck" / "adapter_config.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(config))
            db.add(Artifact(job_id=job.id, name="bottleneck/adapter_config.json", bytes=path.stat().st_size,
                            sha256="0" * 64))
        return job.id


@pytest.fixture
def train_file(client, tenant) -> str:
    return upload(client, tenant[1], jsonl(classification_rows())).json()["id"]


def _stack(client, tenant, train_file, model: str, stack: list[str]):
    return create(client, tenant[1], model=model, training_file=train_file,
                  method={"type": "adapter", "adapter": {"stack": stack}})


def test_a_language_adapter_of_the_tenant_stacks(client, tenant, train_file, registered_tiny_model):
    language = stacked_job(tenant[0], adapter={})
    response = _stack(client, tenant, train_file, registered_tiny_model, [language])
    assert response.status_code == 200, response.text
    assert response.json()["method"]["adapter"]["stack"] == [language]


def test_another_tenants_adapter_reads_as_no_such_job(client, tenant, train_file, registered_tiny_model):
    theirs = stacked_job(new_tenant()[0], adapter={})
    missing = new_id("ftjob-")
    messages = []
    for job_id in (theirs, missing):
        error = assert_error(_stack(client, tenant, train_file, registered_tiny_model, [job_id]), 400,
                             "no fine-tuning job", param=STACK)
        assert error["code"] == "stack_job_not_found"
        messages.append(error["message"].replace(job_id, "<id>"))
    assert messages[0] == messages[1]  # nothing tells the other tenant's job apart from a missing one
    assert _jobs(tenant[0]) == 0


@pytest.mark.parametrize("job, fragments", [
    ({"status": "running", "adapter": {}}, ("is running", "wait until it succeeds")),
    ({"status": "failed", "adapter": {}}, ("is failed", "succeeded")),
    ({"method": "bitfit"}, ("(bitfit) left no bottleneck adapter", "language adapter")),
    ({"adapter": {"base_model": {"id": "minilm-l6", "sha256": "f" * 64}}},
     ("trained on base model 'minilm-l6'", "set model to 'minilm-l6'")),
    ({"adapter": {"stack": [{"job_id": "ftjob-deeper"}]}}, ("itself stacked", "ftjob-deeper")),
    ({"adapter": {"train_layer_norm": True}}, ("layernorm", "without them")),
])
def test_jobs_that_cannot_stack_are_400s(client, tenant, train_file, registered_tiny_model, job, fragments):
    language = stacked_job(tenant[0], adapter={})
    bad = stacked_job(tenant[0], **job)
    assert_error(_stack(client, tenant, train_file, registered_tiny_model, [language, bad]), 400,
                 f"{STACK}[1]", bad, *fragments, param=STACK)
    assert _jobs(tenant[0]) == 2  # the two stacked rows; nothing new


@pytest.mark.parametrize("stack, fragment", [([], "empty"), (["same", "same"], "more than once"),
                                             (["file-abc"], "ftjob-")])
def test_empty_duplicated_or_malformed_stacks_are_400s(client, tenant, train_file, registered_tiny_model,
                                                        stack, fragment):
    language = stacked_job(tenant[0], adapter={})
    stack = [language if job == "same" else job for job in stack]
    assert_error(_stack(client, tenant, train_file, registered_tiny_model, stack), 400, fragment, param=STACK)
    assert _jobs(tenant[0]) == 1  # the stacked row; nothing new


def test_a_language_adapter_without_width_on_this_base_is_a_400(client, tenant, train_file, registered_tiny_model):
    response = create(client, tenant[1], model=registered_tiny_model, training_file=train_file,
                      method={"type": "adaptive", "adaptive": {"tapt": True, "adapter": {"reduction_factor": 64}}})
    assert_error(response, 400, "hidden size 32", "choose reduction_factor ≤ 32",
                 param="method.adaptive.adapter.reduction_factor")
    assert _jobs(tenant[0]) == 0
