"""Replay memories (numpy only): frame-deduplicated storage, uniform and prioritized sampling.

:class:`Replay` is the contract the loop, checkpoints and the Ape-X replay server rely on;
:class:`~atari_dqn.replay.uniform.UniformReplay` and
:class:`~atari_dqn.replay.prioritized.PrioritizedReplay` implement it. The kind of replay is chosen
once, in :mod:`atari_dqn.build`; afterwards code asks ``uses_priorities``, never the kind's name.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from atari_dqn.replay.storage import Batch, FrameStorage
from atari_dqn.replay.sum_tree import SumTree


@runtime_checkable
class TransitionSink(Protocol):
    """What an env stream's experience is written into: a replay, or an actor's block recorder.

    ``begin`` opens a training episode at its first frame; ``append`` adds one agent step (the
    newest frame of s'); ``cut`` ends a stream's open episode without a transition (resume)."""

    def begin(self, stream: int, frame: np.ndarray) -> None: ...

    def append(
        self,
        stream: int,
        action: int,
        reward: float,
        next_frame: np.ndarray,
        terminated: bool,
        truncated: bool,
    ) -> None: ...


@runtime_checkable
class Replay(TransitionSink, Protocol):
    """A replay memory: transitions in, batches out, priorities back, state saved exactly."""

    uses_priorities: bool  # whether update_priorities does anything (TD errors worth a copy)
    storage: FrameStorage  # the frames and per-slot data, for those that write or watch them

    def __len__(self) -> int: ...

    def cut(self, stream: int) -> None: ...

    def draw(self, batch_size: int, beta: float) -> tuple[np.ndarray, np.ndarray | None]:
        """The indices of a batch, and their IS weights (None: all 1), without the gather."""
        ...

    def sample(self, batch_size: int, beta: float) -> Batch: ...

    def update_priorities(self, indices: np.ndarray, td_errors: np.ndarray) -> None: ...

    def stats(self) -> dict[str, float]: ...

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Everything but the frames (per-slot data, write positions, sampler state)."""
        ...

    def load_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None: ...

    # The frames, by slot range (``FrameStorage``'s methods of these names): checkpoints save
    # only the filled part, and later only what was written since the last save.
    def frame_mark(self) -> np.ndarray: ...

    def ring_slots(self) -> int: ...

    def frame_ranges(self, since: np.ndarray | None = None) -> list[tuple[int, int]]: ...

    def get_frames(self, start: int, stop: int) -> np.ndarray: ...

    def put_frames(self, start: int, frames: np.ndarray) -> None: ...


__all__ = ["Batch", "FrameStorage", "Replay", "SumTree", "TransitionSink"]
