"""Proportional prioritized experience replay (Schaul et al. 2016) on the deduplicated storage.

* Priorities live in a :class:`SumTree` already raised to α: ``p_i = (|δ_i| + ε)^α``. α is applied
  once, here, when a TD error arrives; the tree and ``max_priority`` hold p, never |δ|.
* A transition enters at the current maximum priority when it becomes ready (its n-step return
  complete), or at a priority computed from a given TD error (``append(..., td_errors=)``, for
  Ape-X actors that compute initial priorities themselves); a slot that stops being ready
  (overwritten by the ring, or its stack lost a frame) drops to priority 0 and so is never
  drawn.
* A batch is one draw in each of ``batch_size`` equal slices of the total (stratified).
* IS weights ``w_i = (N · P(i))^(-β) / max_j w_j``; the max is over the batch, as in the paper's
  Algorithm 1.
"""

from __future__ import annotations

import numpy as np

from atari_dqn.replay.storage import Batch, Changes, FrameStorage, StoredFrames
from atari_dqn.replay.sum_tree import SumTree


class PrioritizedReplay(StoredFrames):
    uses_priorities = True

    def __init__(
        self,
        storage: FrameStorage,
        rng: np.random.Generator,
        *,
        alpha: float,
        priority_eps: float = 1e-6,
    ) -> None:
        self.storage = storage
        self.rng = rng
        self.alpha = alpha
        self.priority_eps = priority_eps
        self.tree = SumTree(storage.capacity)
        self.max_priority = 1.0  # of p = (|δ| + ε)^α, the value new transitions enter with

    def __len__(self) -> int:
        return len(self.storage)

    def _priorities(self, td_errors: np.ndarray) -> np.ndarray:
        """``p = (|δ| + ε)^α``: the one place α is applied."""
        p = np.abs(td_errors, dtype=np.float64)  # a new array: the in-place ops below are ours
        p += self.priority_eps
        p **= self.alpha
        return p

    def _apply(self, changes: Changes, td_errors: np.ndarray | None = None) -> None:
        if changes.unready:
            self.tree.update(np.asarray(changes.unready, dtype=np.int64), np.zeros(1))
        n = len(changes.ready)
        if td_errors is not None and len(td_errors) != n:
            raise ValueError(f"{len(td_errors)} TD errors given for {n} completed transitions")
        if n:
            ready = np.asarray(changes.ready, dtype=np.int64)
            if td_errors is None:
                self.tree.update(ready, np.full(n, self.max_priority))
            else:
                p = self._priorities(td_errors)
                self.tree.update(ready, p)
                self.max_priority = max(self.max_priority, float(p.max()))

    def begin(self, stream: int, frame: np.ndarray) -> None:
        self._apply(self.storage.begin(stream, frame))

    def cut(self, stream: int) -> None:
        self._apply(self.storage.cut(stream))

    def append(
        self,
        stream: int,
        action: int,
        reward: float,
        next_frame: np.ndarray,
        terminated: bool,
        truncated: bool,
        td_errors: np.ndarray | None = None,
    ) -> None:
        """Store one step. The transitions it completes enter at the maximum priority, or, given
        ``td_errors`` (their |δ| in the order the storage completes them, one per completed
        transition: what an Ape-X actor computes), at ``(|δ| + ε)^α``."""
        changes = self.storage.append(stream, action, reward, next_frame, terminated, truncated)
        self._apply(changes, td_errors)

    def state(self) -> tuple[dict[str, np.ndarray], dict]:
        arrays, meta = self.storage.state()
        arrays = {**arrays, "priorities": self.tree.get(np.arange(self.storage.capacity))}
        return arrays, {
            "storage": meta,
            "rng": self.rng.bit_generator.state,
            "max_priority": self.max_priority,
        }

    def load_state(self, arrays: dict[str, np.ndarray], meta: dict) -> None:
        if "priorities" not in arrays:
            raise ValueError("replay state has no priorities: it was saved from uniform replay")
        self.storage.load_state(arrays, meta["storage"])
        self.tree = SumTree(self.storage.capacity)
        self.tree.update(np.arange(self.storage.capacity), arrays["priorities"])
        self.rng.bit_generator.state = meta["rng"]
        self.max_priority = float(meta["max_priority"])

    def stats(self) -> dict[str, float]:
        return {"replay/max_priority": self.max_priority}

    def importance_weights(self, indices: np.ndarray, beta: float) -> np.ndarray:
        """``(N · P(i))^(-β)`` normalised by the batch maximum, N = ready transitions.

        With ``P(i) = p_i / Σp`` and β >= 0 the largest weight is the smallest priority's, and
        N and Σp cancel: ``w_i = (p_min / p_i)^β``, three numpy calls on the hot path.
        """
        p = self.tree.get(indices)
        return ((p.min() / p) ** beta).astype(np.float32)

    def draw(self, batch_size: int, beta: float) -> tuple[np.ndarray, np.ndarray]:
        """The indices of a batch (one stratified draw per slice) and their IS weights, before
        the gather."""
        if len(self.storage) == 0:
            raise ValueError("cannot sample from an empty replay")
        indices = self.tree.sample_stratified(batch_size, self.rng)
        return indices, self.importance_weights(indices, beta)

    def sample(self, batch_size: int, beta: float) -> Batch:
        return self.storage.gather(*self.draw(batch_size, beta))

    def update_priorities(self, indices: np.ndarray, td_errors: np.ndarray) -> None:
        """New priorities ``(|δ| + ε)^α`` for the slots of the last batch.

        A slot that stopped being ready since it was sampled keeps priority 0.
        """
        indices = np.asarray(indices, dtype=np.int64)
        p = self._priorities(td_errors)
        keep = self.storage.ready[indices]
        if np.count_nonzero(keep) != len(keep):  # (4x cheaper than keep.all())
            indices, p = indices[keep], p[keep]
        if len(p):
            self.tree.update(indices, p)
            self.max_priority = max(self.max_priority, float(p.max()))
