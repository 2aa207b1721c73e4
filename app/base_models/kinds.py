"""What kind of model a registered directory holds, read from its config.json without torch.

encoder  - BERT-style bidirectional encoders: classifiers, cloze, every PEFT method of the catalogue;
seq2seq  - encoder-decoder LMs (T5 family, BART): text_to_text (Raffel et al. 2020);
decoder  - causal LMs (GPT-2, Llama family): text_to_text and OpenAI chat files.
Which methods accept which kinds: `StrategySpec.base_model_kinds`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

Kind = Literal["encoder", "seq2seq", "decoder"]
KINDS: tuple[Kind, ...] = ("encoder", "seq2seq", "decoder")

SEQ2SEQ_TYPES = frozenset({"t5", "mt5", "umt5", "longt5", "bart", "mbart", "pegasus", "marian", "m2m_100",
                           "led", "blenderbot", "prophetnet", "switch_transformers", "t5gemma"})
DECODER_TYPES = frozenset({"gpt2", "gpt_neo", "gpt_neox", "gptj", "llama", "mistral", "mixtral", "qwen2", "qwen3",
                           "phi", "phi3", "gemma", "gemma2", "gemma3_text", "opt", "bloom", "falcon", "olmo",
                           "olmo2", "stablelm", "starcoder2", "codegen", "smollm3"})
DECODER_HEADS = ("ForCausalLM", "LMHeadModel")
# a task job's materialized encoder is the private base `encoder:<job id>` (app.training.lineage)
ENCODER_PREFIX = "encoder:"
# files from which AutoTokenizer builds a tokenizer (a fast tokenizer's JSON, or a slow one's vocabulary)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model",
                   "tokenizer.model", "sentencepiece.bpe.model")


class ModelDirError(ValueError):
    """A directory that cannot be registered; the message is one line saying what to change."""


def model_kind(config: dict[str, Any]) -> Kind:
    """seq2seq when the config says is_encoder_decoder (or a T5/BART-family model_type), decoder for a
    causal-LM architecture or model_type, encoder otherwise."""
    model_type = str(config.get("model_type", ""))
    architectures = [str(a) for a in config.get("architectures") or []]
    if config.get("is_encoder_decoder") or model_type in SEQ2SEQ_TYPES:
        return "seq2seq"
    if model_type in DECODER_TYPES or any(a.endswith(DECODER_HEADS) and not a.startswith(("Bert", "Roberta"))
                                          for a in architectures):
        return "decoder"
    return "encoder"


def read_config(path: Path) -> dict[str, Any]:
    """config.json of a model directory; remote-code configs refused (transformers would run their code)."""
    try:
        config = json.loads((path / "config.json").read_text())
    except FileNotFoundError:
        raise ModelDirError(f"{path} is not a model directory (no config.json); give a save_pretrained "
                            "directory.") from None
    except (OSError, ValueError) as exc:
        raise ModelDirError(f"{path}/config.json is unreadable ({exc}); save the model again.") from None
    if not isinstance(config, dict):
        raise ModelDirError(f"{path}/config.json is not a JSON object; save the model again.")
    if config.get("trust_remote_code") or config.get("auto_map"):
        raise ModelDirError(f"{path} needs trust_remote_code (its config.json has auto_map: custom model code), "
                            "which tuneforge never runs; register a model whose architecture transformers ships.")
    return config


def check_tokenizer(path: Path) -> None:
    """A registered model must bring its tokenizer: jobs and predictions load it from the same directory."""
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise ModelDirError(f"{path} has no tokenizer (none of {', '.join(TOKENIZER_FILES[:5])}, …); save it "
                            "there too: tokenizer.save_pretrained(path).")
    config = path / "tokenizer_config.json"
    if config.is_file():
        try:
            auto_map = json.loads(config.read_text()).get("auto_map")
        except (OSError, ValueError, AttributeError):
            raise ModelDirError(f"{config} is unreadable; save the tokenizer again.") from None
        if auto_map:
            raise ModelDirError(f"{path}'s tokenizer needs trust_remote_code (tokenizer_config.json has auto_map), "
                                "which tuneforge never runs; save a tokenizer transformers ships.")


def describe_kinds(kinds: tuple[str, ...]) -> str:
    """"seq2seq or decoder" for messages."""
    return " or ".join(kinds)
