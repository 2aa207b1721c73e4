"""Rows a generative LM trains on: token ids and labels with the loss masked (-100) where nothing is learned.

- seq2seq (T5): the encoder reads the input, the decoder's labels are the target + EOS (Raffel et al. 2020).
- decoder: input + EOS + target + EOS in one sequence; only the target and its EOS are labelled, so the
  model learns to answer, not to echo the prompt.
- chat (decoder): the conversation rendered with the tokenizer's chat template when it has one, else
  PLAIN_TEMPLATE; only assistant turns (weight 1) are labelled, found by character spans mapped to tokens.
Classification rows arrive here as input -> the label's name (`pairs_of`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from app.training.data import CHAT, Example

IGNORED = -100


@dataclass(frozen=True)
class Pair:
    input: str
    target: str


def pairs_of(examples: list[Example], task: str) -> list[Pair]:
    """(input, target) per text-to-text or classification row (its label's name as the target)."""
    return [Pair(e.text, str(e.label)) for e in examples] if task != CHAT else []


def ensure_pad(tokenizer: Any) -> Any:
    """Decoders such as GPT-2 ship no pad token: padding reuses EOS (masked out by the attention mask)."""
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _ids(tokenizer: Any, text: str, limit: int) -> list[int]:
    return tokenizer(text, add_special_tokens=False, truncation=True, max_length=max(1, limit))["input_ids"]


def _with_eos(ids: list[int], eos: int | None, limit: int) -> list[int]:
    ids = ids[:max(0, limit - 1)] if eos is not None else ids[:limit]
    return ids + [eos] if eos is not None else ids


def encode_seq2seq(tokenizer: Any, pair: Pair, max_length: int, max_target: int) -> dict[str, list[int]]:
    source = tokenizer(pair.input, truncation=True, max_length=max_length)["input_ids"]
    if tokenizer.eos_token_id is not None and (not source or source[-1] != tokenizer.eos_token_id):
        source = source[:max_length - 1] + [tokenizer.eos_token_id]
    target = _with_eos(_ids(tokenizer, pair.target, max_target), tokenizer.eos_token_id, max_target)
    return {"input_ids": source, "attention_mask": [1] * len(source), "labels": target}


def decoder_prompt(tokenizer: Any, text: str, max_length: int) -> list[int]:
    """What a decoder reads before it answers: the input (its BOS, if the tokenizer adds one) then EOS."""
    ids = tokenizer(text, truncation=True, max_length=max(1, max_length - 1))["input_ids"]
    return ids + ([tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [])


def encode_decoder(tokenizer: Any, pair: Pair, max_length: int, max_target: int) -> dict[str, list[int]]:
    """input + EOS + target + EOS; the prompt is cut first so the target keeps its tokens."""
    limit = min(max_target, max_length - 1)
    target = _with_eos(_ids(tokenizer, pair.target, limit), tokenizer.eos_token_id, limit)
    prompt = decoder_prompt(tokenizer, pair.input, max_length - len(target))
    ids = prompt + target
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": [IGNORED] * len(prompt) + target}


PLAIN_TEMPLATE = "{role}: {content}\n"  # per message, when the tokenizer has no chat template (roles capitalised)
PLAIN_ROLES = {"system": "System", "user": "User", "assistant": "Assistant"}


def render_chat(tokenizer: Any, messages: list[dict[str, Any]],
                add_generation_prompt: bool = False) -> tuple[str, list[tuple[int, int]]]:
    """The conversation as text, and the character spans the loss covers (assistant turns of weight 1,
    each with the end-of-turn text the template puts after it, so the model learns to stop)."""
    plain = [{"role": m["role"], "content": m["content"]} for m in messages]
    if getattr(tokenizer, "chat_template", None):
        return _render_template(tokenizer, plain, messages, add_generation_prompt)
    eos = tokenizer.eos_token or ""
    text, spans = "", []
    for message in messages:
        if message["role"] == "assistant":
            text += f"{PLAIN_ROLES['assistant']}: "
            start = len(text)
            text += f"{message['content']}{eos}\n"
            if message.get("weight", 1):
                spans.append((start, len(text) - 1))
        else:
            text += PLAIN_TEMPLATE.format(role=PLAIN_ROLES[message["role"]], content=message["content"])
    if add_generation_prompt:
        text += f"{PLAIN_ROLES['assistant']}: "
    return text, spans


def _render_template(tokenizer: Any, plain: list[dict[str, str]], messages: list[dict[str, Any]],
                     add_generation_prompt: bool) -> tuple[str, list[tuple[int, int]]]:
    """Each assistant turn's span: from the end of the conversation before it (with the generation prompt)
    to the end of the conversation through it, both rendered by the template."""
    render = lambda upto, prompt: tokenizer.apply_chat_template(  # noqa: E731
        plain[:upto], tokenize=False, add_generation_prompt=prompt)
    text = render(len(plain), add_generation_prompt)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] == "assistant" and message.get("weight", 1):
            before, through = render(i, True), render(i + 1, False)
            if not text.startswith(through) or not through.startswith(before):
                raise ValueError("the tokenizer's chat template does not render a conversation as the prefix of a "
                                 "longer one, so assistant turns cannot be located")
            spans.append((len(before), len(through)))
    return text, spans


def encode_chat(tokenizer: Any, messages: list[dict[str, Any]], max_length: int) -> dict[str, list[int]]:
    """Token ids of the rendered conversation; labels only on tokens inside an assistant span."""
    text, spans = render_chat(tokenizer, messages)
    encoded = tokenizer(text, add_special_tokens=False, truncation=True, max_length=max_length,
                        return_offsets_mapping=True)
    ids = encoded["input_ids"]
    labels = [token if any(start <= a and b <= end for start, end in spans) and b > a else IGNORED
              for token, (a, b) in zip(ids, encoded["offset_mapping"], strict=True)]
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


@dataclass
class GenRows:
    """Encoded rows; `batch` pads inputs with the pad id (left-aligned) and labels with IGNORED."""

    features: list[dict[str, list[int]]]
    pad_id: int

    def __len__(self) -> int:
        return len(self.features)

    def batch(self, indices: list[int], device: torch.device) -> dict[str, torch.Tensor]:
        rows = [self.features[i] for i in indices]
        out = {}
        for key, pad in (("input_ids", self.pad_id), ("attention_mask", 0), ("labels", IGNORED)):
            width = max(len(r[key]) for r in rows)
            out[key] = torch.tensor([r[key] + [pad] * (width - len(r[key])) for r in rows], device=device)
        return out


def encode_rows(tokenizer: Any, kind: str, task: str, examples: list[Example], max_length: int,
                max_target: int) -> GenRows:
    if task == CHAT:
        features = [encode_chat(tokenizer, e.label, max_length) for e in examples]
    else:
        encode = encode_seq2seq if kind == "seq2seq" else encode_decoder
        features = [encode(tokenizer, pair, max_length, max_target) for pair in pairs_of(examples, task)]
    return GenRows(features, tokenizer.pad_token_id)
