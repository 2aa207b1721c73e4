"""A masked-LM read as a classifier through its own MLM head, no new head (PET, Schick & Schütze 2021).

A label's score under one pattern is its verbalizer word's log-probability at the mask; a word of k
tokens scores the mean of its k tokens' log-probabilities at that one mask (PET proper puts k masks
and decodes them one by one; one mask keeps every label a single forward pass, at the price of
scoring the word as a bag of its pieces). Training minimises the cross-entropy of the labels' scores
under each pattern (softmax over the verbalizer's words only, as PET's loss); the logits are the
label log-probabilities averaged over the patterns, the ensemble a prediction uses.
"""
from __future__ import annotations

import torch
from transformers.modeling_outputs import SequenceClassifierOutput

from app.training.base import TrainingError
from app.training.mlm import masked_lm_head


def _inner(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model under a peft wrapper (LoRA layers stay injected in it)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


class ClozeModel(torch.nn.Module):
    def __init__(self, mlm: torch.nn.Module, label_tokens: list[list[int]]):
        super().__init__()
        self.mlm = mlm
        if masked_lm_head(_inner(mlm)) is None:
            raise TrainingError(f"cloze needs a masked-LM head that is one module on the encoder (BERT, RoBERTa, "
                                f"ELECTRA); {type(_inner(mlm)).__name__} has another layout",
                                code="invalid_base_model", param="model")
        width = max(map(len, label_tokens))
        ids = torch.tensor([t + [0] * (width - len(t)) for t in label_tokens])
        weights = torch.tensor([[1 / len(t)] * len(t) + [0.0] * (width - len(t)) for t in label_tokens])
        self.register_buffer("label_token_ids", ids, persistent=False)  # (labels, longest word)
        self.register_buffer("label_token_weights", weights, persistent=False)  # 1/k per token, 0 as padding

    def get_base_model(self) -> torch.nn.Module:
        """The masked-LM itself (its config names the labels; the ready folder's config.json is it)."""
        return _inner(self.mlm)

    @property
    def config(self):
        return self.get_base_model().config

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, mask_positions: torch.Tensor,
                token_type_ids: torch.Tensor | None = None,
                labels: torch.Tensor | None = None) -> SequenceClassifierOutput:
        batch, patterns, width = input_ids.shape
        flat = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        flat = {k: v.reshape(batch * patterns, width) for k, v in flat.items() if v is not None}
        model = self.get_base_model()
        hidden = model.base_model(**flat).last_hidden_state
        at_mask = hidden[torch.arange(batch * patterns, device=hidden.device), mask_positions.reshape(-1)]
        log_probs = masked_lm_head(model)(at_mask).float().log_softmax(-1)  # (batch·patterns, vocabulary)
        scores = (log_probs[:, self.label_token_ids] * self.label_token_weights).sum(-1)  # (batch·patterns, labels)
        logits = scores.view(batch, patterns, -1).log_softmax(-1).mean(1)
        loss = None if labels is None else torch.nn.functional.cross_entropy(scores, labels.repeat_interleave(patterns))
        return SequenceClassifierOutput(loss=loss, logits=logits)
