"""Resource classes: validated `resources`, the estimate, one queue per class, recovery to the same class,
and the queues a worker host's training processes take."""
from __future__ import annotations

from datetime import timedelta

import pytest
import redis

from app.core.config import get_settings
from app.core.db import session_scope
from app.core.devices import Devices, plan
from app.jobs.maintenance import run_once
from app.models import Job
from app.models.base import utcnow
from tests.api.helpers import assert_error, auth, classification_rows, jsonl, upload
from tests.conftest import REDIS_URL
from tests.workers.test_maintenance import _job, _state


@pytest.fixture(autouse=True)
def _isolated(quiet_queue, monkeypatch):
    monkeypatch.setattr(get_settings(), "gpu_types", "h100,a100")


def _create(client, key, model, **body):
    train = upload(client, key, jsonl(classification_rows())).json()["id"]
    return client.post("/v1/fine_tuning/jobs", headers=auth(key),
                       json={"model": model, "training_file": train, "method": {"type": "lora"}, **body})


def _queue(resource_class: str) -> list[bytes]:
    name = get_settings().queue_name + ("" if resource_class == "cpu" else f".{resource_class}")
    return redis.Redis.from_url(REDIS_URL).lrange(name, 0, -1)


def test_asked_resources_route_the_job_and_are_shown(client, tenant, registered_tiny_model):
    job = _create(client, tenant[1], registered_tiny_model, resources={"gpus": 2, "gpu_type": "H100"}).json()
    assert job["resources"]["class"] == "gpu.x2-h100" and job["resources"]["gpus"] == 2
    assert job["resources"]["source"] == "asked" and job["resources"]["estimated_step_flops"] > 0
    events = client.get(f"/v1/fine_tuning/jobs/{job['id']}/events", headers=auth(tenant[1])).json()["data"]
    assert any(e["message"].startswith("Resources: 2 GPUs (h100), queue class gpu.x2-h100") for e in events)
    assert any(job["id"].encode() in m for m in _queue("gpu.x2-h100"))
    cpu = _create(client, tenant[1], registered_tiny_model, resources={"processes": 2}).json()
    assert (cpu["resources"]["class"], cpu["resources"]["processes"]) == ("cpu", 2)
    assert any(cpu["id"].encode() in m for m in _queue("cpu"))


@pytest.mark.parametrize("resources, param, words", [
    ({"gpus": -1}, "resources.gpus", "greater than or equal to 0"),
    ({"gpus": 1, "gpu_type": "v100"}, "resources.gpu_type", "not a GPU type of this service (h100, a100)"),
    ({"gpu_type": "h100"}, "resources.gpu_type", "gpu_type needs gpus >= 1"),
    ({"gpus": 1, "processes": 2}, "resources.processes", "processes is for CPU jobs"),
    ({"cpus": 2}, "resources.cpus", "Extra inputs are not permitted"),
])
def test_bad_resources_are_a_400_naming_the_field(client, tenant, registered_tiny_model, resources, param, words):
    response = _create(client, tenant[1], registered_tiny_model, resources=resources)
    assert_error(response, 400, param=param)
    assert words in response.json()["error"]["message"]


def test_the_estimate_routes_big_jobs_to_the_gpu_class_only_when_a_threshold_is_set(client, tenant,
                                                                                      registered_tiny_model,
                                                                                      monkeypatch):
    small = _create(client, tenant[1], registered_tiny_model).json()["resources"]
    assert (small["class"], small["source"]) == ("cpu", "estimated")
    monkeypatch.setattr(get_settings(), "gpu_route_above_flops", small["estimated_step_flops"] / 2)
    big = _create(client, tenant[1], registered_tiny_model).json()
    assert big["resources"]["class"] == "gpu" and any(big["id"].encode() in m for m in _queue("gpu"))


def _job_of_class(resource_class: str, tenant_id: str, **values) -> str:
    job_id = _job(tenant_id, **values)
    with session_scope() as db:
        job = db.get(Job, job_id)
        job.method = {**job.method, "resources": {"class": resource_class, "gpus": 1, "processes": 1}}
    return job_id


def test_a_waiting_gpu_job_does_not_hold_up_cpu_jobs_and_a_lost_one_returns_to_its_class(tenant, monkeypatch):
    monkeypatch.setattr(get_settings(), "broker_depth", 1)
    waiting = _job_of_class("gpu", tenant[0], status="queued", attempt=0)
    cpu_job = _job(tenant[0], status="queued", attempt=0)
    sent = run_once()["sent"]
    # each class has its own broker_depth: the gpu job and a cpu job both go (cpu_job, or a cpu job an earlier
    # test left queued in this shared database, if fairness picks that one first)
    assert waiting in sent and len(sent) == 2
    with session_scope() as db:
        other = db.get(Job, next(job for job in sent if job != waiting))
        assert (other.method.get("resources") or {}).get("class", "cpu") == "cpu"
    assert cpu_job in sent or other.tenant_id != tenant[0]
    assert any(waiting.encode() in m for m in _queue("gpu")) and not any(waiting.encode() in m for m in _queue("cpu"))
    stale = utcnow() - timedelta(seconds=get_settings().heartbeat_timeout + 30)
    lost = _job_of_class("gpu-h100", tenant[0], status="running", attempt=1, worker_id="dead:1", heartbeat_at=stale)
    assert lost in run_once()["reaped"]
    assert _state(lost)[0].status == "queued"
    assert any(lost.encode() in m for m in _queue("gpu-h100"))


def test_phased_jobs_take_several_processes_but_not_with_parallel_seeds(client, tenant, registered_tiny_model):
    train = upload(client, tenant[1], jsonl(classification_rows())).json()["id"]
    valid = upload(client, tenant[1], jsonl(classification_rows(8))).json()["id"]

    def create(method: dict) -> object:
        return client.post("/v1/fine_tuning/jobs", headers=auth(tenant[1]), json={
            "model": registered_tiny_model, "training_file": train, "validation_file": valid,
            "resources": {"processes": 2}, "method": method})
    seeds = {"type": "supervised", "supervised": {"stability": {"recipe": "mosbach", "n_seeds": 2, "lp_ft": True}}}
    assert create(seeds).status_code == 200
    assert create({"type": "adaptive", "adaptive": {"tapt": True, "then": seeds}}).status_code == 200
    assert create({"type": "multitask", "multitask": {"tasks": [{"name": "a", "training_file": train},
                                                                {"name": "b", "training_file": valid}],
                                                      "then": seeds}}).status_code == 200
    forked = {"type": "lora", "lora": {"stability": {"n_seeds": 2, "parallel_seeds": 2}}}
    for method, field in ((forked, "method.lora.stability.parallel_seeds"),
                          ({"type": "adaptive", "adaptive": {"tapt": True, "then": forked}},
                           "method.adaptive.then.lora.stability.parallel_seeds")):
        response = create(method)
        assert_error(response, 400, param="resources.processes")
        assert field in response.json()["error"]["message"]


def test_a_worker_host_runs_one_training_process_per_gpu_on_its_classes():
    types = ["h100", "a100"]
    [cpu] = plan(Devices(0, ""), types)
    assert cpu.gpu_ids is None and cpu.queues == [get_settings().queue_name]
    four = plan(Devices(4, "NVIDIA H100 80GB HBM3"), types)
    assert [p.gpu_ids for p in four] == [(0,), (1,), (2,), (3,)]
    assert all(p.classes == ("gpu", "gpu-h100") for p in four)
    pairs = plan(Devices(4, "NVIDIA H100 80GB HBM3"), types, gpus_per_job=2)
    assert [(p.gpu_ids, p.classes) for p in pairs] == [((0, 1), ("gpu.x2", "gpu.x2-h100")),
                                                       ((2, 3), ("gpu.x2", "gpu.x2-h100"))]
    assert plan(Devices(2, "A100"), types, classes=["gpu", "cpu"])[0].classes == ("gpu", "cpu")
    with pytest.raises(ValueError, match="exceeds the 2 GPU"):
        plan(Devices(2, "A100"), types, gpus_per_job=4)
