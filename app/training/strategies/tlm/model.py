"""The model TLM trains (Yao et al. 2022): a randomly initialised encoder of the preset's size in the job's
model's architecture family, with a classification head (the artifact) and a masked-LM head (training
only) on the same encoder; and the tokenizer it reads, the base's or one trained for the job."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from app.training.tasks.base import label_kwargs
from app.training.base import TrainingError
from app.training.masking import IGNORE_INDEX
from app.training.mlm import PredictedPositionsOnly
from app.training.strategies.tlm.config import EncoderShape

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_tokenizer(texts: Iterable[str], vocab_size: int, output_dir: Path) -> Any:
    """A BERT-style WordPiece tokenizer (lower-cased, [CLS] … [SEP]) trained on `texts`, saved to `output_dir`."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                       special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=512)
    fast.save_pretrained(output_dir)
    return fast


def base_tokenizer(base_path: Path) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_path)
    if tokenizer.mask_token_id is None:
        raise TrainingError("This base model's tokenizer has no mask token, so TLM cannot train its masked-LM "
                            'objective with it; choose an encoder such as minilm-l6, or tokenizer: "train".',
                            code="invalid_base_model", param="model")
    return tokenizer


def encoder_config(base_path: Path, shape: EncoderShape, tokenizer: Any, labels: list) -> Any:
    """The base's config at the preset's size, for the tokenizer's vocabulary and the task's labels."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(base_path)
    sizes = shape.model_dump()
    missing = [name for name in sizes if not hasattr(config, name)]
    if missing:
        raise TrainingError(f"TLM sizes the encoder by {', '.join(sizes)}, and {config.model_type} configs lack "
                            f"{', '.join(missing)}; choose a BERT-style base model (e.g. minilm-l6).",
                            code="invalid_base_model", param="model")
    for name, value in sizes.items():
        setattr(config, name, value)
    config.vocab_size = len(tokenizer)
    config.pad_token_id = tokenizer.pad_token_id
    config.architectures = None
    for name, value in label_kwargs(labels).items():
        setattr(config, name, value)
    return config


class TlmModel(torch.nn.Module):
    """Stage 1's objective, as the authors' model.py computes it: an internal batch (task labels in `labels`,
    its inputs masked, the masked tokens in `mlm_labels`) runs the encoder once and scores
    (rho2·MLM + task) / (rho2 + 1), the task head reading the masked input; an external batch (no `labels`)
    scores MLM alone. The MLM head runs on predicted positions only, over the encoder output the classifier
    computed (captured by a forward hook), so an internal batch costs one encoder pass, as the FLOPs count."""

    def __init__(self, classifier: torch.nn.Module, mlm: PredictedPositionsOnly, rho2: float):
        super().__init__()
        self.classifier, self.mlm, self.rho2 = classifier, mlm, rho2
        if mlm.head is None:
            raise TrainingError(f"TLM needs an MLM head that is one module on the encoder; "
                                f"{classifier.config.model_type} has none; choose a BERT-style base model.",
                                code="invalid_base_model", param="model")
        self._hidden: list[torch.Tensor] = []
        encoder = getattr(classifier, classifier.base_model_prefix)
        encoder.register_forward_hook(lambda module, args, out: self._hidden.append(out[0]))

    def forward(self, mlm_labels: torch.Tensor | None = None, **batch: torch.Tensor) -> Any:
        self._hidden.clear()
        if "labels" not in batch:  # external: MLM only
            return self.mlm(labels=mlm_labels, **batch)
        out = self.classifier(**batch)
        if mlm_labels is not None and self.rho2 > 0:
            where = mlm_labels != IGNORE_INDEX
            logits = self.mlm.head(self._hidden[-1][where])
            mlm_loss = torch.nn.functional.cross_entropy(logits.float(), mlm_labels[where]) if where.any() \
                else logits.sum() * 0.0
            out.loss = (self.rho2 * mlm_loss + out.loss) / (self.rho2 + 1)
        self._hidden.clear()
        return out


def build_models(config: Any, seed: int) -> tuple[torch.nn.Module, PredictedPositionsOnly]:
    """(classifier, masked-LM over the classifier's encoder), both random under `seed`; the MLM decoder is
    tied to the shared input embeddings."""
    from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification

    from app.training.engine import seed_everything

    seed_everything(seed)
    classifier = AutoModelForSequenceClassification.from_config(config)
    mlm = AutoModelForMaskedLM.from_config(config)
    setattr(mlm, mlm.base_model_prefix, getattr(classifier, classifier.base_model_prefix))
    mlm.tie_weights()
    return classifier, PredictedPositionsOnly(mlm)
