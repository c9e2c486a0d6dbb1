"""A trained model as a player (:func:`load_policy`) and its score under the evaluation
protocol (:func:`score_model`), as ``atari-dqn evaluate`` and Python callers use them.

The env is rebuilt as the run trained it (env id, action set, no-ops, frame skip, sticky
actions, frame cap, all recorded in the model file); each setting may be overridden, and every
override that differs from the run's is reported as a note.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from atari_dqn.agent import EpsilonGreedyPolicy
from atari_dqn.artifacts import ArtifactError, load_model, resolve_model_path
from atari_dqn.build import build_policy, resolve_device
from atari_dqn.config import SEED_LIMIT, UsageError, env_setting_problem
from atari_dqn.envs import EnvSettings, check_env_id, make_env, resolve_actions
from atari_dqn.evaluate import FrameSink, Game, ScoredFrameSink, play, png_writer


@dataclass(frozen=True)
class ModelScore:
    model: Path
    env_id: str
    step: str | None  # training step of the weights, from the model file
    actions: tuple[str, ...]
    env: dict[str, float]  # the env settings used, by model-file key (EnvSettings.KEYS)
    notes: list[str]  # overrides that differ from the run's settings
    scores: list[float]  # raw full-game scores
    lengths: list[int]  # agent steps per game
    video_frames: int | None = None

    @property
    def mean(self) -> float:
        return float(np.mean(self.scores))

    @property
    def std(self) -> float:
        return float(np.std(self.scores))

    def to_json(self, epsilon: float, seed: int) -> dict[str, Any]:
        return {
            "model": str(self.model), "env_id": self.env_id, "step": self.step,
            "actions": list(self.actions), "epsilon": epsilon, "seed": seed, "env": self.env,
            "notes": self.notes, "scores": self.scores, "lengths": self.lengths,
            "mean": self.mean, "std": self.std,
        }  # fmt: skip


def env_settings(
    meta: dict[str, str],
    overrides: dict[str, float | None],
    env_id: str | None = None,
    source: str = "the model file",
) -> tuple[EnvSettings, list[str]]:
    """The run's settings (from the model file ``source``), each overridden where ``overrides``
    gives a value (by model-file key) or ``env_id`` another game, with a note for every
    override that differs from what the run trained with. A recorded value or an override out
    of its bounds (config.env_setting_problem) is refused: ArtifactError for the file,
    UsageError for the flag."""
    for _, key, _ in EnvSettings.KEYS:
        if key not in meta:
            continue
        try:
            value = float(meta[key])
        except ValueError:
            raise ArtifactError(
                f"{source}: its metadata {key} = {meta[key]!r} is not a number"
            ) from None
        problem = env_setting_problem(key, value)
        if problem is not None:
            raise ArtifactError(f"{source}: its metadata {key} = {meta[key]!r}: {problem}")
    try:
        recorded = EnvSettings.from_metadata(meta)
    except ValueError as exc:
        raise ArtifactError(f"{source}: its metadata is not valid: {exc}") from None
    changes: dict[str, Any] = {}
    notes: list[str] = []
    if env_id is not None and env_id != recorded.env_id:
        changes["env_id"] = env_id
        if not meta.get("actions"):  # (files before action sets were recorded: minimal)
            changes["actions"] = resolve_actions(env_id, "minimal")
        if "env_id" in meta:
            notes.append(f"note: --env-id {env_id} differs from the run's {recorded.env_id}")
    for name, key, flag in EnvSettings.KEYS:
        given = overrides.get(key)
        if given is None:
            continue
        problem = env_setting_problem(key, float(given))
        if problem is not None:
            raise UsageError(f"{flag} {problem}")
        value = float(given) if name == "sticky_actions" else int(given)
        changes[name] = value
        if key in meta and value != getattr(recorded, name):
            notes.append(
                f"note: {flag} {given:g} differs from the run's {getattr(recorded, name):g}"
            )
    return dataclasses.replace(recorded, **changes), notes


class Policy:
    """A trained model as a player: acts on frame stacks and plays full games in the env it
    was trained in (``atari_dqn.load_policy``; ``atari-dqn evaluate`` plays through it)."""

    def __init__(
        self,
        path: Path,
        meta: dict[str, str],
        act: EpsilonGreedyPolicy,
        settings: EnvSettings,
        notes: list[str],
    ) -> None:
        self.path = path  # the model file
        self.meta = meta  # its metadata
        self.settings = settings  # the game it plays, as the run trained it unless overridden
        self.notes = notes  # overrides that differ from the run's settings
        self._policy = act

    @property
    def env_id(self) -> str:
        return self.settings.env_id

    @property
    def actions(self) -> tuple[str, ...]:
        """Action names, in the network's output order."""
        return self.settings.actions

    @property
    def env(self) -> dict[str, float]:
        """The env settings it plays with, by model-file key (as ``evaluate --json`` shows)."""
        return {key: float(getattr(self.settings, name)) for name, key, _ in EnvSettings.KEYS}

    @property
    def step(self) -> str | None:
        """The training step of the weights (from the model file)."""
        return self.meta.get("step")

    def act(
        self,
        frames: np.ndarray,
        epsilon: float = 0.0,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        """Actions (indices into ``actions``) for frame stacks, uint8 (N, 4, 84, 84); for one
        stack (4, 84, 84), its action; ε-greedy with ``epsilon`` (greedy by default)."""
        frames = np.asarray(frames, dtype=np.uint8)
        if frames.ndim not in (3, 4) or frames.shape[-2:] != (84, 84):
            raise ValueError(f"expected frame stacks (N, 4, 84, 84), got shape {frames.shape}")
        batch = frames[None] if frames.ndim == 3 else frames
        chosen = self._policy.act(batch, epsilon, rng or np.random.default_rng())
        return chosen[0] if frames.ndim == 3 else chosen

    def make_env(self) -> gym.Env:
        """The evaluation env: the game as the run trained it (full games, raw scores)."""
        return make_env(self.settings, training=False)

    def play(
        self,
        games: int = 1,
        *,
        epsilon: float = 0.05,
        seed: int = 0,
        env: gym.Env | None = None,
        on_frame: FrameSink | None = None,
        on_scored_frame: ScoredFrameSink | None = None,
    ) -> list[Game]:
        """Play full games, as the evaluation protocol does: each game's raw score and length."""
        if not 0 <= seed <= SEED_LIMIT:
            raise UsageError(f"--seed must be between 0 and 2**63 - 1, got {seed}")
        return play(
            env if env is not None else self.make_env(),
            self._policy.act,
            games=games,
            epsilon=epsilon,
            seed=seed,
            on_frame=on_frame,
            on_scored_frame=on_scored_frame,
        )


def load_policy(
    path: Path | str,
    *,
    which: str | None = None,
    env_id: str | None = None,
    overrides: dict[str, float | None] | None = None,
    device: str = "auto",
) -> Policy:
    """A model file, or a run directory's model (``which``: latest, best, N; default the newest
    evaluation's), ready to play in its run's env (each EnvSettings key may be overridden)."""
    path = resolve_model_path(Path(path), which)
    network, meta = load_model(path)
    settings, notes = env_settings(meta, overrides or {}, env_id, source=str(path))
    check_env_id(settings.env_id)
    if len(settings.actions) != network.num_actions:
        raise UsageError(
            f"model {path} has {network.num_actions} outputs but {len(settings.actions)} actions"
        )
    act = build_policy(network, resolve_device(device))
    return Policy(path, meta, act, settings, notes)


def score_model(
    path: Path,
    *,
    which: str | None = None,
    episodes: int = 10,
    epsilon: float = 0.05,
    seed: int = 0,
    env_id: str | None = None,
    overrides: dict[str, float | None] | None = None,
    device: str = "auto",
    frames: Path | None = None,
    video: Path | None = None,
    overwrite_video: bool = False,
) -> ModelScore:
    """Play ``episodes`` full games with a model file, or with a run directory's model
    (``which``: latest, best, N, or the newest evaluation's); ``frames``: a PNG per frame
    there; ``video``: an MP4 or GIF of the games (replacing one only if ``overwrite_video``)."""
    if not 0 <= seed <= SEED_LIMIT:
        raise UsageError(f"--seed must be between 0 and 2**63 - 1, got {seed}")
    policy = load_policy(path, which=which, env_id=env_id, overrides=overrides, device=device)
    sink = png_writer(frames) if frames is not None else None
    with contextlib.ExitStack() as stack:
        writer = None
        if video is not None:
            from atari_dqn.video import VideoWriter

            writer = stack.enter_context(VideoWriter(video, overwrite=overwrite_video))
        games = policy.play(
            episodes, epsilon=epsilon, seed=seed, on_frame=sink, on_scored_frame=writer
        )
    return ModelScore(
        policy.path,
        policy.env_id,
        policy.step,
        policy.actions,
        policy.env,
        policy.notes,
        [g.score for g in games],
        [g.length for g in games],
        video_frames=writer.frames if writer is not None else None,
    )
