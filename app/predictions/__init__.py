"""POST /v1/predictions: serve what was trained, over hot-swapped adapters.

How one API process serves many fine-tuned models (the design of S-LoRA, Sheng et al. 2023, and
Punica, Chen et al. 2023, on peft's own mixed-adapter batches):

- One base in memory per base model id and content hash (`engines.SharedBase`): every model
  instance built over it points at the same weight tensors, so a second head shape or a LoRA pool
  costs its head and adapters, not another base.
- LoRA adapters of one base and head shape live together in one peft model (`engines.LoraPool`); the
  requests waiting for any of them run as one forward pass with `adapter_names=` (peft's LoRA guide,
  "Inference with different LoRA adapters in the same batch"), so a request for another adapter
  switches nothing.
- Dense deltas (BitFit, partial fine-tuning) are applied per forward pass with
  `torch.func.functional_call`: the delta's tensors stand in for the base's, which never change.
- Whole models (`supervised`), and methods without a shared-base form here (IA3, DoRA, prompt and
  prefix tuning, bottleneck adapters, diff pruning, SAID), load whole with
  `app.training.artifacts.load_classifier`.
- Adapters and deltas share one LRU cache (`predictions_max_adapters`), whole models another
  (`predictions_max_models`); an evicted one loads again on its next request. Outputs equal
  `load_classifier` + `predict` of the artifact alone (to 1e-5; tests/predictions check it).
- Inference runs on one thread per process (`batcher.Batcher`), off the event loop: requests queue,
  the thread takes everything waiting (up to `predictions_batch_rows` inputs) and batches it. Only
  that thread touches the models, so concurrent requests need no lock around them.

Where it runs: inside `tuneforge api`, loaded on the first prediction (importing this package does not
import torch). Dedicated serving processes are simply more `tuneforge api` processes on the same
database and data directory, behind a load balancer that routes `/v1/predictions` to them; each keeps
its own caches. Route one base model's traffic to the same processes to keep their caches warm.
"""
