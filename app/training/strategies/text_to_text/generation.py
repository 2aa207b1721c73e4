"""Greedy generation from a text-to-text model, and generated text mapped back to labels.

Decoders read `decoder_prompt` (input + EOS, as in training) or a chat rendered up to the assistant's turn,
left-padded so every row's answer starts at the same position; seq2seq models read the input as trained.
"""
from __future__ import annotations

import re
from typing import Any

import torch

from app.training.strategies.text_to_text.encoding import decoder_prompt, render_chat

_SPACE = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Case and whitespace folded: how a generation is compared with a label or target."""
    return _SPACE.sub(" ", text).strip().casefold()


def match_label(text: str, labels: list[str]) -> str | None:
    """The label whose name the generated text is (after normalize); None when it is none of them."""
    wanted = normalize(text)
    return next((label for label in labels if normalize(label) == wanted), None)


def prompt_ids(tokenizer: Any, kind: str, prompt: str | list[dict[str, Any]], max_length: int) -> list[int]:
    """What the model reads for one input: a text, or a conversation (decoders with chat rows) whose last
    turn the assistant answers; a conversation longer than max_length loses its oldest tokens, never the
    assistant's cue at its end."""
    if isinstance(prompt, list):
        text, _ = render_chat(tokenizer, prompt, add_generation_prompt=True)
        return tokenizer(text, add_special_tokens=False)["input_ids"][-max_length:]
    if kind == "seq2seq":
        ids = tokenizer(prompt, truncation=True, max_length=max_length)["input_ids"]
        eos = tokenizer.eos_token_id
        return ids if eos is None or (ids and ids[-1] == eos) else ids[:max_length - 1] + [eos]
    return decoder_prompt(tokenizer, prompt, max_length)


def generate(model: Any, tokenizer: Any, kind: str, prompts: list, max_length: int, max_new_tokens: int,
             batch_size: int = 16) -> list[str]:
    """Greedy continuations of `prompts` (texts or conversations), special tokens and the prompt removed."""
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    was_training = model.training
    model.eval()
    out: list[str] = []
    with torch.no_grad():
        for start in range(0, len(prompts), batch_size):
            rows = [prompt_ids(tokenizer, kind, p, max_length) for p in prompts[start:start + batch_size]]
            width = max(len(r) for r in rows)
            left = kind != "seq2seq"  # a decoder continues where every row's prompt ends
            ids = [[pad] * (width - len(r)) + r if left else r + [pad] * (width - len(r)) for r in rows]
            mask = [[0] * (width - len(r)) + [1] * len(r) if left else [1] * len(r) + [0] * (width - len(r))
                    for r in rows]
            generated = model.generate(input_ids=torch.tensor(ids, device=device),
                                       attention_mask=torch.tensor(mask, device=device), do_sample=False,
                                       num_beams=1, max_new_tokens=max_new_tokens, pad_token_id=pad,
                                       eos_token_id=tokenizer.eos_token_id)
            new = generated[:, width:] if left else generated
            out += [tokenizer.decode(_until_eos(row.tolist(), tokenizer.eos_token_id), skip_special_tokens=True).strip()
                    for row in new]
    model.train(was_training)
    return out


def _until_eos(ids: list[int], eos: int | None) -> list[int]:
    return ids[:ids.index(eos)] if eos is not None and eos in ids else ids
