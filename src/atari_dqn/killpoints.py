"""Named kill points, for the kill-and-resume tests: a process dies exactly where they say.

``ATARI_DQN_KILL_AT=NAME:N`` makes the process SIGKILL itself the N-th time it reaches the point
``NAME`` (counted in this process). Unset, as in every real run, :func:`kill_point` returns at
once and the loop's per-step points are skipped by one test of :data:`ARMED`. The points:

``train.warmup`` / ``train.learning``  after each agent step before / after learning starts
                         (PQN: each step of its envs in a rollout, before / after its first
                         update)
``eval.step``            each agent step of an evaluation game
``write.model``          a model file fully written to its temporary name, not yet renamed
``write.rewards``        the same for rewards.txt
``checkpoint.chunk``     a replay chunk file of a checkpoint written, not yet renamed
``checkpoint.manifest``  the checkpoint file (which names the chunks) written, not yet renamed
``checkpoint.cleanup``   the new checkpoint in place, the chunks it no longer names not deleted
"""

from __future__ import annotations

import os
import signal

ENV_VAR = "ATARI_DQN_KILL_AT"


def _parse(spec: str | None) -> tuple[str, int] | None:
    if not spec:
        return None
    name, _, count = spec.rpartition(":")
    if not name or not count.isdigit() or int(count) < 1:
        raise ValueError(f"{ENV_VAR}={spec!r}: expected NAME:N with N >= 1")
    return name, int(count)


_TARGET = _parse(os.environ.get(ENV_VAR))
ARMED = _TARGET is not None  # whether any point can fire in this process
_reached = 0


def kill_point(name: str) -> None:
    """SIGKILL this process if it is the point (and the time) ``ATARI_DQN_KILL_AT`` names."""
    global _reached
    if _TARGET is None or name != _TARGET[0]:
        return
    _reached += 1
    if _reached == _TARGET[1]:
        os.kill(os.getpid(), signal.SIGKILL)
