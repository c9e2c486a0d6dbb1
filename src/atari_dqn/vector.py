"""Batched environments for the training loop: N games behind one send/recv interface.

Both implementations give the loop the same thing, a :class:`VecStep` per call: for each env,
whether a real transition happened (to append to the replay) and whether a new training episode
starts (to begin in the replay), with the same semantics as the single preprocessed env:
life loss ends a training episode, FIRE is pressed automatically after a reset and after a life
loss (that press is not an agent step), rewards are clipped to their sign, full-game raw scores
are reported when a game ends.

* :class:`SingleEnv` drives one :func:`atari_dqn.envs.make_env` env; its state can be saved
  exactly, so a resumed run continues frame for frame.
* :class:`AtariVector` drives ale-py's C++ ``AtariVectorEnv``: N emulators stepped in threads,
  started by ``send`` and collected by ``recv`` so the learner can update in between.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from atari_dqn import envs
from atari_dqn.replay import TransitionSink


@dataclass
class VecStep:
    obs: np.ndarray  # (N, 4, 84, 84) uint8: the state each env acts from next
    next_frames: np.ndarray  # (N, 84, 84) newest frame of s' for envs with a transition
    rewards: np.ndarray  # (N,) float32, clipped to the sign (training reward)
    terminated: np.ndarray  # (N,) bool: life loss or game over
    truncated: np.ndarray  # (N,) bool: frame cap
    transition: np.ndarray  # (N,) bool: a real agent step happened (append it)
    begin: np.ndarray  # (N,) bool: a new training episode starts at obs[i] (begin it)
    game_returns: list[float] = field(default_factory=list)  # raw scores of games that ended
    game_lengths: list[int] = field(default_factory=list)  # their agent steps


class VecEnv(Protocol):
    """N training envs behind one interface: ``send`` starts a step, ``recv`` collects it, so
    a learner can update while the emulators run. ``state`` is None where it cannot be saved."""

    num_envs: int

    def reset(self, seed: int) -> VecStep: ...

    def send(self, actions: np.ndarray) -> None: ...

    def recv(self) -> VecStep: ...

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None: ...

    def load_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> np.ndarray: ...

    def close(self) -> None: ...


def record(sink: TransitionSink, actions: np.ndarray, vs: VecStep) -> None:
    """Write one :class:`VecStep` into a replay (or an actor's recorder): a transition for each
    env that made one, then a new episode for each env that begins one (in that order, so an
    episode's last transition lands before the next episode's first frame)."""
    for i in np.flatnonzero(vs.transition):
        sink.append(
            int(i), int(actions[i]), float(vs.rewards[i]), vs.next_frames[i],
            bool(vs.terminated[i]), bool(vs.truncated[i]),
        )  # fmt: skip
    for i in np.flatnonzero(vs.begin):
        sink.begin(int(i), vs.obs[i, -1])


class SingleEnv:
    """One preprocessed env behind the batched interface (N = 1); resets happen in ``recv``."""

    num_envs = 1

    def __init__(self, env: gym.Env) -> None:
        self.env = env
        self._action = 0
        self._obs: np.ndarray | None = None

    def reset(self, seed: int) -> VecStep:
        obs, _ = self.env.reset(seed=seed)
        return self._fresh(obs)

    def _fresh(self, obs: np.ndarray) -> VecStep:
        self._obs = obs
        z = np.zeros(1, dtype=bool)
        return VecStep(
            obs=obs[None], next_frames=obs[None, -1], rewards=np.zeros(1, np.float32),
            terminated=z, truncated=z, transition=z, begin=np.ones(1, dtype=bool),
        )  # fmt: skip

    def send(self, actions: np.ndarray) -> None:
        self._action = int(actions[0])

    def recv(self) -> VecStep:
        obs, reward, terminated, truncated, info = self.env.step(self._action)
        returns, lengths = [], []
        if info.get("game_over"):
            returns.append(float(info["game_return"]))
            lengths.append(int(info["game_length"]))
        begin = terminated or truncated
        next_obs = obs
        if begin:  # the next training episode (a pseudo reset after a life loss, or a new game)
            next_obs, _ = self.env.reset()
        self._obs = next_obs
        return VecStep(
            obs=next_obs[None],
            next_frames=obs[None, -1],
            rewards=np.array([reward], np.float32),
            terminated=np.array([terminated]),
            truncated=np.array([truncated]),
            transition=np.ones(1, dtype=bool),
            begin=np.array([begin]),
            game_returns=returns,
            game_lengths=lengths,
        )

    def close(self) -> None:
        self.env.close()

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        arrays, meta = envs.env_state(self.env)
        if self._obs is not None:
            arrays["obs"] = self._obs
        return arrays, meta

    def load_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> np.ndarray:
        """Restore the env exactly; returns the stacked observation to act from."""
        envs.load_env_state(self.env, arrays, meta)
        self._obs = np.array(arrays["obs"])
        return self._obs[None]


def ale_vector_env(
    settings: envs.EnvSettings, num_envs: int, *, num_threads: int, full_action_space: bool
) -> Any:
    """ale-py's C++ ``AtariVectorEnv`` as :class:`AtariVector` drives it: 84x84 gray, one
    frame per observation, FIRE at reset, full games (life loss only reported), raw rewards."""
    from ale_py.vector_env import AtariVectorEnv

    sticky = settings.repeat_action_probability
    if sticky is None:  # the env id's default, as gymnasium's ids set it
        sticky = 0.25 if settings.env_id.startswith("ALE/") else 0.0
    return AtariVectorEnv(
        envs.game_of(settings.env_id),
        num_envs,
        num_threads=num_threads,
        frameskip=settings.frame_skip,
        stack_num=1,
        noop_max=settings.noop_max,
        use_fire_reset=True,
        episodic_life=False,
        life_loss_info=True,
        reward_clipping=False,
        max_num_frames_per_episode=settings.max_frames,
        repeat_action_probability=sticky,
        full_action_space=full_action_space,
    )


class AtariVector:
    """N games in ale-py's C++ ``AtariVectorEnv`` (threads), with :class:`SingleEnv` semantics.

    The C++ env stacks no frames here (``stack_num=1``): stacks are kept in numpy so that they
    restart at every training episode, exactly as the replay rebuilds them. FIRE after a life
    loss is sent by this class on the env's next step, which is then not an agent step.
    """

    def __init__(
        self,
        settings: envs.EnvSettings,
        num_envs: int,
        *,
        frame_stack: int = 4,
        num_threads: int = 0,
    ) -> None:
        envs.check_env_id(settings.env_id)
        actions = settings.actions
        minimal = envs.minimal_actions(envs.game_of(settings.env_id))
        full = any(a not in minimal for a in actions)
        action_set = envs.ALL_ACTIONS if full else minimal
        self.num_envs = num_envs
        self._env = ale_vector_env(
            settings,
            num_envs,
            num_threads=num_threads or min(num_envs, os.cpu_count() or 1),
            full_action_space=full,
        )
        self._map = np.array([action_set.index(a) for a in actions], dtype=np.int64)
        self._fire = action_set.index("FIRE") if "FIRE" in minimal else -1
        self._stack = frame_stack
        self.stacks = np.zeros((num_envs, frame_stack, 84, 84), dtype=np.uint8)
        self._lives = np.zeros(num_envs, dtype=np.int64)
        self._game_return = np.zeros(num_envs, dtype=np.float64)
        self._game_length = np.zeros(num_envs, dtype=np.int64)
        # What the env's next step is: 0 an agent step, 1 FIRE after a life loss, 2 auto-reset.
        self._pending = np.zeros(num_envs, dtype=np.int8)

    def reset(self, seed: int) -> VecStep:
        obs, info = self._env.reset(seed=seed)
        frames = obs[:, -1]
        self.stacks[:] = frames[:, None]
        self._lives[:] = info["lives"]
        self._game_return[:] = 0.0
        self._game_length[:] = 0
        self._pending[:] = 0
        n = self.num_envs
        z = np.zeros(n, dtype=bool)
        return VecStep(
            obs=self.stacks.copy(), next_frames=frames, rewards=np.zeros(n, np.float32),
            terminated=z, truncated=z, transition=z, begin=np.ones(n, dtype=bool),
        )  # fmt: skip

    def send(self, actions: np.ndarray) -> None:
        env_actions = self._map[actions]
        env_actions[self._pending == 1] = self._fire
        self._env.send(env_actions)

    def recv(self) -> VecStep:
        obs, raw, terminated, truncated, info = self._env.recv()
        frames = obs[:, -1]
        raw = raw.astype(np.float64)
        lives = info["lives"].astype(np.int64)
        pending = self._pending
        transition = pending == 0
        begin = pending != 0  # the FIRE or reset step that opens the next training episode
        after_reset = pending == 2
        self._game_return[after_reset] = 0.0
        self._game_length[after_reset] = 0
        self._game_return += raw  # the FIRE press's reward counts in the game score too
        self._game_length += transition
        life_lost = (lives < self._lives) & transition
        game_over = (terminated | truncated) & ~(life_lost & (lives > 0) & ~truncated)
        # A FIRE step that itself ends the game opens nothing: the reset comes next.
        begin &= ~game_over
        returns = self._game_return[game_over & ~after_reset].tolist()
        lengths = self._game_length[game_over & ~after_reset].tolist()
        ended = transition & (terminated | truncated | life_lost)
        next_pending = np.zeros_like(pending)
        next_pending[ended & ~game_over] = 1 if self._fire >= 0 else 0
        next_pending[game_over] = 2
        # Games without FIRE: after a life loss the current frame starts the next episode.
        if self._fire < 0:
            begin |= ended & ~game_over
        self._pending = next_pending
        self._lives = lives
        # Roll the stacks of envs that moved on; restart those that begin an episode.
        self.stacks[:, :-1] = self.stacks[:, 1:]
        self.stacks[:, -1] = frames
        self.stacks[begin] = frames[begin, None]
        return VecStep(
            obs=self.stacks.copy(),
            next_frames=frames,
            rewards=np.sign(raw).astype(np.float32),
            terminated=(terminated | life_lost) & transition,
            truncated=truncated & transition,
            transition=transition,
            begin=begin,
            game_returns=returns,
            game_lengths=lengths,
        )

    def state(self) -> None:
        """The C++ emulators' states cannot be saved: a resumed run starts new games."""
        return None

    def load_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> np.ndarray:
        del arrays, meta
        raise ValueError("the C++ vector env's state cannot be restored (state() is None)")

    def close(self) -> None:
        self._env.close()
