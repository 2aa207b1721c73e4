"""Masked-language-model masking shared by the MLM strategies (DAPT/TAPT, TLM).

What is masked, and how, follows four papers:

- Devlin et al. 2019, BERT: corrupt 15% of tokens; of those, 80% become [MASK], 10% a random token,
  10% stay as they are (`replacement="bert_80_10_10"`).
- Wettig et al. 2023 (EACL; arXiv 2022), "Should You Mask 15% in Masked Language Modeling?": 40%
  works better than 15% for large models, and §5 decouples the corruption rate m_corr (inputs
  changed) from the prediction rate m_pred (positions with a loss). m_pred < m_corr: the loss is
  on a random m_pred/m_corr share of the corrupted tokens. m_pred > m_corr: on every corrupted
  token plus uncorrupted ones, predicted from their own unchanged input, up to m_pred in total.
- Joshi et al. 2020, SpanBERT: corrupt contiguous spans of whole words whose length follows
  Geometric(p=0.2) truncated (renormalised) at 10 words, mean 3.8.
- Levine et al. 2021 (ICLR), "PMI-Masking": corrupt collocations (high-PMI word n-grams) as one
  unit. Score (their PMI_n): log p(w1..wn) − max over segmentations of w1..wn into ≥2 contiguous
  parts of Σ log p(part), i.e. the n-gram's PMI against its *most likely* decomposition, with
  p(s) = count(s) / number of |s|-gram positions in the corpus. Only n-grams seen at least
  `min_count` times, made of words with a letter or digit, and with a positive score are kept.

Budget: each sequence gets m_corr × (its maskable tokens). Units (token, word, span, n-gram) are
drawn in random order and taken while they fit; the first one that does not fit is taken with
probability (room left)/(its length) and drawing stops, so the expected corrupted count equals the
budget exactly and whole words are never split. Maskable = attended and not a special token
(special tokens include [UNK] and [MASK] themselves).

torch is imported inside functions only: the API validates `MaskingSettings` without it.
"""
from app.training.masking.collator import MlmCollator
from app.training.masking.masker import MaskPositions, MlmMasker
from app.training.masking.pmi import PmiNgram, PmiVocabulary, build_pmi_vocabulary
from app.training.masking.settings import IGNORE_INDEX, MaskingSettings

__all__ = ["IGNORE_INDEX", "MaskPositions", "MaskingSettings", "MlmCollator", "MlmMasker", "PmiNgram", "PmiVocabulary",
           "build_pmi_vocabulary"]
