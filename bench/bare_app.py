"""The baseline of bench/load.py: a bare FastAPI endpoint that reads one job row, nothing else."""
from __future__ import annotations

import os

from fastapi import FastAPI
from sqlalchemy import create_engine, text

from app.core.db import normalize_url

engine = create_engine(normalize_url(os.environ["TUNEFORGE_DATABASE_URL"]), pool_size=10)
app = FastAPI()


@app.get("/row/{job_id}")
def row(job_id: str) -> dict:
    with engine.connect() as conn:
        found = conn.execute(text("select id, status from jobs where id = :id"), {"id": job_id}).one()
    return {"id": found[0], "status": found[1]}
