"""n-step return accumulator (one per environment stream).

It holds the last transitions of the open episode until their n-step return is known:
``R_t = Σ_{k<n} γ^k r_{t+k}``, bootstrapping ``n`` steps later. At an episode end every pending
transition is flushed with the shorter return it has (``k < n`` rewards, bootstrap ``γ^k`` from
the final state); no return ever crosses an episode end. A terminal end means no bootstrap; a
truncation (time limit) bootstraps from the last real state.
"""

from __future__ import annotations

from collections import deque

# (slot, n-step return, bootstrap offset k in steps, ended in a terminal state)
Done = tuple[int, float, int, bool]


class NStepAccumulator:
    def __init__(self, n: int, gamma: float) -> None:
        if n < 1:
            raise ValueError(f"n-step must be >= 1, got {n}")
        self.n = n
        self.gamma = gamma
        self._slots: deque[int] = deque()
        self._rewards: deque[float] = deque()

    def __len__(self) -> int:
        return len(self._slots)

    def push(self, slot: int, reward: float) -> None:
        """Add the transition taken from ``slot`` with reward ``reward``."""
        self._slots.append(slot)
        self._rewards.append(reward)

    def _return(self, start: int) -> float:
        ret, g = 0.0, 1.0
        for k in range(start, len(self._rewards)):
            ret += g * self._rewards[k]
            g *= self.gamma
        return ret

    def pop_complete(self) -> list[Done]:
        """The oldest transition once it has ``n`` rewards (the episode goes on)."""
        if len(self._slots) < self.n:
            return []
        ret = self._return(0)
        self._rewards.popleft()
        return [(self._slots.popleft(), ret, self.n, False)]

    def flush(self, terminated: bool) -> list[Done]:
        """Everything pending, at an episode end (the final state is len - j steps after j)."""
        m = len(self._slots)
        out = [(self._slots[j], self._return(j), m - j, terminated) for j in range(m)]
        self._slots.clear()
        self._rewards.clear()
        return out

    def state(self) -> tuple[list[int], list[float]]:
        return list(self._slots), list(self._rewards)

    def load(self, slots: list[int], rewards: list[float]) -> None:
        self._slots = deque(int(s) for s in slots)
        self._rewards = deque(float(r) for r in rewards)
