"""The prediction runtime on real tiny artifacts, without HTTP: every output equals the artifact loaded
alone, LoRA adapters of one base share it and one forward pass, and the LRU caches unload and reload."""
from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from app.predictions.batcher import Work
from app.predictions.registry import PredictionRuntime
from tests.predictions.conftest import ARTIFACTS, KINDS, TEXTS, close

INPUTS = [(text, None) for text in TEXTS]


def engines(max_adapters: int = 16, max_models: int = 2, batch_rows: int = 64):
    from app.predictions.engines import Engines

    return Engines(max_adapters, max_models, batch_rows)


def run(engine, *items):
    """Run (served, inputs) works as one batch, as the inference thread would; their logits."""
    works = [Work(served, inputs) for served, inputs in items]
    engine.run(works)
    return [work.future.result(timeout=0) for work in works]


@pytest.mark.parametrize("name", list(ARTIFACTS))
def test_each_artifact_predicts_what_it_predicts_alone(name, served, references):
    engine = engines()
    [logits] = run(engine, (served[name], INPUTS))
    assert close(logits, references[name]), name
    assert served[name].kind == KINDS.get(name, "lora")


def test_lora_adapters_of_one_base_share_it_and_one_forward_pass(served, references):
    engine = engines()
    pool_calls = []
    burst = [(served[name], INPUTS) for name in ("lora", "lora_other", "lora", "lora_other")]
    for name in ("lora", "lora_other"):
        engine.load(served[name])
    [pool] = engine.pools.values()  # same head shape and modules: one peft model holds both adapters
    original = pool.logits
    pool.logits = lambda batch, names: pool_calls.append(list(names)) or original(batch, names)
    results = run(engine, *burst)
    for (model, _), logits in zip(burst, results, strict=True):
        assert close(logits, references[model.name]), model.name
    assert len(pool_calls) == 1 and len(set(pool_calls[0])) == 2 and pool.mixable  # one mixed-adapter pass
    assert len(engine.bases) == 1


def test_every_pool_over_the_one_base_points_at_its_tensors(served, references):
    engine = engines()
    everything = [(served[name], INPUTS) for name in ARTIFACTS]
    for (model, _), logits in zip(everything, run(engine, *everything), strict=True):
        assert close(logits, references[model.name]), model.name
    assert len(engine.bases) == 1 and len(engine.pools) == 6  # 2 adapters; pooler; 3 labels; 1 layer; mean; re-init x2
    [base] = engine.bases.values()
    shared = base._weights["bert.embeddings.word_embeddings.weight"]
    for pool in engine.pools.values():
        weight = pool.peft.get_base_model().bert.embeddings.word_embeddings.weight
        assert weight.data_ptr() == shared.data_ptr()
    reinit = next(pool for pool in engine.pools.values() if not pool.mixable)  # whole layers: one adapter per pass
    assert len(reinit.peft.peft_config) == 2


def test_the_lru_unloads_the_least_recent_adapter_and_reloads_it_on_demand(served, references):
    engine = engines(max_adapters=2, max_models=1)
    run(engine, (served["lora"], INPUTS))
    run(engine, (served["lora_other"], INPUTS))
    [pool] = engine.pools.values()
    run(engine, (served["bitfit"], INPUTS))  # evicts "lora": its adapter leaves the peft model
    assert engine.adapters.keys() == [served["lora_other"].key, served["bitfit"].key]
    assert len(pool.peft.peft_config) == 1
    [logits] = run(engine, (served["lora"], INPUTS))  # loaded again, evicting "lora_other"
    assert close(logits, references["lora"])
    assert engine.adapters.keys() == [served["bitfit"].key, served["lora"].key]
    run(engine, (served["lora_three"], INPUTS))  # another pool; "bitfit" goes
    run(engine, (served["bitfit"], INPUTS))  # "lora" goes: the last adapter of its pool, so the pool goes too
    assert len(engine.pools) == 1 and len(engine.adapters) == 2
    run(engine, (served["supervised"], INPUTS))
    run(engine, (served["ia3"], INPUTS))  # whole models have their own LRU: "supervised" goes
    assert engine.models.keys() == [served["ia3"].key]
    [logits] = run(engine, (served["supervised"], INPUTS))
    assert close(logits, references["supervised"]) and engine.models.keys() == [served["supervised"].key]


def test_a_batch_needing_more_models_than_the_cache_holds_runs_in_waves(served, references):
    engine = engines(max_adapters=1)
    burst = [(served[name], INPUTS) for name in ("lora", "lora_other", "bitfit", "lora")]
    for (model, _), logits in zip(burst, run(engine, *burst), strict=True):
        assert close(logits, references[model.name]), model.name


def test_long_bursts_split_into_forward_passes_of_batch_rows(served, references):
    engine = engines(batch_rows=3)
    burst = [(served["lora"], INPUTS), (served["lora_other"], INPUTS), (served["lora"], INPUTS[:1])]
    got = run(engine, *burst)
    assert close(got[0], references["lora"]) and close(got[1], references["lora_other"])
    assert close(got[2], references["lora"][:1])


def test_pairs_and_plain_texts_in_one_request(artifacts, served, base_ref):
    from tests.predictions.conftest import reference

    pairs = [{"text": t, "text_pair": "chair table"} for t in TEXTS]
    [logits] = run(engines(), (served["bitfit"], [(t, None) for t in TEXTS] + [(p["text"], p["text_pair"]) for p in pairs]))
    assert close(logits[:len(TEXTS)], reference(artifacts["bitfit"], base_ref, TEXTS))
    assert close(logits[len(TEXTS):], reference(artifacts["bitfit"], base_ref, pairs))


def test_concurrent_requests_for_different_models_each_get_their_own(served, references):
    runtime = PredictionRuntime(max_adapters=16, max_models=2, batch_rows=64)
    names = ["lora", "lora_other", "lora_pooler", "bitfit", "supervised", "lora_three"]
    failures: list[str] = []

    def client(offset: int) -> None:
        for i in range(6):
            name = names[(offset + i) % len(names)]
            if not close(runtime.predict(served[name], INPUTS, timeout=120), references[name]):
                failures.append(name)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == [] and len(runtime.engines.bases) == 1


def test_a_failing_load_fails_only_its_own_request(served, references, tmp_path):
    import dataclasses
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(served["lora"].artifact_dir, broken)
    (broken / "adapter" / "adapter_model.safetensors").write_bytes(b"not weights")
    runtime = PredictionRuntime(max_adapters=4, max_models=1, batch_rows=64)
    bad = runtime.submit(dataclasses.replace(served["lora"], artifact_dir=broken), INPUTS)
    good = runtime.submit(served["lora_other"], INPUTS)
    assert close(good.result(timeout=120), references["lora_other"])
    with pytest.raises(Exception, match="does not match manifest.json") as caught:
        bad.result(timeout=120)
    assert getattr(caught.value, "code", None) == "artifact_corrupted"


def test_the_api_side_of_predictions_imports_no_torch():
    code = ("import sys, app.main, app.predictions.service, app.predictions.registry, app.predictions.served; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
