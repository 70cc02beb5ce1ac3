"""A1111's learning-rate schedule syntax, also used for the gradient clipping value.

"0.005" is one rate until max steps; "0.005:100, 1e-3:1000, 1e-5" is 0.005 until step 100,
1e-3 until step 1000, then 1e-5 until max steps. "rate:-1" means until max steps. Entries whose
end step is already behind the current step (a resumed run) are dropped; an end step beyond max
steps is cut to max steps and ends the list. Training stops when the last entry's end step is
reached, even before max steps (A1111 LearnRateScheduler).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from modules.train.errors import TrainingError

SYNTAX_HELP = (
    'use a number, or for example "0.001:100, 0.00001:1000, 1e-5:10000" for 0.001 until step 100, '
    "0.00001 until step 1000 and 1e-5 until step 10000"
)


@dataclass(frozen=True)
class RateSegment:
    rate: float
    end_step: int  # the rate applies while step < end_step


def parse_schedule(
    text: str, max_steps: int, current_step: int = 0, *, what: str = "learning rate"
) -> tuple[RateSegment, ...]:
    """The schedule's segments still ahead of `current_step`; TrainingError for bad text."""
    segments: list[RateSegment] = []
    for part in str(text).split(","):
        if not part.strip():
            continue
        pieces = part.split(":")
        if len(pieces) > 2:
            raise TrainingError(f"invalid {what} schedule entry {part.strip()!r}: {SYNTAX_HELP}")
        rate = _rate(pieces[0], what, part)
        if len(pieces) == 1:
            segments.append(RateSegment(rate, max_steps))
            break
        end = _step(pieces[1], what, part)
        if end == -1:
            segments.append(RateSegment(rate, max_steps))
            break
        if end > current_step:
            segments.append(RateSegment(rate, min(end, max_steps)))
            if end > max_steps:
                break
    if not segments:
        raise TrainingError(
            f"invalid {what} schedule {text!r}: nothing left to do after step {current_step}; {SYNTAX_HELP}"
            if str(text).strip()
            else f"{what} is empty; {SYNTAX_HELP}"
        )
    return tuple(segments)


def _rate(text: str, what: str, part: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise TrainingError(f"invalid {what} {text.strip()!r} in {part.strip()!r}: {SYNTAX_HELP}") from None
    if not math.isfinite(value) or value < 0:
        raise TrainingError(f"{what} must be a finite number >= 0, got {text.strip()!r}")
    return value


def _step(text: str, what: str, part: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise TrainingError(f"invalid step {text.strip()!r} in {what} entry {part.strip()!r}: {SYNTAX_HELP}") from None


class ScheduleCursor:
    """Walks a schedule as steps pass (A1111 LearnRateScheduler.step)."""

    def __init__(self, segments: Sequence[RateSegment]) -> None:
        if not segments:
            raise ValueError("a schedule needs at least one segment")
        self._segments = list(segments)
        self._index = 0
        self.finished = False

    @property
    def rate(self) -> float:
        return self._segments[self._index].rate

    @property
    def end_step(self) -> int:
        return self._segments[self._index].end_step

    def advance(self, step: int) -> bool:
        """Move on when `step` reached the current end; True when the rate changed.
        Past the last segment the cursor is `finished` (the rate stays the last one)."""
        if step < self.end_step:
            return False
        if self._index + 1 >= len(self._segments):
            self.finished = True
            return False
        self._index += 1
        return True
