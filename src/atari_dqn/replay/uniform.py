"""Uniform experience replay over the frame-deduplicated storage."""

from __future__ import annotations

import numpy as np

from atari_dqn.replay.storage import Batch, FrameStorage, StoredFrames


class UniformReplay(StoredFrames):
    """Samples ready transitions uniformly, with replacement (as the course project's
    ``randint``)."""

    uses_priorities = False  # the learner need not bring TD errors back to the host

    def __init__(self, storage: FrameStorage, rng: np.random.Generator) -> None:
        self.storage = storage
        self.rng = rng

    def __len__(self) -> int:
        return len(self.storage)

    def begin(self, stream: int, frame: np.ndarray) -> None:
        self.storage.begin(stream, frame)

    def cut(self, stream: int) -> None:
        self.storage.cut(stream)

    def append(
        self,
        stream: int,
        action: int,
        reward: float,
        next_frame: np.ndarray,
        terminated: bool,
        truncated: bool,
    ) -> None:
        self.storage.append(stream, action, reward, next_frame, terminated, truncated)

    def state(self) -> tuple[dict[str, np.ndarray], dict]:
        arrays, meta = self.storage.state()
        return arrays, {"storage": meta, "rng": self.rng.bit_generator.state}

    def load_state(self, arrays: dict[str, np.ndarray], meta: dict) -> None:
        self.storage.load_state(arrays, meta["storage"])
        self.rng.bit_generator.state = meta["rng"]

    def stats(self) -> dict[str, float]:
        return {}

    def sample_indices(self, batch_size: int) -> np.ndarray:
        """Uniform over ready slots: draw among written slots, redraw the few not ready.

        Slots not ready (episode-final frames, the handful next to the write cursor, returns
        still accumulating) are a small fraction, so rejection costs about one extra draw.
        """
        st = self.storage
        if st.num_ready == 0:
            raise ValueError("cannot sample from an empty replay")
        filled = st.filled
        bounds = np.cumsum(filled)
        out = np.empty(batch_size, dtype=np.int64)
        todo = np.arange(batch_size)
        for _ in range(64):
            u = self.rng.integers(0, bounds[-1], size=len(todo))
            stream = np.searchsorted(bounds, u, side="right")
            local = u - (bounds[stream] - filled[stream])
            idx = stream * st.per_stream + local
            ok = st.ready[idx]
            out[todo[ok]] = idx[ok]
            todo = todo[~ok]
            if len(todo) == 0:
                return out
        # Pathological fill (almost nothing ready): draw exactly from the ready set.
        out[todo] = self.rng.choice(np.flatnonzero(st.ready), size=len(todo))
        return out

    def draw(self, batch_size: int, beta: float = 0.0) -> tuple[np.ndarray, None]:
        """The indices of a batch, before the gather; no IS weights (``beta`` has no effect)."""
        del beta
        return self.sample_indices(batch_size), None

    def sample(self, batch_size: int, beta: float = 0.0) -> Batch:
        """A uniform batch; ``beta`` is accepted for a common interface and has no effect."""
        return self.storage.gather(*self.draw(batch_size, beta))

    def update_priorities(self, indices: np.ndarray, td_errors: np.ndarray) -> None:
        """Uniform replay has no priorities; accepted so the loop needs no special case."""
        del indices, td_errors
