"""Training FLOPs (app.training.flops): (4·N + 2·N_trainable)·T for an encoder or a decoder; an
encoder-decoder counts each stack over its own tokens (the decoder's are the target's, not -100)."""
from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

from app.training.flops import FlopCounter
from tests.tiny_text_models import make_tiny_gpt2, make_tiny_t5


def test_a_decoder_counts_every_parameter_over_its_tokens(tmp_path):
    model = AutoModelForCausalLM.from_pretrained(make_tiny_gpt2(tmp_path / "gpt2"))
    for name, p in model.named_parameters():
        p.requires_grad_("ln_f" in name)
    n = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    batch = {"input_ids": torch.ones(2, 5, dtype=torch.long), "attention_mask": torch.tensor([[1] * 5, [1, 1, 1, 0, 0]]),
             "labels": torch.tensor([[-100, -100, 3, 4, 5], [-100, 3, 4, -100, -100]])}
    assert FlopCounter.of(model)(batch) == (4 * n + 2 * trainable) * 8


def test_an_encoder_decoder_counts_each_stack_over_its_own_tokens(tmp_path):
    model = AutoModelForSeq2SeqLM.from_pretrained(make_tiny_t5(tmp_path / "t5"))
    encoder = {id(p) for p in model.get_encoder().parameters()}
    n_enc = sum(p.numel() for p in model.get_encoder().parameters())
    n_dec = sum(p.numel() for p in model.parameters() if id(p) not in encoder)
    assert n_enc > 0 and n_dec > 0 and n_enc + n_dec == sum(p.numel() for p in model.parameters())
    batch = {"input_ids": torch.ones(2, 6, dtype=torch.long), "attention_mask": torch.tensor([[1] * 6, [1] * 4 + [0] * 2]),
             "labels": torch.tensor([[5, 1, -100], [6, 7, 1]])}
    assert FlopCounter.of(model)(batch) == 6 * n_enc * 10 + 6 * n_dec * 5  # full fine-tuning: 6·N·T per stack
