"""Score a trained model: the evaluation protocol on a model file or a run's model, as
``atari-dqn evaluate`` and Python callers use it.

The env is rebuilt as the run trained it (env id, action set, no-ops, frame skip, sticky
actions, frame cap, all recorded in the model file); each setting may be overridden, and every
override that differs from the run's is reported as a note.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from atari_dqn.artifacts import load_model, resolve_model_path
from atari_dqn.build import build_policy, resolve_device
from atari_dqn.config import UsageError
from atari_dqn.envs import check_env_id, make_env, resolve_actions
from atari_dqn.evaluate import play_games, png_writer

# Env settings a model file records, the flag that overrides each, and the value for model
# files that predate them (make_env's defaults, which those runs trained with).
ENV_SETTINGS = (
    ("noop_max", "--noop-max", 30.0),
    ("frame_skip", "--frame-skip", 4.0),
    ("sticky_actions", "--sticky-actions", -1.0),
    ("eval_max_frames", "--max-frames", 108_000.0),
)


@dataclass(frozen=True)
class ModelScore:
    model: Path
    env_id: str
    step: str | None  # training step of the weights, from the model file
    actions: tuple[str, ...]
    env: dict[str, float]  # the ENV_SETTINGS used
    notes: list[str]  # overrides that differ from the run's settings
    scores: list[float]  # raw full-game scores
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
            "notes": self.notes, "scores": self.scores, "mean": self.mean, "std": self.std,
        }  # fmt: skip


def env_settings(
    meta: dict[str, str], overrides: dict[str, float | None]
) -> tuple[dict[str, float], list[str]]:
    """The run's settings (from the model file), each overridden where ``overrides`` gives a
    value, with a note for every override that differs from what the run trained with."""
    settings: dict[str, float] = {}
    notes: list[str] = []
    for key, flag, default in ENV_SETTINGS:
        recorded = float(meta[key]) if key in meta else None
        given = overrides.get(key)
        if given is not None:
            settings[key] = float(given)
            if recorded is not None and float(given) != recorded:
                notes.append(f"note: {flag} {given:g} differs from the run's {recorded:g}")
        else:
            settings[key] = recorded if recorded is not None else default
    return settings, notes


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
) -> ModelScore:
    """Play ``episodes`` full games with a model file, or with a run directory's model
    (``which``: latest, best, N, or the newest evaluation's); ``frames``: a PNG per frame
    there; ``video``: an MP4 or GIF of the games."""
    path = resolve_model_path(path, which)
    network, meta = load_model(path)
    env_id = env_id or meta.get("env_id", "BreakoutNoFrameskip-v4")
    check_env_id(env_id)
    if meta.get("actions"):
        actions = tuple(meta["actions"].split(","))
    else:
        actions = resolve_actions(env_id, "minimal")
    if len(actions) != network.num_actions:
        raise UsageError(
            f"model {path} has {network.num_actions} outputs but {len(actions)} actions"
        )
    settings, notes = env_settings(meta, overrides or {})
    policy = build_policy(network, resolve_device(device))
    sticky = settings["sticky_actions"]
    env = make_env(
        env_id,
        training=False,
        actions=actions,
        noop_max=int(settings["noop_max"]),
        frame_skip=int(settings["frame_skip"]),
        max_frames=int(settings["eval_max_frames"]),
        repeat_action_probability=None if sticky < 0 else sticky,
    )
    sink = png_writer(frames) if frames is not None else None
    with contextlib.ExitStack() as stack:
        writer = None
        if video is not None:
            from atari_dqn.video import VideoWriter

            writer = stack.enter_context(VideoWriter(video))
        scores = play_games(
            env,
            policy.act,
            games=episodes,
            epsilon=epsilon,
            seed=seed,
            on_frame=sink,
            on_scored_frame=writer,
        )
    return ModelScore(
        path,
        env_id,
        meta.get("step"),
        actions,
        settings,
        notes,
        scores,
        video_frames=writer.frames if writer is not None else None,
    )
