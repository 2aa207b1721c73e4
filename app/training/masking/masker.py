"""MlmMasker: which positions to corrupt and predict, and the corruption itself (torch)."""
from __future__ import annotations

import array
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.training.masking.pmi import PmiVocabulary, WordDecoder
from app.training.masking.settings import IGNORE_INDEX, MaskingSettings

if TYPE_CHECKING:
    import torch


@dataclass
class MaskPositions:
    """Where a batch is corrupted and predicted, before replacement (tensors are (batch, length) bool).

    `units[i]` lists sequence i's corrupted units (word, span or n-gram) as token ranges
    [start, end) in position order; None for unit='token'.
    """

    maskable: torch.Tensor
    corrupt: torch.Tensor
    predict: torch.Tensor
    units: list[list[tuple[int, int]]] | None = None


def _rand(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """U[0,1) drawn on the generator's device (so CPU seeds reproduce anywhere), moved to `device`."""
    import torch

    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def _stochastic_round(values: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """floor(v + U[0,1)): integers whose expectation is exactly v."""
    import torch

    return torch.floor(values + _rand(tuple(values.shape), generator, values.device)).long()


def _choose(mask: torch.Tensor, k: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Exactly min(k[i], mask[i].sum()) positions of row i, uniformly among those where mask is set."""
    import torch

    order = _rand(tuple(mask.shape), generator, mask.device).masked_fill(~mask, 2.0).argsort(dim=1)
    position = torch.arange(mask.shape[1], device=mask.device).expand_as(order)
    rank = torch.empty_like(order).scatter_(1, order, position)
    return (rank < k.unsqueeze(1)) & mask


def _word_bounds(maskable: torch.Tensor,
                 word_ids: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(first token of a word, last token of a word, first token of a segment) flags.

    A word is a maximal run of consecutive maskable tokens sharing a word id (each token is its
    own word without word ids, or where its id is negative). A segment is a run of consecutive
    maskable tokens: it ends at any special token (e.g. [SEP] of a text pair), so units never
    cross segments even though word ids restart there.
    """
    import torch

    rows, width = maskable.shape
    own = -1 - torch.arange(width, device=maskable.device).expand(rows, width)
    wid = own if word_ids is None else torch.where(word_ids >= 0, word_ids, own)
    off = torch.zeros(rows, 1, dtype=torch.bool, device=maskable.device)
    before, after = torch.cat([off, maskable[:, :-1]], 1), torch.cat([maskable[:, 1:], off], 1)
    same_before = torch.cat([off, wid[:, 1:] == wid[:, :-1]], 1)
    same_after = torch.cat([wid[:, :-1] == wid[:, 1:], off], 1)
    return maskable & ~(before & same_before), maskable & ~(after & same_after), maskable & ~before


def _row_lists(flags: torch.Tensor, shift: int = 0) -> list[list[int]]:
    """Column indices (+ shift) of the set flags, one list per row."""
    columns = (flags.nonzero()[:, 1] + shift).tolist()
    out, k = [], 0
    for n in flags.sum(1).tolist():
        out.append(columns[k:k + n])
        k += n
    return out


def _take_units(maskable: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor, budget: torch.Tensor,
                generator: torch.Generator) -> torch.Tensor:
    """Corrupt whole units (contiguous, flagged by first/last token) in random order until each row's
    token budget; the first unit that does not fit is taken with probability room/length and
    drawing stops, so E[corrupted tokens] = budget. Vectorised.

    Tokens are sorted by their unit's random priority (stable, so a unit's tokens stay together);
    a running count then gives, for each unit, the tokens drawn before it.
    """
    import torch

    rows, width = maskable.shape
    position = torch.arange(width, device=maskable.device).expand(rows, width)
    first = torch.where(starts, position, 0).cummax(1).values  # each token's unit start
    last = torch.where(ends, position + 1, width).flip(1).cummin(1).values.flip(1)  # its unit end
    priority = _rand((rows, width), generator, maskable.device).gather(1, first).masked_fill(~maskable, 2.0)
    accept = _rand((rows, 1), generator, maskable.device)
    order = priority.sort(dim=1, stable=True).indices
    drawn_before = maskable.gather(1, order).cumsum(1) - 1 - (position - first).gather(1, order)
    length = (last - first).gather(1, order)
    room = budget.unsqueeze(1) - drawn_before
    take = (length <= room) | ((room > 0) & (accept * length < room))
    return torch.zeros_like(maskable).scatter(1, order, take & maskable.gather(1, order))


def _ranges_mask(ranges: list[list[tuple[int, int]]], shape: torch.Size) -> torch.Tensor:
    """Bool mask of per-row token ranges [start, end), via a difference array (no per-token Python)."""
    import torch

    width = shape[1]
    starts = [i * width + s for i, row in enumerate(ranges) for s, _ in row]
    ends = [i * width + e for i, row in enumerate(ranges) for _, e in row]
    delta = torch.zeros(shape[0] * width + 1, dtype=torch.int32)
    delta.index_add_(0, torch.tensor(starts, dtype=torch.long), torch.ones(len(starts), dtype=torch.int32))
    delta.index_add_(0, torch.tensor(ends, dtype=torch.long), torch.full((len(ends),), -1, dtype=torch.int32))
    return (delta.cumsum(0)[:-1] > 0).view(shape)


class MlmMasker:
    """Chooses corrupted/predicted positions and replaces tokens, per `MaskingSettings`.

    Call it on a tokenized batch: `inputs, labels = masker(input_ids, attention_mask, ...)`;
    labels hold the original id where a loss is computed and -100 elsewhere. Randomness comes from
    the masker's generator (seeded by settings.seed) unless one is passed per call.
    """

    def __init__(self, settings: MaskingSettings, *, mask_token_id: int, vocab_size: int,
                 special_token_ids: Iterable[int], pmi_vocab: PmiVocabulary | None = None,
                 decode: Callable[[list[int]], str] | None = None, generator: torch.Generator | None = None):
        import torch

        self.settings = settings
        self.mask_token_id = mask_token_id
        special = set(special_token_ids) | {mask_token_id}
        self.special_ids = torch.tensor(sorted(special), dtype=torch.long)
        self.random_ids = torch.tensor([i for i in range(vocab_size) if i not in special], dtype=torch.long)
        self.fractions = settings.replacement_fractions
        if self.fractions[1] > 0 and len(self.random_ids) == 0:
            raise ValueError("random replacement needs at least one non-special token id in the vocabulary")
        if settings.unit == "pmi":
            if pmi_vocab is None or decode is None:
                raise ValueError("unit='pmi' needs a PMI vocabulary and a word decoder: build the vocabulary with "
                                 "build_pmi_vocabulary(texts, tokenizer=tokenizer) and use MlmMasker.from_tokenizer")
        elif pmi_vocab is not None:
            raise ValueError(f"a PMI vocabulary was given but unit={settings.unit!r}; set unit='pmi' or drop it")
        self.pmi_vocab = pmi_vocab
        self._decode = decode if decode is None or isinstance(decode, WordDecoder) else WordDecoder(decode)
        p, longest = settings.span_geometric_p, settings.max_span_length
        weights = torch.tensor([p * (1 - p) ** (n - 1) for n in range(longest)], dtype=torch.float64)
        self._span_cdf = (weights.cumsum(0) / weights.sum()).float()  # truncated Geometric, lengths 1..longest
        if generator is None:
            generator = torch.Generator()
            if settings.seed is None:
                generator.seed()
            else:
                generator.manual_seed(settings.seed)
        self.generator = generator

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, settings: MaskingSettings, pmi_vocab: PmiVocabulary | None = None,
                       generator: torch.Generator | None = None, vocab_size: int | None = None) -> MlmMasker:
        """Mask id, special ids and vocabulary size from a HF tokenizer.

        `vocab_size` (default len(tokenizer), added tokens included) bounds random replacements;
        pass the model's `config.vocab_size` when its embedding table is smaller.
        """
        if tokenizer.mask_token_id is None:
            raise ValueError("the tokenizer has no mask token; masked-language modelling needs an encoder trained "
                             "with one (BERT, RoBERTa, DeBERTa, XLM-R, ...)")
        return cls(settings, mask_token_id=tokenizer.mask_token_id, vocab_size=vocab_size or len(tokenizer),
                   special_token_ids=tokenizer.all_special_ids, pmi_vocab=pmi_vocab,
                   decode=WordDecoder(tokenizer.decode) if settings.unit == "pmi" else None, generator=generator)

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
                 special_tokens_mask: torch.Tensor | None = None,
                 word_ids: Sequence[Sequence[int | None]] | torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(corrupted input_ids, labels) for one batch; `input_ids` itself is left untouched.

        `word_ids`: per row, `encoding.word_ids()` padded with None (or a tensor, negative = none);
        needed by whole_word and pmi, used by span (else spans count tokens).
        """
        generator = generator or self.generator
        where = self.positions(input_ids, attention_mask, special_tokens_mask=special_tokens_mask,
                               word_ids=word_ids, generator=generator)
        return self.apply(input_ids, where, generator)

    def positions(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
                  special_tokens_mask: torch.Tensor | None = None,
                  word_ids: Sequence[Sequence[int | None]] | torch.Tensor | None = None,
                  generator: torch.Generator | None = None) -> MaskPositions:
        """Choose corrupted and predicted positions (no replacement yet)."""
        import torch

        generator = generator or self.generator
        maskable = ~torch.isin(input_ids, self.special_ids.to(input_ids.device))
        if attention_mask is not None:
            maskable &= attention_mask.bool()
        if special_tokens_mask is not None:
            maskable &= ~special_tokens_mask.bool()
        unit = self.settings.unit
        if unit in ("whole_word", "pmi") and word_ids is None:
            raise ValueError(f"unit={unit!r} needs word ids: tokenize with a fast tokenizer and pass "
                             "[encoding.word_ids(i) for each row], or use MlmCollator on raw texts")
        budget = maskable.sum(1) * self.settings.effective_corruption_rate
        units = None
        if unit == "token":
            corrupt = _choose(maskable, _stochastic_round(budget, generator), generator)
        else:
            word_tensor = _word_id_tensor(word_ids, input_ids.shape, input_ids.device)
            starts, ends, segments = _word_bounds(maskable, word_tensor)
            if unit == "span":
                units = self._spans(maskable, starts, ends, segments, budget, generator)
                corrupt = _ranges_mask(units, maskable.shape).to(maskable.device)
            else:
                if unit == "pmi":
                    starts, ends = self._pmi_bounds(input_ids, starts, ends, segments)
                corrupt = _take_units(maskable, starts, ends, budget, generator)
                units = [list(zip(s, e)) for s, e in zip(_row_lists(corrupt & starts), _row_lists(corrupt & ends, 1))]
        return MaskPositions(maskable, corrupt, self._predict(maskable, corrupt, generator), units)

    def _spans(self, maskable: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor, segments: torch.Tensor,
               budget: torch.Tensor, generator: torch.Generator) -> list[list[tuple[int, int]]]:
        """SpanBERT, per sequence: spans of truncated-Geometric length in words, each placed at a
        random start where it fits (free words of one segment), until the budget (the rule of
        `_take_units`). Randomness is drawn with torch up front; the loop over a handful of spans
        per sequence is plain Python. Returns each row's spans as sorted token ranges."""
        import torch

        shape = tuple(maskable.shape)
        cpu = torch.device("cpu")
        starts, segments = starts.cpu(), segments.cpu()
        counts = starts.sum(1).tolist()
        word_index = starts.cumsum(1) - 1  # each token's word, counted within its row
        priority = _rand(shape, generator, cpu).masked_fill(~starts, 2.0)  # word starts first, in random order
        order = word_index.gather(1, priority.argsort(dim=1)).tolist()
        accept = _rand(shape[:1], generator, cpu).tolist()
        draws = _rand(shape, generator, cpu)  # span k of row i has lengths[i][k] words (k < words ≤ width)
        lengths = (torch.searchsorted(self._span_cdf, draws).clamp_(max=len(self._span_cdf) - 1) + 1).tolist()
        segment_ids = segments.cumsum(1)[starts].split(counts)
        rows = zip(_row_lists(starts), _row_lists(ends, 1), segment_ids, budget.tolist(), order, counts, accept,
                   lengths)
        return [sorted(_row_spans(row_starts, row_ends, segs.tolist(), row_budget, row_order[:n], row_accept,
                                  row_lengths))
                for row_starts, row_ends, segs, row_budget, row_order, n, row_accept, row_lengths in rows]

    def _pmi_bounds(self, input_ids: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor,
                    segments: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Word flags turned into unit flags: inside each vocabulary n-gram occurrence, the inner
        word starts/ends are cleared so the n-gram is one unit (found per segment)."""
        assert self.pmi_vocab is not None and self._decode is not None
        width = input_ids.shape[1]
        ids = input_ids.tolist()
        segment_ids = segments.cumsum(1)
        clear_start, clear_end = [], []
        rows = zip(_row_lists(starts), _row_lists(ends, 1), segment_ids[starts].split(starts.sum(1).tolist()))
        for i, (row_starts, row_ends, row_segments) in enumerate(rows):
            row_ids, offset = ids[i], i * width
            words = self._decode.words(row_ids, row_starts, row_ends)
            begin = 0
            for _, group in itertools.groupby(row_segments.tolist()):
                size = len(list(group))
                for a, b in self.pmi_vocab.find(words[begin:begin + size]):
                    clear_start.extend(offset + row_starts[begin + k] for k in range(a + 1, b))
                    clear_end.extend(offset + row_ends[begin + k] - 1 for k in range(a, b - 1))
                begin += size
        return _clear(starts, clear_start), _clear(ends, clear_end)

    def _predict(self, maskable: torch.Tensor, corrupt: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Wettig et al. §5: a subset of the corrupted tokens, or all of them plus uncorrupted ones."""
        ratio = self.settings.effective_prediction_rate / self.settings.effective_corruption_rate
        n_corrupt = corrupt.sum(1)
        if ratio < 1:
            return _choose(corrupt, _stochastic_round(n_corrupt * ratio, generator), generator)
        if ratio > 1:
            extra = _choose(maskable & ~corrupt, _stochastic_round(n_corrupt * (ratio - 1), generator), generator)
            return corrupt | extra
        return corrupt.clone()

    def apply(self, input_ids: torch.Tensor, where: MaskPositions,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Replace corrupted tokens (mask / random non-special / same) and build the labels."""
        import torch

        generator = generator or self.generator
        draw = _rand(tuple(input_ids.shape), generator, input_ids.device)
        mask_share, random_share, _ = self.fractions
        inputs = input_ids.masked_fill(where.corrupt & (draw < mask_share), self.mask_token_id)
        if random_share > 0:
            to_random = where.corrupt & (draw >= mask_share) & (draw < mask_share + random_share)
            picks = torch.randint(len(self.random_ids), tuple(input_ids.shape), generator=generator,
                                  device=generator.device).cpu()
            inputs = torch.where(to_random, self.random_ids[picks].to(input_ids.device), inputs)
        return inputs, input_ids.masked_fill(~where.predict, IGNORE_INDEX)


def _row_spans(starts: list[int], ends: list[int], segments: list[int], budget: float, order: list[int],
               accept: float, lengths: list[int]) -> list[tuple[int, int]]:
    """One sequence's SpanBERT spans as token ranges (see `MlmMasker._spans`).

    Span k has `lengths[k]` words and starts at the first word in `order` where that many free
    words of one segment follow, so lengths keep their distribution. Only if that pass runs out of
    starts before the budget does a second pass cut spans short at segment ends or taken words.
    """
    taken = [False] * len(starts)
    chosen, used, k = [], 0, 0
    for exact in (True, False):
        for first in order:
            if taken[first]:
                continue
            last = min(first + lengths[k], len(starts)) - 1
            if exact and (first + lengths[k] > len(starts) or segments[last] != segments[first]
                          or any(taken[first:last + 1])):
                continue
            if not exact:  # cut short at the segment's end or the next taken word
                last = next((j - 1 for j in range(first + 1, last + 1)
                             if taken[j] or segments[j] != segments[first]), last)
            size = ends[last] - starts[first]
            if used + size > budget and not accept * size < budget - used:
                return chosen
            chosen.append((starts[first], ends[last]))
            used, k = used + size, k + 1
            taken[first:last + 1] = [True] * (last + 1 - first)
            if used >= budget:
                return chosen
    return chosen


def _clear(flags: torch.Tensor, flat_indices: list[int]) -> torch.Tensor:
    """A copy of `flags` with the given flat positions unset."""
    import torch

    out = flags.clone()
    if flat_indices:
        out.view(-1)[torch.tensor(flat_indices, dtype=torch.long, device=flags.device)] = False
    return out


def _word_id_tensor(word_ids: Sequence[Sequence[int | None]] | torch.Tensor | None, shape: torch.Size,
                    device: torch.device) -> torch.Tensor | None:
    """Word ids as a long tensor with -1 for "no word" (None in `encoding.word_ids()`)."""
    import torch

    if word_ids is None:
        return None
    if isinstance(word_ids, torch.Tensor):
        tensor = word_ids.long()
    else:
        # via array: ~6x faster than torch.tensor on nested lists
        flat = array.array("q", [-1 if w is None else w for row in word_ids for w in row])
        if len(flat) != shape[0] * shape[1]:
            raise ValueError(f"word_ids must give {shape[1]} entries for each of the {shape[0]} rows of input_ids; "
                             "pad each row's word ids with None")
        if not flat:  # frombuffer refuses an empty buffer
            return torch.empty(shape, dtype=torch.long, device=device)
        tensor = torch.frombuffer(flat, dtype=torch.long).clone().view(shape)
    if tensor.shape != shape:
        raise ValueError(f"word_ids must match input_ids' shape {tuple(shape)}, got {tuple(tensor.shape)}; pad "
                         "each row's word ids with None")
    return tensor.to(device)


# ---------------------------------------------------------------------------------------------
# DataLoader collator


