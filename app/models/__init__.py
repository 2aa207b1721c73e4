"""SQLAlchemy models, one per file; importing this package registers them all."""
from app.models.api_key import ApiKey
from app.models.artifact import Artifact
from app.models.audit_event import AuditEvent
from app.models.base import Base
from app.models.base_model import BaseModel
from app.models.corpus import Corpus, CorpusStatus
from app.models.file import File
from app.models.idempotency_key import IdempotencyKey
from app.models.job import Job
from app.models.job_checkpoint import JobCheckpoint
from app.models.job_event import JobEvent
from app.models.job_export import ExportStatus, JobExport
from app.models.tenant import Tenant
from app.models.tenant_limits import TenantLimits
from app.models.webhook_attempt import WebhookAttempt
from app.models.webhook_delivery import DeliveryStatus, WebhookDelivery
from app.models.webhook_endpoint import WebhookEndpoint

__all__ = ["ApiKey", "Artifact", "AuditEvent", "Base", "BaseModel", "Corpus", "CorpusStatus", "File", "IdempotencyKey", "Job", "JobCheckpoint", "ExportStatus", "JobEvent", "JobExport", "Tenant", "TenantLimits",
           "DeliveryStatus", "WebhookAttempt", "WebhookDelivery", "WebhookEndpoint"]
