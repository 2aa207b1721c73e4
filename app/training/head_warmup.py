"""The `head_warmup` setting and its "auto" rule, without torch (the API validates job specs with it).
The warm-up itself (LP-FT, Kumar et al. 2022, applied to the MLM head) is app.training.mlm_head_warmup."""
from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import Field, PlainValidator

MAX_STEPS = 100_000
# "auto": at least 100 steps (Adam at the phase's LR moves each weight ~lr per step, so 100 steps at 1e-4
# shift the transform by ~0.01, half BERT's 0.02 init scale) and 10% of the encoder phase for long phases.
# A chosen rule, not a tuned one: bench/adaptive.py is where it is judged.
AUTO_MIN_STEPS, AUTO_SHARE = 100, 0.1


def auto_steps(phase_steps: int) -> int:
    """The "auto" warm-up length of a phase of `phase_steps` encoder steps."""
    return max(AUTO_MIN_STEPS, math.ceil(AUTO_SHARE * phase_steps))


def _check(value: Any) -> Literal["auto"] | int:
    """One error naming the field (a plain Literal | int union would name each member)."""
    if value == "auto" or (type(value) is int and 0 <= value <= MAX_STEPS):
        return value
    raise ValueError(f'head_warmup must be "auto", 0 (no warm-up) or a number of steps up to {MAX_STEPS}, '
                     f"got {value!r}")


HeadWarmup = Annotated[Literal["auto"] | int, PlainValidator(_check, json_schema_input_type=(
    Literal["auto"] | Annotated[int, Field(ge=0, le=MAX_STEPS)]))]
