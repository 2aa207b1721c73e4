"""Job rows in a chosen state, with an artifact dir copied into place, for export and storage tests
(the worker's training path is covered elsewhere; here only what happens after it matters)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from app.artifacts.service import job_artifact_dir
from app.core.db import session_scope
from app.core.ids import new_id
from app.models import Artifact, Job
from app.training.artifacts import file_records


def finished_job(tenant_id: str, artifact: Path | dict | None = None, status: str = "succeeded",
                 model: str = "tiny-bert") -> str:
    """A committed job of `tenant_id` in `status`; `artifact` (a dir to copy, or a manifest to write)
    becomes its artifact dir, with an Artifact row per file as the worker's publish records them."""
    job_id = new_id("ftjob-")
    with session_scope() as db:
        job = Job(id=job_id, tenant_id=tenant_id, model=model, status=status, training_file="file-x",
                  method={"type": "lora", "lora": {}}, seed=1, attempt=1)
        db.add(job)
        db.flush()
        final = job_artifact_dir(job)
        if isinstance(artifact, Path):
            shutil.copytree(artifact, final)
        elif artifact is not None:
            final.mkdir(parents=True)
            (final / "manifest.json").write_text(json.dumps(artifact))
        if artifact is not None:
            db.add_all(Artifact(job_id=job_id, name=n, bytes=b, sha256=h) for n, b, h in file_records(final))
    return job_id
