"""One settings object, read from `TUNEFORGE_*` environment variables."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.core.instance import default_data_dir


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TUNEFORGE_", extra="ignore")

    database_url: str | None = Field(None, description="PostgreSQL URL; unset means embedded (tuneforge up).")
    redis_url: str | None = Field(None, description="Redis URL of the Celery broker; unset means embedded.")
    data_dir: Path = Field(default_factory=default_data_dir, description="Uploaded files, base models and artifacts "
                           "live here; default: the per-user data dir (~/.local/share/tuneforge on Linux).")
    artifact_url: str | None = Field(None, description="Shared object store of uploaded files, artifacts and base "
                                     "models for several hosts, any fsspec URL (s3://bucket/prefix: credentials and "
                                     "endpoint from AWS_* variables); unset: data_dir. See app/core/object_store.py.")
    max_upload_bytes: int = Field(512 * 1024 * 1024, description="Largest accepted file upload.")
    max_header_bytes: int = Field(64 * 1024, description="Largest accepted request header block.")
    body_idle_timeout: float = Field(30.0, gt=0, description="Most seconds between two chunks of a request body "
                                     "(slow-upload protection); longer is a 408.")
    body_min_rate: float = Field(1024.0, ge=0, description="Bytes per second a body must average once it has "
                                 "taken longer than body_idle_timeout, so a trickle is cut off too.")
    heartbeat_interval: float = Field(5.0, description="Seconds between worker heartbeats.")
    heartbeat_timeout: float = Field(60.0, description="A running job whose heartbeat is older is re-queued.")
    max_attempts: int = Field(3, description="Attempts before a repeatedly dying job is failed.")
    dispatcher_interval: float = Field(2.0, description="Seconds between reaper/reconciler passes.")
    resend_after: float = Field(30.0, description="A queued job the broker no longer holds after this many "
                                "seconds is sent again (flushed or restarted Redis).")
    model_cache_max_bytes: int | None = Field(None, ge=1, description="Most bytes of base models one host keeps "
                                              "fetched from TUNEFORGE_ARTIFACT_URL; least recently used ones no job "
                                              "uses are evicted beyond it. Unset: no bound.")
    orphan_grace: float = Field(600.0, description="Stored bytes without a file row older than this are removed.")
    checkpoint_grace: float = Field(3600.0, ge=0, description=(
        "A failed or cancelled job's checkpoint snapshots in the object store are removed this many seconds after "
        "it ended (a succeeded job's once its artifact is published; a paused job's stay)."))
    broker_depth: int = Field(2, ge=1, description="Most jobs waiting in the broker at once; the rest wait in "
                              "PostgreSQL for a fair turn.")
    max_running_per_tenant: int | None = Field(None, ge=1, description="Default cap on one tenant's active jobs.")
    max_queued_per_tenant: int | None = Field(None, ge=1, description="Default cap on one tenant's waiting jobs.")
    max_storage_per_tenant: int | None = Field(None, ge=1, description="Default cap on one tenant's stored file bytes.")
    requests_per_second: float | None = Field(None, gt=0, description="Default per-tenant API request rate.")
    stop_poll_interval: float = Field(0.5, description="Seconds between a worker's cancel/pause checks.")
    queue_name: str = Field("tuneforge.train", description="Celery queue the training tasks use (CPU jobs, exports "
                            "and corpus indexing); GPU jobs use `<queue_name>.gpu` and `<queue_name>.gpu-<type>`.")
    gpu_types: str = Field("", description="Comma-separated GPU types jobs may ask for (resources.gpu_type), e.g. "
                           "'a100,h100': each gets its own queue, which workers whose GPU name contains it consume.")
    gpu_route_above_flops: float | None = Field(None, gt=0, description="A job that does not give `resources` goes "
                                                "to the GPU queue when its estimated training FLOPs per optimizer "
                                                "step exceed this (set it only where GPU workers run); unset: only "
                                                "jobs asking for GPUs go there.")
    default_base_model: str = Field("minilm-l6", description="Base model registered by `tuneforge migrate`.")
    max_seeds: int = Field(8, ge=1, description="Most seeds one job may start (method.<type>.stability.n_seeds; "
                           "they train on the job's worker, `parallel_seeds` at a time).")
    predictions_max_adapters: int = Field(64, ge=1, description="Adapters and deltas (LoRA, BitFit, partial) one API "
                                          "process keeps loaded over its shared bases; the least recently used "
                                          "goes first.")
    predictions_max_models: int = Field(2, ge=1, description="Whole models (supervised, and methods applied over "
                                        "a private copy of the base) one API process keeps loaded; least recently "
                                        "used first.")
    predictions_batch_rows: int = Field(64, ge=1, description="Most inputs one forward pass of POST /v1/predictions "
                                        "takes; waiting requests (for different adapters too) are batched up to it.")
    predictions_timeout: float = Field(120.0, gt=0, description="Seconds a prediction request waits for its turn "
                                       "and its forward pass before a 503.")
    log_format: Literal["text", "json"] = Field("text", description="`json`: one JSON object per log line, with "
                                                "job_id and tenant_id where known.")
    events_poll_interval: float = Field(1.0, gt=0, description="Seconds between database reads of a streamed "
                                        "(SSE) job's new events.")
    sse_keepalive: float = Field(15.0, gt=0, description="Seconds of silence after which an event stream sends a "
                                 "comment line, so proxies keep the connection open.")
    sse_max_duration: float | None = Field(None, gt=0, description="Most seconds one event stream stays open (then "
                                           "it ends and clients reconnect with Last-Event-ID); unset: until the "
                                           "job ends.")
    webhook_allow_private: bool = Field(False, description="Allow webhook URLs on loopback, private and link-local "
                                        "addresses (a receiver on this machine or LAN; tests set it).")
    webhook_timeout: float = Field(10.0, gt=0, description="Seconds a webhook receiver has to answer one attempt.")
    webhook_max_attempts: int = Field(12, ge=1, description="Attempts before a webhook delivery is given up.")
    webhook_retry_base: float = Field(30.0, gt=0, description="Seconds before the first retry; each later retry "
                                      "waits twice as long as the one before (exponential backoff).")
    webhook_retry_max: float = Field(6 * 3600.0, gt=0, description="Longest wait between two webhook attempts.")
    webhook_concurrency: int = Field(4, ge=1, description="Webhook deliveries one `tuneforge worker` sends at once.")
    webhook_secret_overlap: int = Field(24 * 3600, ge=0, le=7 * 24 * 3600, description="Seconds a rotated-out "
                                        "webhook signing secret keeps signing deliveries beside the new one, when "
                                        "the rotation does not say (POST …/rotate_secret).")

    @property
    def gpu_type_list(self) -> list[str]:
        return [t.strip().lower() for t in self.gpu_types.split(",") if t.strip()]

    @property
    def webhook_queue(self) -> str:
        """The Celery queue of webhook deliveries: apart from training, so a long job never delays one."""
        return f"{self.queue_name}.webhooks"

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "artifacts"

    @property
    def base_models_dir(self) -> Path:
        return self.data_dir / "base_models"

    @property
    def checkpoints_dir(self) -> Path:
        return self.data_dir / "checkpoints"

    def require_database_url(self) -> str:
        if not self.database_url:
            raise RuntimeError(f"TUNEFORGE_DATABASE_URL is not set and no `tuneforge up` runs on data directory "
                               f"{self.data_dir}: start `tuneforge up` (operator commands then use its database), "
                               "pass its --data-dir, or set TUNEFORGE_DATABASE_URL.")
        return self.database_url

    def require_redis_url(self) -> str:
        if not self.redis_url:
            raise RuntimeError(f"TUNEFORGE_REDIS_URL is not set and no `tuneforge up` runs on data directory "
                               f"{self.data_dir}: start `tuneforge up`, pass its --data-dir, or set TUNEFORGE_REDIS_URL.")
        return self.redis_url


@lru_cache
def get_settings() -> Settings:
    return Settings()
