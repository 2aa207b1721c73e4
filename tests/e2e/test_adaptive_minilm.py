"""`adaptive` on the real minilm-l6 through the service (issue 16): a corpus uploaded with purpose
"corpus", DAPT streamed from it then TAPT, both parameter-efficient (peft "lora"), then LoRA on the task;
and a corpus of symbols only (emoji, private-use characters: [UNK] or nothing to minilm's vocabulary),
which uploads fine but fails the job saying what to change. (Empty, binary
and non-UTF-8 corpora are refused at upload: tests/api/test_files.py.)"""
from __future__ import annotations

import io
import random

from tests.api.helpers import classification_rows
from tests.e2e.test_service import run_job
from tests.tiny_models import COMMON, NEGATIVE, POSITIVE

SCHEDULE = {"hyperparameters": {"n_epochs": 1, "batch_size": 16, "max_length": 32, "learning_rate": 1e-4}}


def upload_corpus(client, lines: list[str]) -> str:
    body = io.BytesIO("".join(f"{line}\n" for line in lines).encode())
    return client.files.create(file=("corpus.txt", body), purpose="corpus").id


def adaptive(corpus: str) -> dict:
    return {"type": "adaptive", "adaptive": {"corpus_file": corpus, "tapt": True, "peft": "lora", "head_warmup": 4,
                                             **SCHEDULE, "then": {"type": "lora", "lora": {"r": 4, **SCHEDULE}}}}


def test_dapt_tapt_lora_on_minilm_then_a_symbols_only_corpus(service, openai_client):
    rng = random.Random(0)
    texts = [" ".join(rng.choice(POSITIVE + NEGATIVE + COMMON) for _ in range(rng.randint(6, 20))) for _ in range(160)]
    job = run_job(openai_client, "minilm-l6", adaptive(upload_corpus(openai_client, texts)),
                  rows=classification_rows(64), valid_rows=classification_rows(16))
    assert job.status == "succeeded", job.error
    messages = [e.message for e in openai_client.fine_tuning.jobs.list_events(job.id, limit=100)]  # every page
    assert any(m.startswith("DAPT: Streaming 160 documents") for m in messages)
    assert any(m.startswith("DAPT: MLM head warm-up: 4 steps") for m in messages)
    assert any(m.startswith("TAPT: held-out MLM loss") for m in messages)
    assert any(m.startswith("DAPT: The base model lacks") for m in messages)  # minilm-l6 ships no MLM head
    assert not any(m.startswith("TAPT: The base model lacks") for m in messages)  # TAPT continues DAPT's
    assert any(f"registered as model adapted:{job.id}" in m for m in messages)
    model = openai_client.models.retrieve(f"adapted:{job.id}")
    assert model.id == f"adapted:{job.id}"

    symbols = upload_corpus(openai_client, ["\u2603\u2603 \u2708 \u263a", "\U0001f600\U0001f680 \u2728", "\u2600 \u2601",
                                            "\ue000\ue001"])
    failed = run_job(openai_client, "minilm-l6", adaptive(symbols), rows=classification_rows(16), valid_rows=False)
    assert failed.status == "failed"
    assert "no maskable tokens" in failed.error.message and "vocabulary covers" in failed.error.message
