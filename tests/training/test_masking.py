"""MLM masking engine: rates, replacement shares, units and PMI vocabularies.

Statistical checks run on ≥10k maskable tokens from a tokenizer whose vocabulary splits some
words into '##' pieces (so whole-word behaviour is visible); exact rules are checked exactly.
"""
from __future__ import annotations

import functools
import itertools
import math
import random
import subprocess
import sys

import pytest
import torch
from pydantic import ValidationError
from transformers import BertTokenizerFast

from app.training.masking import (
    IGNORE_INDEX,
    MaskingSettings,
    MlmCollator,
    MlmMasker,
    PmiVocabulary,
    build_pmi_vocabulary,
)
from tests.tiny_models import COMMON, VOCAB

STEMS = ["walk", "talk", "jump", "play", "work", "quick", "slow", "kind"]
SUFFIXES = ["ing", "ed", "s", "ly", "er"]
PHRASES = ["new york", "machine learning"]  # "learning" = learn ##ing: a two-piece word inside an n-gram
UNITS = ["token", "whole_word", "span", "pmi"]


def _texts(n: int, seed: int, phrase_rate: float = 0.04) -> list[str]:
    """Random sentences of ~60-140 words; 30% are two-piece words, and the collocations in PHRASES recur."""
    rng = random.Random(seed)
    filler = [w for w in COMMON if w not in ("new", "york", "machine")]
    texts = []
    for _ in range(n):
        words = []
        for _ in range(rng.randint(60, 140)):
            roll = rng.random()
            if roll < phrase_rate:
                words.append(rng.choice(PHRASES))
            elif roll < 0.3:
                words.append(rng.choice(STEMS) + rng.choice(SUFFIXES))
            else:
                words.append(rng.choice(filler))
        texts.append(" ".join(words))
    return texts


@pytest.fixture(scope="module")
def tokenizer() -> BertTokenizerFast:
    vocab = list(dict.fromkeys(VOCAB + STEMS + [f"##{s}" for s in SUFFIXES] + ["york", "machine"]))
    return BertTokenizerFast(vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=True)


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return _texts(400, seed=0)


@pytest.fixture(scope="module")
def pmi_vocab(corpus, tokenizer) -> PmiVocabulary:
    return build_pmi_vocabulary(corpus, tokenizer=tokenizer)


def _encode(tokenizer, texts: list[str], pairs: list[str] | None = None, max_length: int = 128) -> dict:
    encoded = tokenizer(texts, pairs, truncation=True, max_length=max_length, padding=True, return_tensors="pt",
                        return_special_tokens_mask=True)
    batch = dict(encoded)
    batch["word_ids"] = [encoded.word_ids(i) for i in range(len(texts))]
    return batch


@pytest.fixture(scope="module")
def big_batch(tokenizer, corpus) -> dict:
    """160 sequences of up to 128 tokens: ~19k maskable tokens."""
    batch = _encode(tokenizer, corpus[:160])
    assert (batch["attention_mask"].bool() & ~batch["special_tokens_mask"].bool()).sum() >= 10_000
    return batch


def _masker(tokenizer, pmi_vocab=None, **settings) -> MlmMasker:
    settings.setdefault("seed", 0)
    parsed = MaskingSettings(**settings)
    return MlmMasker.from_tokenizer(tokenizer, parsed, pmi_vocab if parsed.unit == "pmi" else None)


def _run(masker: MlmMasker, batch: dict):
    """(positions, corrupted inputs, labels), with the replacement drawn right after the positions."""
    where = masker.positions(batch["input_ids"], batch["attention_mask"],
                             special_tokens_mask=batch["special_tokens_mask"], word_ids=batch["word_ids"])
    inputs, labels = masker.apply(batch["input_ids"], where)
    return where, inputs, labels


def _words(batch: dict, row: int) -> list[list[int]]:
    """Token positions of each word of a row (consecutive tokens sharing a word id, per segment)."""
    word_ids = batch["word_ids"][row]
    groups = itertools.groupby(range(len(word_ids)), key=lambda j: (j if word_ids[j] is None else None, word_ids[j]))
    return [list(positions) for (_, wid), positions in groups if wid is not None]


# ------------------------------------------------------------------------------------------------
# rates


@pytest.mark.parametrize("unit", UNITS)
@pytest.mark.parametrize("rate", [0.15, 0.40])
def test_corruption_rate_is_realised(tokenizer, big_batch, pmi_vocab, unit, rate):
    masker = _masker(tokenizer, pmi_vocab, unit=unit, mask_rate=rate, replacement="mask_only")
    inputs, labels = masker(big_batch["input_ids"], big_batch["attention_mask"],
                            special_tokens_mask=big_batch["special_tokens_mask"], word_ids=big_batch["word_ids"])
    maskable = big_batch["attention_mask"].bool() & ~big_batch["special_tokens_mask"].bool()
    corrupted = inputs == tokenizer.mask_token_id
    assert abs(corrupted[maskable].float().mean().item() - rate) <= 0.01
    assert torch.equal(labels != IGNORE_INDEX, corrupted)  # m_pred = m_corr: exactly the corrupted tokens


@pytest.mark.parametrize("unit", UNITS)
@pytest.mark.parametrize("corruption, prediction", [(0.4, 0.2), (0.2, 0.4)])
def test_decoupled_corruption_and_prediction_rates(tokenizer, big_batch, pmi_vocab, unit, corruption, prediction):
    masker = _masker(tokenizer, pmi_vocab, unit=unit, corruption_rate=corruption, prediction_rate=prediction,
                     replacement="mask_only")
    inputs, labels = masker(big_batch["input_ids"], big_batch["attention_mask"],
                            special_tokens_mask=big_batch["special_tokens_mask"], word_ids=big_batch["word_ids"])
    maskable = big_batch["attention_mask"].bool() & ~big_batch["special_tokens_mask"].bool()
    corrupted, predicted = inputs == tokenizer.mask_token_id, labels != IGNORE_INDEX
    assert abs(corrupted[maskable].float().mean().item() - corruption) <= 0.01
    assert abs(predicted[maskable].float().mean().item() - prediction) <= 0.015
    assert torch.equal(labels[predicted], big_batch["input_ids"][predicted])
    if prediction < corruption:
        assert not (predicted & ~corrupted).any(), "a predicted token was not corrupted"
    else:
        assert not (corrupted & ~predicted).any(), "a corrupted token has no loss"
        extra = predicted & ~corrupted
        assert extra.sum() > 1000
        assert torch.equal(inputs[extra], big_batch["input_ids"][extra]), "an extra predicted token was changed"


@pytest.mark.parametrize("unit", UNITS)
def test_budget_is_met_in_expectation_on_short_texts(tokenizer, pmi_vocab, unit):
    """Budgets of 1-2 tokens per sequence: only the probabilistic last unit keeps the rate unbiased."""
    batch = _encode(tokenizer, [" ".join(t.split()[:8]) for t in _texts(1500, seed=4, phrase_rate=0.2)])
    masker = _masker(tokenizer, pmi_vocab, unit=unit, mask_rate=0.15)
    where, _, _ = _run(masker, batch)
    assert where.maskable.sum() >= 10_000
    assert abs(where.corrupt.sum().item() / where.maskable.sum().item() - 0.15) <= 0.01


def test_budgets_are_per_sequence(tokenizer, big_batch):
    """Token unit: each row gets floor or ceil of rate × its maskable tokens, never a batch-level average."""
    where, _, _ = _run(_masker(tokenizer, mask_rate=0.4), big_batch)
    target = where.maskable.sum(1) * 0.4
    assert ((where.corrupt.sum(1) - target).abs() < 1).all()


# ------------------------------------------------------------------------------------------------
# replacement


def _shares(masker, batch, mask_id) -> tuple[float, float, float, torch.Tensor]:
    where, inputs, _ = _run(masker, batch)
    original = batch["input_ids"][where.corrupt]
    new = inputs[where.corrupt]
    masked = (new == mask_id).float().mean().item()
    same = (new == original).float().mean().item()
    assert not (where.corrupt.logical_not() & (inputs != batch["input_ids"])).any(), "an uncorrupted token changed"
    return masked, 1 - masked - same, same, new


@pytest.mark.parametrize("replacement, expected", [
    ({"replacement": "bert_80_10_10"}, (0.8, 0.1, 0.1)),
    ({"replacement": "mask_only"}, (1.0, 0.0, 0.0)),
    ({"replacement": "custom", "mask_fraction": 0.5, "random_fraction": 0.3, "same_fraction": 0.2}, (0.5, 0.3, 0.2)),
    ({"replacement": "custom", "random_fraction": 0.6, "same_fraction": 0.4}, (0.0, 0.6, 0.4)),
])
def test_replacement_shares(tokenizer, big_batch, replacement, expected):
    masker = _masker(tokenizer, mask_rate=0.4, **replacement)  # ~7.6k corrupted tokens
    shares = _shares(masker, big_batch, tokenizer.mask_token_id)[:3]
    for share, want in zip(shares, expected):
        assert abs(share - want) <= 0.02, (shares, expected)
    if expected == (1.0, 0.0, 0.0):
        assert shares == (1.0, 0.0, 0.0)


def test_random_replacements_are_never_special(tokenizer, big_batch):
    masker = _masker(tokenizer, mask_rate=0.95, replacement="custom", random_fraction=1.0)
    _, _, _, new = _shares(masker, big_batch, tokenizer.mask_token_id)
    assert not torch.isin(new, torch.tensor(tokenizer.all_special_ids)).any()
    assert new.min() >= 0 and new.max() < len(tokenizer)
    assert len(new.unique()) > 0.9 * (len(tokenizer) - len(tokenizer.all_special_ids))  # drawn from the whole vocab


@pytest.mark.parametrize("unit", UNITS)
def test_special_tokens_and_padding_are_never_touched(tokenizer, corpus, pmi_vocab, unit):
    texts = [t[:length] for t, length in zip(corpus[:64], itertools.cycle([20, 80, 300, 700]))]
    batch = _encode(tokenizer, texts, pairs=[t[:150] for t in corpus[64:128]])
    batch["input_ids"][0, 3] = tokenizer.unk_token_id  # an [UNK] inside the text is special too
    masker = _masker(tokenizer, pmi_vocab, unit=unit, corruption_rate=0.95, prediction_rate=0.95,
                     replacement="custom", mask_fraction=0.5, random_fraction=0.5)
    where, inputs, labels = _run(masker, batch)
    protected = ~batch["attention_mask"].bool() | batch["special_tokens_mask"].bool()
    protected |= torch.isin(batch["input_ids"], torch.tensor(tokenizer.all_special_ids))
    assert (batch["attention_mask"] == 0).any() and (batch["token_type_ids"] == 1).any()  # padding and pairs exist
    assert torch.equal(where.maskable, ~protected)
    assert torch.equal(inputs[protected], batch["input_ids"][protected])
    assert (labels[protected] == IGNORE_INDEX).all()
    assert where.corrupt[~protected].float().mean() > 0.9
    # padding known only from the attention mask (padded with a real token id, no special_tokens_mask)
    padded = batch["attention_mask"] == 0
    ids = batch["input_ids"].masked_fill(padded, tokenizer.convert_tokens_to_ids("good"))
    inputs, labels = masker(ids, batch["attention_mask"], word_ids=batch["word_ids"])
    assert torch.equal(inputs[padded], ids[padded]) and (labels[padded] == IGNORE_INDEX).all()


# ------------------------------------------------------------------------------------------------
# units


def _word_flags(batch: dict, corrupt: torch.Tensor) -> list[list[bool]]:
    """For every multi-piece word: the corrupted flag of each of its pieces."""
    rows = corrupt.tolist()
    return [[rows[row][j] for j in word] for row in range(len(rows)) for word in _words(batch, row) if len(word) > 1]


@pytest.mark.parametrize("unit", ["whole_word", "span", "pmi"])
def test_words_are_never_split(tokenizer, big_batch, pmi_vocab, unit):
    where, _, _ = _run(_masker(tokenizer, pmi_vocab, unit=unit, mask_rate=0.4), big_batch)
    words = _word_flags(big_batch, where.corrupt)
    assert all(all(flags) or not any(flags) for flags in words), "a word was split"
    assert sum(all(flags) for flags in words) > 300  # multi-piece words were actually masked


def test_token_unit_does_split_words(tokenizer, big_batch):
    """The check above has teeth: independent token masking splits words."""
    where, _, _ = _run(_masker(tokenizer, mask_rate=0.4), big_batch)
    assert sum(any(flags) and not all(flags) for flags in _word_flags(big_batch, where.corrupt)) > 100


def _truncated_geometric(p: float, longest: int) -> list[float]:
    weights = [p * (1 - p) ** (n - 1) for n in range(1, longest + 1)]
    return [w / sum(weights) for w in weights]


@pytest.mark.parametrize("longest", [10, 3])
def test_spans_are_whole_word_runs_with_geometric_lengths(tokenizer, big_batch, longest):
    settings = {"max_span_length": longest} if longest != 10 else {}
    where, _, _ = _run(_masker(tokenizer, unit="span", mask_rate=0.15, **settings), big_batch)
    lengths = []
    for row, spans in enumerate(where.units):
        rebuilt = torch.zeros_like(where.corrupt[row])
        word_of = {j: k for k, word in enumerate(_words(big_batch, row)) for j in word}
        for start, end in spans:
            assert where.maskable[row, start:end].all(), "a span crosses a special token"
            assert not rebuilt[start:end].any(), "spans overlap"
            rebuilt[start:end] = True
            n_words = word_of[end - 1] - word_of[start] + 1
            assert n_words <= longest
            lengths.append(n_words)
        assert torch.equal(rebuilt, where.corrupt[row])
    expected = _truncated_geometric(0.2, longest)
    mean, expected_mean = sum(lengths) / len(lengths), sum(n * q for n, q in enumerate(expected, 1))
    assert len(lengths) > 500
    # spans keep their drawn length; only the budget's last, probabilistic span favours short ones
    assert expected_mean - 0.3 <= mean <= expected_mean + 0.15, (mean, expected_mean)
    for n in range(1, min(longest, 3) + 1):
        assert abs(lengths.count(n) / len(lengths) - expected[n - 1]) <= 0.05


def test_span_without_word_ids_counts_tokens(tokenizer, big_batch):
    batch = {**big_batch, "word_ids": None}
    where, _, _ = _run(_masker(tokenizer, unit="span", mask_rate=0.15, max_span_length=4), batch)
    assert max(end - start for spans in where.units for start, end in spans) <= 4


# ------------------------------------------------------------------------------------------------
# PMI


def test_collocations_top_the_pmi_vocabulary(pmi_vocab):
    top = [g.words for g in pmi_vocab.ngrams[:2]]
    assert sorted(top) == [("machine", "learning"), ("new", "york")]
    assert all(g.score > 0 and g.count >= 5 and 2 <= len(g.words) <= 5 for g in pmi_vocab.ngrams)
    assert ("new", "york") in pmi_vocab and ("york", "new") not in pmi_vocab


def test_regex_words_agree_with_tokenizer_words(corpus, pmi_vocab):
    assert build_pmi_vocabulary(corpus) == pmi_vocab


def test_pmi_masks_collocations_as_one_unit(tokenizer, big_batch, pmi_vocab):
    def occurrences(batch):
        """(row, token positions) of each PHRASES occurrence, found from the words' text."""
        found = []
        for row in range(len(batch["input_ids"])):
            words = _words(batch, row)
            tokens = tokenizer.convert_ids_to_tokens(batch["input_ids"][row].tolist())
            texts = ["".join(tokens[j].removeprefix("##") for j in word) for word in words]
            for k in range(len(words) - 1):
                if f"{texts[k]} {texts[k + 1]}" in PHRASES:
                    found.append((row, words[k] + words[k + 1]))
        return found

    found = occurrences(big_batch)
    assert len(found) > 200
    where, _, _ = _run(_masker(tokenizer, pmi_vocab, unit="pmi", mask_rate=0.4), big_batch)
    whole = 0
    for row, positions in found:
        flags = where.corrupt[row, positions]
        assert flags.all() or not flags.any(), f"row {row}: collocation at {positions} split"
        if flags.all():  # one unit covers it (possibly a longer vocabulary n-gram containing it)
            whole += 1
            assert any(start <= positions[0] and positions[-1] < end for start, end in where.units[row])
    assert whole > 40
    # whole-word masking treats the two words independently, so it does split collocations
    where, _, _ = _run(_masker(tokenizer, unit="whole_word", mask_rate=0.4), big_batch)
    assert sum(0 < where.corrupt[row, positions].sum() < len(positions) for row, positions in found) > 20


def test_pmi_score_is_levine_pmi_n():
    """PMI_n = log p(w) − max over segmentations into ≥2 parts of Σ log p(part), p(s) = count / |s|-gram positions."""
    rng = random.Random(3)
    texts = [" ".join(rng.choice(["a", "b", "c", "new york city", "new", "york", "city hall"]) for _ in range(30))
             for _ in range(50)]
    vocab = build_pmi_vocabulary(texts, min_count=3, max_ngram=4, vocab_size=10**6)
    sequences = [t.split() for t in texts]

    @functools.cache
    def logp(gram):
        n = len(gram)
        count = sum(tuple(s[i:i + n]) == gram for s in sequences for i in range(len(s) - n + 1))
        return math.log(count / sum(max(0, len(s) - n + 1) for s in sequences))

    def segmentations(gram):  # every split into ≥2 contiguous parts
        for cuts in itertools.chain.from_iterable(itertools.combinations(range(1, len(gram)), k)
                                                  for k in range(1, len(gram))):
            bounds = (0, *cuts, len(gram))
            yield [gram[a:b] for a, b in itertools.pairwise(bounds)]

    scores = {g.words: g.score for g in vocab.ngrams}
    assert {("new", "york"), ("new", "york", "city"), ("city", "hall")} <= set(scores)
    assert sum(len(gram) == 4 for gram in scores) >= 3  # where a 3-part segmentation can win
    for gram, score in scores.items():
        want = logp(gram) - max(sum(logp(part) for part in seg) for seg in segmentations(gram))
        assert score == pytest.approx(want, abs=1e-9) and score > 0
    assert list(scores.values()) == sorted(scores.values(), reverse=True)


@pytest.mark.parametrize("texts, min_count", [(["new york is big"] * 3, 5), ([], 1), (["one"] * 9, 1)])
def test_too_small_corpus_raises_clear_error(texts, min_count):
    with pytest.raises(ValueError, match="corpus too small to score n-grams: found 0 n-grams with count ≥ min_count"):
        build_pmi_vocabulary(texts, min_count=min_count)


def test_only_chance_cooccurrences_raise_too():
    with pytest.raises(ValueError, match="corpus too small.*none co-occurs more often than chance"):
        build_pmi_vocabulary(["a a a a"] * 20, min_count=1)  # "a a" is exactly as likely as chance predicts


def test_pmi_vocabulary_round_trips_through_json(tokenizer, big_batch, pmi_vocab):
    loaded = PmiVocabulary.from_json(pmi_vocab.to_json())
    assert loaded == pmi_vocab and len(loaded) == len(pmi_vocab)
    outputs = [_run(_masker(tokenizer, vocab, unit="pmi", mask_rate=0.4), big_batch)[1:]
               for vocab in (pmi_vocab, loaded)]
    assert all(torch.equal(a, b) for a, b in zip(*outputs))
    unigram = pmi_vocab.to_json().replace('"words": ["new", "york"]', '"words": ["new"]')
    for bad in ["{", "[]", '{"format": "other"}', unigram]:
        with pytest.raises(ValueError, match="invalid PMI vocabulary JSON"):
            PmiVocabulary.from_json(bad)


# ------------------------------------------------------------------------------------------------
# reproducibility, errors, settings


@pytest.mark.parametrize("unit", UNITS)
def test_same_seed_same_masks(tokenizer, big_batch, pmi_vocab, unit):
    def run(seed: int):
        masker = _masker(tokenizer, pmi_vocab, unit=unit, mask_rate=0.3, prediction_rate=0.4, seed=seed)
        return masker(big_batch["input_ids"], big_batch["attention_mask"], word_ids=big_batch["word_ids"])

    first, again, other = run(7), run(7), run(8)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], other[0]) and not torch.equal(first[1], other[1])


def test_masker_errors_are_actionable(tokenizer, big_batch, pmi_vocab):
    with pytest.raises(ValueError, match="needs word ids"):
        _masker(tokenizer, unit="whole_word")(big_batch["input_ids"], big_batch["attention_mask"])
    with pytest.raises(ValueError, match="build_pmi_vocabulary"):
        MlmMasker.from_tokenizer(tokenizer, MaskingSettings(unit="pmi"))
    with pytest.raises(ValueError, match="set unit='pmi'"):
        MlmMasker.from_tokenizer(tokenizer, MaskingSettings(), pmi_vocab)
    with pytest.raises(ValueError, match="pad each row's word ids with None"):
        _masker(tokenizer, unit="whole_word")(big_batch["input_ids"], word_ids=[w[:-1] for w in big_batch["word_ids"]])


@pytest.mark.parametrize("settings, field", [
    ({"mask_rate": 0}, "mask_rate"),
    ({"mask_rate": 0.96}, "mask_rate"),
    ({"mask_rate": -0.1}, "mask_rate"),
    ({"mask_rate": float("nan")}, "mask_rate"),
    ({"corruption_rate": 0}, "corruption_rate"),
    ({"corruption_rate": 1.0}, "corruption_rate"),
    ({"prediction_rate": 0}, "prediction_rate"),
    ({"prediction_rate": 2}, "prediction_rate"),
    ({"mask_rate": 0.3, "corruption_rate": 0.4, "prediction_rate": 0.2}, "mask_rate"),
    ({"replacement": "bert"}, "replacement"),
    ({"replacement": "custom"}, "mask_fraction"),
    ({"replacement": "custom", "mask_fraction": 0.5, "random_fraction": 0.4}, "mask_fraction"),
    ({"replacement": "custom", "mask_fraction": 0.7, "random_fraction": 0.7, "same_fraction": -0.4}, "same_fraction"),
    ({"replacement": "custom", "mask_fraction": 1.5}, "mask_fraction"),
    ({"replacement": "custom", "same_fraction": 1.0}, "same_fraction"),
    ({"mask_fraction": 1.0}, "mask_fraction"),
    ({"unit": "sentence"}, "unit"),
    ({"unit": "span", "max_span_length": 0}, "max_span_length"),
    ({"unit": "span", "max_span_length": 65}, "max_span_length"),
    ({"unit": "span", "span_geometric_p": 0}, "span_geometric_p"),
    ({"max_span_length": 5}, "max_span_length"),
    ({"unit": "pmi", "pmi_max_ngram": 1}, "pmi_max_ngram"),
    ({"unit": "pmi", "pmi_min_count": 0}, "pmi_min_count"),
    ({"unit": "pmi", "pmi_vocab_size": 0}, "pmi_vocab_size"),
    ({"pmi_vocab_size": 50}, "pmi_vocab_size"),
    ({"seed": -1}, "seed"),
    ({"mask_ratio": 0.2}, "mask_ratio"),
])
def test_impossible_settings_rejected(settings, field):
    with pytest.raises(ValidationError) as info:
        MaskingSettings.model_validate(settings)
    named = [error for error in info.value.errors()
             if field in {str(part) for part in error["loc"]} or field in error["msg"]]
    assert named, info.value.errors()


def test_settings_resolve_and_survive_a_dump():
    settings = MaskingSettings(mask_rate=0.4, prediction_rate=0.2, unit="span", max_span_length=5,
                               replacement="custom", mask_fraction=0.9, same_fraction=0.1)
    assert (settings.effective_corruption_rate, settings.effective_prediction_rate) == (0.4, 0.2)
    assert settings.replacement_fractions == (0.9, 0.0, 0.1)
    assert MaskingSettings().replacement_fractions == (0.8, 0.1, 0.1)
    assert MaskingSettings.model_validate(settings.model_dump()) == settings
    both = MaskingSettings(corruption_rate=0.3, prediction_rate=0.1)
    assert MaskingSettings.model_validate(both.model_dump()) == both


def test_every_settings_field_has_help_text():
    for name, info in MaskingSettings.model_fields.items():
        assert info.description, f"MaskingSettings.{name} has no description"


def test_importing_masking_settings_does_not_import_torch():
    code = ("import sys; from app.training.masking import MaskingSettings, PmiVocabulary, build_pmi_vocabulary; "
            "MaskingSettings(unit='span'); build_pmi_vocabulary(['new york'] * 5); "
            "bad = [m for m in ('torch', 'transformers', 'numpy') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------------------------------
# collator


def test_collator_tokenizes_texts_and_pairs_for_a_dataloader(tokenizer, corpus):
    collator = MlmCollator(tokenizer, MaskingSettings(unit="whole_word", mask_rate=0.4, seed=1), max_length=32,
                           pad_to_multiple_of=8)
    rows = [{"text": t[:length], "text_pair": t[-40:]} for t, length in zip(corpus[:8], [30, 300] * 4)]
    batches = list(torch.utils.data.DataLoader(rows, batch_size=4, collate_fn=collator))
    assert len(batches) == 2
    batch = batches[0]
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "labels"}
    assert batch["input_ids"].shape == batch["labels"].shape and batch["input_ids"].shape[1] == 32
    assert (batch["labels"][batch["attention_mask"] == 0] == IGNORE_INDEX).all()
    assert (batch["input_ids"] == tokenizer.mask_token_id).any() and (batch["token_type_ids"] == 1).any()
    strings = collator([t[:100] for t in corpus[:3]])
    assert strings["input_ids"].shape[0] == 3 and "token_type_ids" in strings
    with pytest.raises(ValueError, match="mixes raw texts and pre-tokenized rows"):
        collator(["a text", {"input_ids": [2, 3]}])


def test_collator_pads_pretokenized_rows_like_the_loop(tokenizer, corpus):
    encoded = tokenizer(corpus[:4], truncation=True, max_length=24)
    rows = [{"input_ids": encoded["input_ids"][i], "token_type_ids": encoded["token_type_ids"][i],
             "word_ids": encoded.word_ids(i)} for i in range(4)]
    rows[1] = {**rows[1], "input_ids": rows[1]["input_ids"][:10], "token_type_ids": rows[1]["token_type_ids"][:10],
               "word_ids": rows[1]["word_ids"][:9] + [None]}
    rows[1]["input_ids"][-1] = tokenizer.sep_token_id
    collator = MlmCollator(tokenizer, MaskingSettings(unit="whole_word", mask_rate=0.5, replacement="mask_only"))
    batch = collator(rows)
    assert batch["input_ids"].shape == (4, 24)
    assert batch["attention_mask"][1].tolist() == [1] * 10 + [0] * 14
    assert (batch["input_ids"][1, 10:] == tokenizer.pad_token_id).all()
    assert (batch["labels"][1, 9:] == IGNORE_INDEX).all()  # [SEP] and padding
    assert ((batch["input_ids"] == tokenizer.mask_token_id) == (batch["labels"] != IGNORE_INDEX)).all()


def test_collator_output_trains_a_masked_lm(tiny_model_dir, corpus):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForMaskedLM.from_pretrained(tiny_model_dir)
    collator = MlmCollator(tokenizer, MaskingSettings(unit="span", mask_rate=0.4, seed=0), max_length=64)
    loss = model(**collator([{"text": t} for t in corpus[:4]])).loss
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()


def test_dataloader_workers_do_not_repeat_masks(tokenizer, corpus):
    collator = MlmCollator(tokenizer, MaskingSettings(mask_rate=0.4, seed=5), max_length=32)
    rows = [corpus[0]] * 8  # identical batches: only the randomness can differ
    loader = torch.utils.data.DataLoader(rows, batch_size=4, collate_fn=collator, num_workers=2,
                                         generator=torch.Generator().manual_seed(0))
    first, second = [batch["input_ids"] for batch in loader]
    assert not torch.equal(first, second)
    again = [batch["input_ids"] for batch in torch.utils.data.DataLoader(
        rows, batch_size=4, collate_fn=collator, num_workers=2, generator=torch.Generator().manual_seed(0))]
    assert torch.equal(first, again[0]) and torch.equal(second, again[1])  # still reproducible
