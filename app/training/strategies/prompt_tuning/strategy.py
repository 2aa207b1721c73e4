"""Prompt tuning (Lester et al. 2021, "The Power of Scale for Parameter-Efficient Prompt Tuning") via PEFT.

`num_virtual_tokens` learned embeddings are prepended to every input's embeddings; they and the new
head train, the encoder stays frozen. BERT's pooler (and so the head) then reads the first virtual
token, as in PEFT's sequence-classification prompt tuning.

Artifact: `adapter/adapter_config.json` + `adapter/adapter_model.safetensors` (the prompt embeddings
and the head), loadable with `PeftModel.from_pretrained`.
"""
from __future__ import annotations

from app.training.base import TrainContext, TrainResult
from app.training.task_run import run_classification
from app.training.tasks.base import peft_task_type
from app.training.peft_adapter import save_adapter
from app.training.strategies.prompt_tuning.config import PromptTuningSettings
from app.training.virtual_tokens import virtual_token_model


def _prepare(model, ctx: TrainContext, new_parameters: set[str]):
    from peft import PromptTuningConfig, PromptTuningInit

    settings = ctx.settings_as(PromptTuningSettings)
    text = settings.prompt_tuning_init == "text"
    config = PromptTuningConfig(
        task_type=peft_task_type(model), num_virtual_tokens=settings.num_virtual_tokens,
        # the prompt lives in the input-embedding space (narrower than hidden in ALBERT); DistilBERT's
        # config names its heads n_heads, which peft does not find on its own
        token_dim=model.get_input_embeddings().embedding_dim, num_attention_heads=model.config.num_attention_heads,
        prompt_tuning_init=PromptTuningInit.TEXT if text else PromptTuningInit.RANDOM,
        prompt_tuning_init_text=settings.prompt_tuning_init_text,
        tokenizer_name_or_path=str(ctx.base_model.path) if text else None)
    return virtual_token_model(model, ctx, new_parameters, config)


def train(ctx: TrainContext) -> TrainResult:
    return run_classification(ctx, _prepare, save_adapter)
