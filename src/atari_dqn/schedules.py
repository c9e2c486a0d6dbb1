"""Linear schedules (ε for exploration, β for importance sampling)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LinearSchedule:
    """``start`` until ``begin``, then linear to ``end`` over ``duration`` steps, then ``end``."""

    start: float
    end: float
    duration: int
    begin: int = 0

    def __call__(self, step: int) -> float:
        if step <= self.begin:
            return self.start
        frac = min(1.0, (step - self.begin) / self.duration)
        return self.start + frac * (self.end - self.start)
