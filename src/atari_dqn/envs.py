"""DeepMind-style Atari preprocessing on Gymnasium + ale-py.

The stack built by :func:`make_env` is, from the emulator outwards::

    ale_py AtariEnv(frameskip=1, full action space, max_num_frames_per_episode=max_frames,
                    obs_type="ram")
    -> ScreenSpace (this module)      declares the screen space for AtariPreprocessing (speed)
    -> gymnasium AtariPreprocessing   no-op reset, frame skip + max-pool, 84x84 grayscale
    -> AtariGame (this module)        action subset, FIRE on reset/life loss, episodic life
                                      with pseudo resets, reward clipping, per-game stats
    -> gymnasium FrameStackObservation (frame_stack, 84, 84) uint8, oldest first

Only what Gymnasium's wrappers do not do is written here (:class:`AtariGame`).
The ALE is at ``env.unwrapped.ale`` (e.g. ``getScreenRGB()`` for videos).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar

import ale_py
import gymnasium as gym
import numpy as np
from ale_py.env import AtariEnv
from gymnasium.spaces import Box, Discrete
from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

from atari_dqn.config import ACTIONS_ALIASES, UsageError

if TYPE_CHECKING:
    from atari_dqn.config import Config

gym.register_envs(ale_py)
# The emulator banner on every ROM load is noise on the terminal and in logs.
ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)

__all__ = [
    "ENV_ID_HELP",
    "EnvError",
    "AtariGame",
    "ScreenSpace",
    "check_env_id",
    "resolve_actions",
    "make_env",
    "EnvSettings",
    "ALL_ACTIONS",
]

ENV_ID_HELP = (
    "expected an ALE game as XNoFrameskip-v4 or ALE/X-v5 "
    "(e.g. BreakoutNoFrameskip-v4, ALE/Breakout-v5)"
)

#: The 18 ALE action names, in ALE id order (index == ``ale_py.Action`` value).
ALL_ACTIONS: tuple[str, ...] = tuple(
    a.name for a in sorted(ale_py.Action.__members__.values(), key=lambda a: a.value)
)

# The course project's reduced action sets (FIRE is pressed automatically by AtariGame).
_COURSE_ACTIONS: dict[str, tuple[str, ...]] = {"breakout": ("NOOP", "RIGHT", "LEFT")}

_ID_RE = re.compile(r"^(?:[A-Za-z0-9]+NoFrameskip-v4|ALE/[A-Za-z0-9]+-v5)$")
_ATARI_ENTRY_POINT = "ale_py.env:AtariEnv"


class EnvError(UsageError, ValueError):
    """Bad user input about the environment (unknown id, unknown action name, ...)."""


# ----------------------------------------------------------------------------- ids and actions


def game_of(env_id: str) -> str:
    """The ale-py ROM id (snake_case, e.g. 'breakout') of a checked env id."""
    return gym.spec(env_id).kwargs["game"]


def check_env_id(env_id: str) -> None:
    """Raise :class:`EnvError` unless ``env_id`` is an ALE game id we support.

    Accepted: ``XNoFrameskip-v4`` and ``ALE/X-v5`` ids registered by ale-py. Cheap: only a
    registry lookup and a ROM-file existence check, no emulator is created.
    """
    if not isinstance(env_id, str) or not _ID_RE.match(env_id):
        raise EnvError(f"unknown environment id {env_id!r}: {ENV_ID_HELP}")
    try:
        spec = gym.spec(env_id)
    except gym.error.Error:
        raise EnvError(f"unknown environment id {env_id!r}: {ENV_ID_HELP}") from None
    if spec.entry_point != _ATARI_ENTRY_POINT or "game" not in spec.kwargs:
        raise EnvError(f"unknown environment id {env_id!r}: {ENV_ID_HELP}")
    try:
        ale_py.roms.get_rom_path(spec.kwargs["game"])
    except Exception:
        raise EnvError(
            f"environment id {env_id!r}: the ROM for {spec.kwargs['game']!r} is not installed"
        ) from None


@cache
def minimal_actions(game: str) -> tuple[str, ...]:
    """The game's minimal action set, in ALE order (loads the ROM once per game)."""
    ale = ale_py.ALEInterface()
    ale.setLoggerMode(ale_py.LoggerMode.Error)
    rom = ale_py.roms.get_rom_path(game)
    if rom is None:
        raise EnvError(f"no ROM for {game!r} in ale-py")
    ale.loadROM(rom)
    return tuple(a.name for a in ale.getMinimalActionSet())


def resolve_actions(env_id: str, actions: str) -> tuple[str, ...]:
    """Names of the agent's actions, in agent-index order.

    ``actions`` is ``"course"`` (the course project's: Breakout NOOP, RIGHT, LEFT with FIRE
    automatic; any other game: its minimal set; ``"seed"``, its old name, is accepted),
    ``"minimal"`` (the game's minimal set, ALE order), ``"full"`` (all 18) or a comma-separated
    list of names from the game's minimal set (case-insensitive).
    """
    check_env_id(env_id)
    game = game_of(env_id)
    key = actions.strip().lower() if isinstance(actions, str) else ""
    key = ACTIONS_ALIASES.get(key, key)
    if key == "course":
        return _COURSE_ACTIONS.get(game, minimal_actions(game))
    if key == "minimal":
        return minimal_actions(game)
    if key == "full":
        return ALL_ACTIONS
    minimal = minimal_actions(game)
    names = tuple(n.strip().upper() for n in str(actions).split(","))
    hint = f"expected 'course', 'minimal', 'full' or a comma list from {','.join(minimal)}"
    if not names or any(not n for n in names):
        raise EnvError(f"bad action list {actions!r} for {env_id}: {hint}")
    for n in names:
        if n not in minimal:
            raise EnvError(f"unknown action {n!r} for {env_id}: {hint}")
    if len(set(names)) != len(names):
        raise EnvError(f"duplicate action in {actions!r} for {env_id}: {hint}")
    return names


def ale_of(env: gym.Env[Any, Any]) -> ale_py.ALEInterface:
    """The ALE interface under a (wrapped) Atari env: screens, lives, emulator state."""
    ale: ale_py.ALEInterface = getattr(env.unwrapped, "ale")  # noqa: B009 (AtariEnv's, untyped)
    return ale


def _atari(env: gym.Env[Any, Any]) -> AtariEnv:
    inner = env.unwrapped
    if not isinstance(inner, AtariEnv):
        raise TypeError(f"not an ALE env: {type(inner).__name__}")
    return inner


# ----------------------------------------------------------------------------- wrappers


class ScreenSpace(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Declare the grayscale screen as observation space of an ``obs_type="ram"`` AtariEnv.

    :class:`~gymnasium.wrappers.AtariPreprocessing` sizes its buffers from the inner observation
    space but reads every frame straight from ``ale`` and ignores the inner observations. Asking
    AtariEnv for the 128-byte RAM skips a screen copy per emulator frame (~13 us, ~10% of a
    training step). This wrapper only fixes the declared space; observations pass through.
    """

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        height, width = ale_of(env).getScreenDims()
        self.observation_space = Box(0, 255, (height, width), np.uint8)


class AtariGame(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Action subset, automatic FIRE, episodic life, reward clipping and per-game stats.

    Sits on top of :class:`gymnasium.wrappers.AtariPreprocessing` whose underlying ``AtariEnv``
    uses the full (18) action space, so that inner action index == ALE action id.

    * Agent action ``i`` presses the ALE action named ``actions[i]``.
    * FIRE (if in the game's minimal set) is pressed after every real reset (resetting again if
      the game ends during it) and after every life loss.
    * ``training=True``: a life loss returns ``terminated=True``; the next ``reset()`` is a pseudo
      reset that continues the game (pressing FIRE). A real reset happens when the game is over
      (terminal or frame cap), on ``reset(seed=...)`` or ``reset(options={"full_reset": True})``.
      Rewards are clipped to their sign.
    * ``training=False``: one episode is one whole game; every ``reset()`` is real; raw rewards.
    * ``info`` always has ``lives`` and ``raw_reward``; the step that ends a game adds
      ``game_over``, ``game_return`` (raw, over all lives), ``game_length`` (agent steps) and
      ``game_frames`` (emulator frames, including no-ops and automatic FIREs). Rewards earned by
      an automatic FIRE count in ``game_return`` (and, in evaluation, in that step's reward).
    * If a game ends during the automatic FIRE of a pseudo reset (which needs a game that ends
      within one agent step of a non-final life loss), a real reset follows and the finished
      game's stats come in the reset info under ``"previous_game"``.
    """

    def __init__(self, env: gym.Env, *, actions: tuple[str, ...], training: bool):
        gym.utils.RecordConstructorArgs.__init__(self, actions=actions, training=training)
        gym.Wrapper.__init__(self, env)
        inner = list(_atari(env).get_action_meanings())
        actions = tuple(actions)
        if not actions:
            raise EnvError("empty action list")
        for name in actions:
            if name not in inner:
                raise EnvError(f"unknown action {name!r}: expected names from {', '.join(inner)}")
        self.actions = actions
        self.training = bool(training)
        self._map = tuple(inner.index(name) for name in actions)
        self.action_space = Discrete(len(actions))
        self._ale = ale_of(env)
        minimal = {a.name for a in self._ale.getMinimalActionSet()}
        self._fire = inner.index("FIRE") if "FIRE" in minimal else None
        self._needs_real_reset = True
        self._lives = 0
        self._game_return = 0.0
        self._game_length = 0
        self._last_obs: Any = None

    # -- helpers

    def _new_game(self) -> None:
        self._game_return = 0.0
        self._game_length = 0

    def _game_stats(self) -> dict[str, Any]:
        return {
            "game_over": True,
            "game_return": float(self._game_return),
            "game_length": int(self._game_length),
            "game_frames": int(self._ale.getEpisodeFrameNumber()),
        }

    def _real_reset(self, seed: int | None, options: dict[str, Any] | None):
        obs, info = self.env.reset(seed=seed, options=options)
        self._new_game()
        if self._fire is not None:
            for _ in range(8):  # FireResetEnv: if the game ends while pressing FIRE, reset again
                obs, reward, terminated, truncated, info = self.env.step(self._fire)
                self._game_return += float(reward)
                if not (terminated or truncated):
                    break
                obs, info = self.env.reset(options=options)
                self._new_game()
        return obs, info

    # -- gym API

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        full = (
            seed is not None
            or self._needs_real_reset
            or not self.training
            or bool(options and options.get("full_reset"))
        )
        ended: dict[str, Any] | None = None
        if full:
            obs, info = self._real_reset(seed, options)
        elif self._fire is not None:
            # Pseudo reset: continue the game, launching the next life.
            obs, reward, terminated, truncated, info = self.env.step(self._fire)
            self._game_return += float(reward)
            if terminated or truncated:  # the game ended during the automatic FIRE (rare)
                ended = self._game_stats()
                obs, info = self._real_reset(None, options)
        else:
            # Pseudo reset without FIRE: the current frame is the first of the new episode.
            obs, info = self._last_obs, {}
        self._needs_real_reset = False
        self._lives = lives = self._ale.lives()
        info = dict(info)
        info["lives"] = lives
        if ended is not None:
            info["previous_game"] = ended
        self._last_obs = obs
        return obs, info

    def step(self, action):
        obs, raw, terminated, truncated, info = self.env.step(self._map[action])
        raw = float(raw)
        self._game_length += 1
        lives = self._ale.lives()
        # AtariPreprocessing (terminal_on_life_loss=False) reports game-level end only.
        game_over = terminated or truncated
        if lives < self._lives and not game_over:
            if self.training:
                terminated = True  # end of the training episode; reset() will pseudo-reset
            elif self._fire is not None:
                obs, reward, terminated, truncated, info = self.env.step(self._fire)
                raw += float(reward)
                lives = self._ale.lives()
                game_over = terminated or truncated
        self._lives = lives
        self._game_return += raw
        info["lives"] = lives
        info["raw_reward"] = raw
        if game_over:  # terminal or frame cap: the whole game is over
            self._needs_real_reset = True
            info.update(self._game_stats())
        self._last_obs = obs
        reward = float((raw > 0.0) - (raw < 0.0)) if self.training else raw
        return obs, reward, bool(terminated), bool(truncated), info

    # -- state (see env_state)

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """This wrapper's part of the env state: where the game and the episode stand."""
        arrays = {} if self._last_obs is None else {"last_obs": np.asarray(self._last_obs)}
        meta = {
            "needs_real_reset": self._needs_real_reset,
            "lives": int(self._lives),
            "game_return": float(self._game_return),
            "game_length": int(self._game_length),
        }
        return arrays, meta

    def load_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        self._needs_real_reset = meta["needs_real_reset"]
        self._lives = meta["lives"]
        self._game_return = meta["game_return"]
        self._game_length = meta["game_length"]
        self._last_obs = np.array(arrays["last_obs"]) if "last_obs" in arrays else None


# ----------------------------------------------------------------------------- state


W = TypeVar("W", bound=gym.Env[Any, Any])


def _find(env: gym.Env[Any, Any], kind: type[W]) -> W:
    while not isinstance(env, kind):
        if not isinstance(env, gym.Wrapper):
            raise TypeError(f"{kind.__name__} not found in the env stack")
        env = env.env
    return env


def env_state(env: gym.Env) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Everything that decides the env's future: emulator (with its RNG), no-op RNG, wrappers.

    Restoring it into an env built with the same arguments continues the episode exactly, so a
    resumed run sees the same frames as an uninterrupted one.
    """
    stack = _find(env, FrameStackObservation)
    game = _find(env, AtariGame)
    pre = _find(env, AtariPreprocessing)
    ale_bytes = ale_of(env).cloneState(include_rng=True).serialize()
    game_arrays, game_meta = game.state()
    arrays = {
        "ale": np.frombuffer(ale_bytes, dtype=np.uint8).copy(),
        "obs_buffer": np.stack(pre.obs_buffer),
        "obs_queue": np.stack(list(stack.obs_queue)),
        **game_arrays,
    }
    meta = {
        "np_random": env.unwrapped.np_random.bit_generator.state,
        "preprocessing": {"lives": int(pre.lives), "game_over": bool(pre.game_over)},
        "game": game_meta,
    }
    return arrays, meta


def load_env_state(env: gym.Env, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    stack = _find(env, FrameStackObservation)
    game = _find(env, AtariGame)
    pre = _find(env, AtariPreprocessing)
    env.reset()  # wrappers such as OrderEnforcing only step after a reset; all is overwritten
    ale_of(env).restoreState(ale_py.ALEState(arrays["ale"].tobytes()))
    env.unwrapped.np_random.bit_generator.state = meta["np_random"]
    for buf, saved in zip(pre.obs_buffer, arrays["obs_buffer"], strict=True):
        buf[...] = saved
    pre.lives = meta["preprocessing"]["lives"]
    pre.game_over = meta["preprocessing"]["game_over"]
    stack.obs_queue.clear()
    stack.obs_queue.extend(np.array(frame) for frame in arrays["obs_queue"])
    game.load_state(arrays, meta["game"])


# ----------------------------------------------------------------------------- settings

TRAINING_MAX_FRAMES = 108_000  # the cap on a training game (30 minutes), whatever evaluation's


@dataclass(frozen=True)
class EnvSettings:
    """The game a run plays, as every env builder takes it and every model file records it:
    the env id, the action set (ALE names, in the network's output order) and what
    preprocessing does with them. The one place these settings are named: a run's config.toml
    has them as ``Config`` fields, a model file as :meth:`metadata` strings."""

    env_id: str
    actions: tuple[str, ...]
    noop_max: int = 30  # up to this many random no-ops at each game start (emulator frames)
    frame_skip: int = 4  # emulator frames per agent step
    sticky_actions: float = -1.0  # sticky-action probability; -1: the env id's default
    # Cap on one game, in emulator frames: a run's evaluation games (--eval-max-frames); its
    # training games keep TRAINING_MAX_FRAMES.
    max_frames: int = 108_000

    # Model-file key of each field (``max_frames`` is the config's ``eval_max_frames``), and
    # the flag of `atari-dqn evaluate` that overrides it.
    KEYS = (
        ("noop_max", "noop_max", "--noop-max"),
        ("frame_skip", "frame_skip", "--frame-skip"),
        ("sticky_actions", "sticky_actions", "--sticky-actions"),
        ("max_frames", "eval_max_frames", "--max-frames"),
    )

    @classmethod
    def of(cls, config: Config, actions: tuple[str, ...]) -> EnvSettings:
        """A run's settings: its config, with its action set resolved."""
        return cls(
            config.env_id,
            tuple(actions),
            noop_max=config.noop_max,
            frame_skip=config.frame_skip,
            sticky_actions=config.sticky_actions,
            max_frames=config.eval_max_frames,
        )

    @property
    def repeat_action_probability(self) -> float | None:
        """For the ALE: None keeps the env id's default (v4: 0, v5: 0.25)."""
        return None if self.sticky_actions < 0 else self.sticky_actions

    def metadata(self) -> dict[str, str]:
        """The model file's strings for these settings."""
        meta = {"env_id": self.env_id, "actions": ",".join(self.actions)}
        for name, key, _ in self.KEYS:
            meta[key] = str(getattr(self, name))
        return meta

    @classmethod
    def from_metadata(cls, meta: Mapping[str, str]) -> EnvSettings:
        """Read back :meth:`metadata`. Files that predate a key get what runs used then: the
        field's default (Breakout's id; the minimal action set). ValueError if a value is not
        a number."""
        env_id = meta.get("env_id", "BreakoutNoFrameskip-v4")
        actions = meta.get("actions")
        values: dict[str, Any] = {}
        for f_name, key, _ in cls.KEYS:
            if key in meta:
                values[f_name] = float(meta[key]) if f_name == "sticky_actions" else int(meta[key])
        return cls(
            env_id,
            tuple(actions.split(",")) if actions else resolve_actions(env_id, "minimal"),
            **values,
        )


# ----------------------------------------------------------------------------- factory


def make_env(settings: EnvSettings, *, training: bool, frame_stack: int = 4) -> gym.Env:
    """Build the preprocessed Atari env of ``settings`` (see the module docstring); ``training``
    plays episodic lives with clipped rewards, else full games with raw scores.

    Observations are ``Box(0, 255, (frame_stack, 84, 84), uint8)``, oldest frame first; the
    action space is ``Discrete(len(actions))``. ``env.unwrapped.ale`` is the ALE interface.
    """
    env_id, actions = settings.env_id, tuple(settings.actions)
    noop_max, frame_skip, max_frames = settings.noop_max, settings.frame_skip, settings.max_frames
    repeat_action_probability = settings.repeat_action_probability
    check_env_id(env_id)
    if noop_max < 0:
        raise EnvError(f"noop_max must be >= 0, got {noop_max}")
    if frame_skip < 1:
        raise EnvError(f"frame_skip must be >= 1, got {frame_skip}")
    if frame_stack < 1:
        raise EnvError(f"frame_stack must be >= 1, got {frame_stack}")
    if max_frames < 1:
        raise EnvError(f"max_frames must be >= 1, got {max_frames}")
    for name in actions:
        if name not in ALL_ACTIONS:
            raise EnvError(f"unknown action {name!r}: expected ALE names like NOOP, FIRE, LEFT")
    kwargs: dict[str, Any] = {
        "frameskip": 1,
        "full_action_space": True,  # inner action index == ALE action id; AtariGame subsets
        "max_num_frames_per_episode": int(max_frames),
        "obs_type": "ram",  # cheap; AtariPreprocessing reads the screen itself (see ScreenSpace)
    }
    if repeat_action_probability is not None:
        kwargs["repeat_action_probability"] = float(repeat_action_probability)
    env = gym.make(env_id, disable_env_checker=True, **kwargs)
    env = ScreenSpace(env)
    env = AtariPreprocessing(
        env,
        noop_max=noop_max,
        frame_skip=frame_skip,
        screen_size=84,
        terminal_on_life_loss=False,
        grayscale_obs=True,
        scale_obs=False,
    )
    env = AtariGame(env, actions=actions, training=training)
    return FrameStackObservation(env, frame_stack, padding_type="reset")
