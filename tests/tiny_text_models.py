"""Tiny random seq2seq (T5) and decoder (GPT-2, Llama) models with a word-level tokenizer, offline.

The tokenizer is a `tokenizers` WordLevel model over tests.tiny_models' vocabulary (plus the label names
of its classification rows), wrapped in PreTrainedTokenizerFast and saved beside the weights, so
AutoTokenizer loads it from the same directory like any hub checkpoint.
"""
from __future__ import annotations

from pathlib import Path

from tests.tiny_models import VOCAB

SPECIALS = ["<pad>", "</s>", "<unk>"]  # ids 0, 1, 2: T5's own pad / eos / unk ids
EXTRA_WORDS = ["pos", "neg", "neu", "System", "User", "Assistant", "<|system|>", "<|user|>", "<|assistant|>"]


def make_word_tokenizer(path: Path, chat_template: str | None = None):
    """Whitespace-split words; decoding joins them with spaces. Returns the saved tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = [w for w in VOCAB if not w.startswith("[")]
    vocab = list(dict.fromkeys([*SPECIALS, *EXTRA_WORDS, *words]))
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece(prefix="##")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>",
                                        eos_token="</s>")
    if chat_template:
        tokenizer.chat_template = chat_template
    path.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(path)
    return tokenizer


def make_tiny_t5(path: Path, seed: int = 0, d_model: int = 32) -> Path:
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    tokenizer = make_word_tokenizer(path)
    config = T5Config(vocab_size=len(tokenizer), d_model=d_model, d_kv=8, d_ff=2 * d_model, num_layers=2,
                      num_heads=2, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
                      architectures=["T5ForConditionalGeneration"])
    torch.manual_seed(seed)
    T5ForConditionalGeneration(config).save_pretrained(path)
    return path


def make_tiny_gpt2(path: Path, seed: int = 0, chat_template: str | None = None) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = make_word_tokenizer(path, chat_template)
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=128,
                        bos_token_id=1, eos_token_id=1, pad_token_id=0, initializer_range=0.5,
                        architectures=["GPT2LMHeadModel"])
    torch.manual_seed(seed)
    GPT2LMHeadModel(config).save_pretrained(path)
    return path


def make_tiny_llama(path: Path, seed: int = 0) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = make_word_tokenizer(path)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
                         bos_token_id=1, eos_token_id=1, pad_token_id=0, initializer_range=0.5,
                         architectures=["LlamaForCausalLM"])
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(path)
    return path


# A tiny mapping a model must learn to generate: each input's signal word decides the target word.
SIGNALS = {"good": "happy", "bad": "sad", "table": "chair"}


def make_mapping_rows(n: int, seed: int = 0) -> list[dict]:
    """{"input", "target"} rows: a signal word then filler words; the target is the signal's partner."""
    import random

    from tests.tiny_models import FILLER

    rng = random.Random(seed)
    signals = list(SIGNALS)
    rows = []
    for i in range(n):
        signal = signals[i % len(signals)]
        words = [signal, *rng.sample(FILLER, 3)]
        rows.append({"input": " ".join(words), "target": SIGNALS[signal]})
    return rows
