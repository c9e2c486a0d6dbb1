"""Evaluation protocol: full games over all lives, raw score, ε-greedy, frame-capped.

The evaluation env is separate from the training env (training episodes are never disturbed)
and is re-seeded for every evaluation from the run seed and the evaluation index, so a score
depends only on the weights being evaluated, not on what happened before.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import gymnasium as gym
import numpy as np

from atari_dqn.envs import ale_of
from atari_dqn.killpoints import kill_point

# (states (N, 4, 84, 84) uint8, epsilon, rng) -> actions (N,)
ActFn = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]
# (game index, frame index, RGB frame (H, W, 3)) -> None
FrameSink = Callable[[int, int, np.ndarray], None]
# (game index, frame index, RGB frame (H, W, 3), raw score of the game so far) -> None
ScoredFrameSink = Callable[[int, int, np.ndarray, float], None]


class EvaluationStopped(Exception):
    """A stop was requested (SIGINT, SIGTERM) while games were being played: the evaluation is
    abandoned, and played again, whole, by the run that continues (it is a pure function of the
    weights and the seed)."""


# () -> whether to abandon the games now (a signal arrived); checked once per agent step.
StopFn = Callable[[], bool]


@dataclass(frozen=True)
class EvalResult:
    index: int  # evaluation number (rewards.txt first column)
    step: int  # agent steps of training when evaluated
    scores: tuple[float, ...]  # raw full-game scores
    seconds: float = field(default=0.0, compare=False)  # wall time it took (not a result)

    @property
    def mean(self) -> float:
        return float(np.mean(self.scores))

    @property
    def std(self) -> float:
        return float(np.std(self.scores))


@dataclass(frozen=True)
class Game:
    score: float  # raw full-game score (all lives)
    length: int  # agent steps


def play(
    env: gym.Env,
    act: ActFn,
    *,
    games: int,
    epsilon: float,
    seed: int,
    on_frame: FrameSink | None = None,
    on_scored_frame: ScoredFrameSink | None = None,
    first_game: int = 0,
    stop: StopFn | None = None,
) -> list[Game]:
    """Play ``games`` full games; return each game's raw, unclipped score and its length.

    Game ``g`` starts from ``reset(seed=seed + g)`` and acts with ε-noise drawn from a generator
    seeded the same way, so the result is a pure function of the weights and ``seed``; games
    ``first_game`` to ``first_game + games - 1`` of a set are played (a video of one game of an
    evaluation replays exactly that game). ``stop``: asked at every step; when it says so,
    :class:`EvaluationStopped` is raised (a game can last 27,000 steps, minutes).
    """
    played: list[Game] = []
    for game in range(first_game, first_game + games):
        rng = np.random.default_rng([seed, game])
        obs, _ = env.reset(seed=seed + game)
        frame = 0
        score = 0.0
        _show(env, game, frame, score, on_frame, on_scored_frame)
        while True:
            action = int(act(obs[None], epsilon, rng)[0])
            obs, _, terminated, truncated, info = env.step(action)
            score += float(info["raw_reward"])
            frame += 1
            kill_point("eval.step")
            if stop is not None and stop():
                raise EvaluationStopped(f"stopped in game {game}, at frame {frame}")
            _show(env, game, frame, score, on_frame, on_scored_frame)
            if terminated or truncated:
                break
        played.append(Game(float(info.get("game_return", score)), frame))
    return played


def _show(
    env: gym.Env,
    game: int,
    frame: int,
    score: float,
    on_frame: FrameSink | None,
    on_scored_frame: ScoredFrameSink | None,
) -> None:
    """Hand the screen (native resolution, colour) to the sinks that want it."""
    if on_frame is None and on_scored_frame is None:
        return
    rgb = ale_of(env).getScreenRGB()
    if on_frame is not None:
        on_frame(game, frame, rgb)
    if on_scored_frame is not None:
        on_scored_frame(game, frame, rgb, score)


def scheduled_evaluation(
    env: gym.Env,
    act: ActFn,
    *,
    index: int,
    step: int,
    games: int,
    epsilon: float,
    seed_base: int,
    stop: StopFn | None = None,
) -> EvalResult:
    """Evaluation number ``index`` of a training run, seeded from the run and the index."""
    played = play(
        env, act, games=games, epsilon=epsilon, seed=evaluation_seed(seed_base, index), stop=stop
    )
    return EvalResult(index=index, step=step, scores=tuple(g.score for g in played))


def evaluation_seed(seed_base: int, index: int) -> int:
    """The seed of evaluation number ``index`` of a run (its games are seed, seed + 1, ...)."""
    return seed_base + 1000 * index


def png_writer(directory: Path) -> FrameSink:
    """A frame sink writing ``DIR/game_GG/FFFFFF.png`` (the course project's RENDER option)."""
    import imageio.v3 as iio

    directory = Path(directory)

    def write(game: int, frame: int, rgb: np.ndarray) -> None:
        game_dir = directory / f"game_{game:02d}"
        if frame == 0:
            game_dir.mkdir(parents=True, exist_ok=True)
        iio.imwrite(game_dir / f"{frame:06d}.png", rgb)

    return write
