"""Blocks of experience with initial priorities: recorded by an actor, applied by the replay.

An Ape-X actor (Horgan et al. 2018) computes the initial priority of each transition itself, as
the |n-step TD error| under its copy of the policy, so new experience does not all enter the
replay at the maximum priority. Here an actor records its envs' ``begin`` / ``append`` calls,
exactly the calls the training loop makes on a replay, in a :class:`BlockRecorder`. The recorder
keeps a small :class:`FrameStorage` of its own with the run's n-step settings, so it knows which
transitions each call completes (their n-step return is known) and can rebuild their states to
compute |δ| in one batch when the block is taken. The replay server replays the same calls on
its streams (:func:`apply_block`); its storage completes the same transitions in the same order,
and each enters with its |δ| (α is applied there, once, by :class:`PrioritizedReplay`).

Numpy only; the TD errors come from a function the actor passes in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from atari_dqn.replay import Replay
from atari_dqn.replay.prioritized import PrioritizedReplay
from atari_dqn.replay.storage import Batch, FrameStorage

TDFunction = Callable[[Batch], np.ndarray]  # batch -> |δ| per transition


@dataclass
class Block:
    """One actor's replay calls since its previous block, in order (M calls)."""

    actor: int
    num_envs: int  # envs of the actor: its streams are actor * num_envs + (0 .. num_envs - 1)
    fresh: bool  # the actor (re)started: close its streams' open episodes first
    envs: np.ndarray  # (M,) int16, the actor's env of each call
    begins: np.ndarray  # (M,) bool: begin(frame), else append(...)
    frames: np.ndarray  # (M, H, W) uint8: begin's frame, or the newest frame of s_{t+1}
    actions: np.ndarray  # (M,) uint8
    rewards: np.ndarray  # (M,) float32 (clipped training rewards)
    terminated: np.ndarray  # (M,) bool
    truncated: np.ndarray  # (M,) bool
    completes: np.ndarray  # (M,) int32: transitions each call completes
    td_errors: np.ndarray | None  # (sum(completes),) float32 |δ|, or None: enter at max priority

    @property
    def steps(self) -> int:
        """Agent steps (appended transitions) in the block."""
        return int(np.count_nonzero(~self.begins))

    def writes(self) -> np.ndarray:
        """(num_envs,) frames each of the actor's streams writes when the block is applied."""
        return np.bincount(self.envs, minlength=self.num_envs)


class BlockRecorder:
    """Records one actor's replay calls and the transitions they complete; see the module doc.

    ``block``: the most agent steps per env between two :meth:`take` calls; the local rings hold
    twice that (and the n-step and stack margins), so every transition completed since the last
    take can still be rebuilt.
    """

    def __init__(
        self,
        actor: int,
        num_envs: int,
        *,
        block: int,
        n_step: int,
        gamma: float,
        frame_shape: tuple[int, int] = (84, 84),
        stack: int = 4,
    ) -> None:
        self.actor = actor
        self.num_envs = num_envs
        self.block = block
        per_env = 2 * block + 2 * (n_step + stack) + 16
        self.storage = FrameStorage(
            per_env * num_envs,
            frame_shape=frame_shape,
            stack=stack,
            n_step=n_step,
            gamma=gamma,
            num_streams=num_envs,
        )
        self._fresh = True
        self._clear()

    def _clear(self) -> None:
        self._envs: list[int] = []
        self._begins: list[bool] = []
        self._frames: list[np.ndarray] = []
        self._actions: list[int] = []
        self._rewards: list[float] = []
        self._terminated: list[bool] = []
        self._truncated: list[bool] = []
        self._completes: list[int] = []
        self._completed: list[int] = []  # local slots, in completion order
        self._appends = np.zeros(self.num_envs, dtype=np.int64)

    def __len__(self) -> int:
        """Calls recorded since the last take."""
        return len(self._envs)

    def begin(self, stream: int, frame: np.ndarray) -> None:
        env = stream  # the actor's env index is the recorder's stream
        self.storage.begin(env, frame)
        self._record(env, True, frame, 0, 0.0, False, False, ())

    def append(
        self,
        stream: int,
        action: int,
        reward: float,
        next_frame: np.ndarray,
        terminated: bool,
        truncated: bool,
    ) -> None:
        env = stream
        if self._appends[env] >= self.block:
            raise RuntimeError(f"more than block={self.block} steps for env {env}; take() first")
        self._appends[env] += 1
        changes = self.storage.append(env, action, reward, next_frame, terminated, truncated)
        self._record(env, False, next_frame, action, reward, terminated, truncated, changes.ready)

    def _record(
        self,
        env: int,
        begin: bool,
        frame: np.ndarray,
        action: int,
        reward: float,
        terminated: bool,
        truncated: bool,
        ready: tuple[int, ...],
    ) -> None:
        self._envs.append(env)
        self._begins.append(begin)
        self._frames.append(np.array(frame, dtype=np.uint8))
        self._actions.append(action)
        self._rewards.append(reward)
        self._terminated.append(terminated)
        self._truncated.append(truncated)
        self._completes.append(len(ready))
        self._completed.extend(ready)

    def take(self, td_fn: TDFunction | None) -> Block:
        """The block recorded since the last take; with ``td_fn``, the |δ| of what it completes."""
        td = None
        if td_fn is not None:
            slots = np.asarray(self._completed, dtype=np.int64)
            if len(slots) and not self.storage.ready[slots].all():
                raise RuntimeError("a completed transition was overwritten before take()")
            if len(slots):
                td = np.abs(np.asarray(td_fn(self.storage.gather(slots)), dtype=np.float32))
            else:
                td = np.zeros(0, dtype=np.float32)
        shape = self.storage.frames.shape[1:]
        block = Block(
            actor=self.actor,
            num_envs=self.num_envs,
            fresh=self._fresh,
            envs=np.asarray(self._envs, dtype=np.int16),
            begins=np.asarray(self._begins, dtype=bool),
            frames=np.stack(self._frames) if self._frames else np.zeros((0, *shape), np.uint8),
            actions=np.asarray(self._actions, dtype=np.uint8),
            rewards=np.asarray(self._rewards, dtype=np.float32),
            terminated=np.asarray(self._terminated, dtype=bool),
            truncated=np.asarray(self._truncated, dtype=bool),
            completes=np.asarray(self._completes, dtype=np.int32),
            td_errors=td,
        )
        self._fresh = False
        self._clear()
        return block


def apply_block(replay: Replay, block: Block, *, with_priorities: bool) -> None:
    """Replay ``block``'s calls on the actor's streams of ``replay`` (uniform or prioritized).

    ``with_priorities``: the replay takes ``td_errors=`` (prioritized); the completed
    transitions then enter with the block's TD errors. A fresh block first closes the streams'
    open episodes (an actor that died mid-episode), as a time limit would.
    """
    first = block.actor * block.num_envs
    if block.fresh:
        for env in range(block.num_envs):
            replay.cut(first + env)
    td = block.td_errors if with_priorities else None
    if td is not None and len(td) != int(block.completes.sum()):
        raise ValueError(f"block has {len(td)} TD errors for {block.completes.sum()} transitions")
    k = 0
    for j in range(len(block.envs)):
        stream = first + int(block.envs[j])
        if block.begins[j]:
            replay.begin(stream, block.frames[j])
            continue
        args = (
            stream,
            int(block.actions[j]),
            float(block.rewards[j]),
            block.frames[j],
            bool(block.terminated[j]),
            bool(block.truncated[j]),
        )
        if td is None:
            replay.append(*args)
        else:
            assert isinstance(replay, PrioritizedReplay)  # (with_priorities: see the docstring)
            c = int(block.completes[j])
            replay.append(*args, td_errors=td[k : k + c])
            k += c
