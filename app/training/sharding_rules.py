"""What `resources.sharding: "fsdp"` accepts, checked at submission by the API, which never imports torch
(app.training.sharding does the sharding itself on the workers)."""
from __future__ import annotations

from typing import Any

FSDP = "fsdp"
METHODS = ("supervised",)  # full fine-tuning: every weight trains, one model, no tied heads or phases


def problem(method: Any) -> str | None:
    """Why `method` (a resolved app.training.methods.Method) cannot train sharded, or None; what to change."""
    settings, hp = method.settings, method.hyperparameters
    if method.type not in METHODS:
        return (f"fsdp shards full fine-tuning ({', '.join(METHODS)}); method {method.type} trains a few weights "
                "beside a frozen base that every rank can hold, so leave sharding out (data parallel) or use "
                "method supervised")
    if getattr(settings, "stability", None) is not None:
        return (f"fsdp trains one model in one run; leave method.{method.type}.stability out or leave sharding out")
    if getattr(settings, "aux_mlm_weight", 0):
        return (f"fsdp cannot shard the auxiliary MLM head, which shares the word embeddings; set "
                f"method.{method.type}.aux_mlm_weight to 0 or leave sharding out")
    if hp.precision == "fp16":
        return ("fsdp is not built for fp16 loss scaling; set hyperparameters.precision to bf16, fp32 or auto, "
                "or leave sharding out")
    return None
