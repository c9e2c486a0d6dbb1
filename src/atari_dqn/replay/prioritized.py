"""Proportional prioritized experience replay (Schaul et al. 2016) on the deduplicated storage.

* Priorities live in a :class:`SumTree` already raised to α: ``p_i = (|δ_i| + ε)^α``. α is applied
  once, here, when a TD error arrives; the tree and ``max_priority`` hold p, never |δ|.
* A transition enters at the current maximum priority when it becomes ready (its n-step return
  complete); a slot that stops being ready (overwritten by the ring, or its stack lost a frame)
  drops to priority 0 and so is never drawn.
* A batch is one draw in each of ``batch_size`` equal slices of the total (stratified).
* IS weights ``w_i = (N · P(i))^(-β) / max_j w_j``; the max is over the batch, as in the paper's
  Algorithm 1.
"""

from __future__ import annotations

import numpy as np

from atari_dqn.replay.storage import Batch, Changes, FrameStorage
from atari_dqn.replay.sum_tree import SumTree


class PrioritizedReplay:
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

    def _apply(self, changes: Changes) -> None:
        if changes.unready:
            self.tree.update(np.asarray(changes.unready, dtype=np.int64), np.zeros(1))
        if changes.ready:
            ready = np.asarray(changes.ready, dtype=np.int64)
            self.tree.update(ready, np.full(len(ready), self.max_priority))

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
    ) -> None:
        self._apply(self.storage.append(stream, action, reward, next_frame, terminated, truncated))

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

    def sample(self, batch_size: int, beta: float) -> Batch:
        if len(self.storage) == 0:
            raise ValueError("cannot sample from an empty replay")
        indices = self.tree.sample_stratified(batch_size, self.rng)
        return self.storage.gather(indices, self.importance_weights(indices, beta))

    def update_priorities(self, indices: np.ndarray, td_errors: np.ndarray) -> None:
        """New priorities ``(|δ| + ε)^α`` for the slots of the last batch.

        A slot that stopped being ready since it was sampled keeps priority 0.
        """
        indices = np.asarray(indices, dtype=np.int64)
        p = np.abs(td_errors, dtype=np.float64)  # a new array: the in-place ops below are ours
        p += self.priority_eps
        p **= self.alpha
        keep = self.storage.ready[indices]
        if np.count_nonzero(keep) != len(keep):  # (4x cheaper than keep.all())
            indices, p = indices[keep], p[keep]
        if len(p):
            self.tree.update(indices, p)
            self.max_priority = max(self.max_priority, float(p.max()))
