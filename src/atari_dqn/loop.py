"""The training loop. It yields progress and evaluation results; it does no I/O of its own.

Step ``t`` (1-based) is one agent step: act ε-greedily, step the env, store the transition;
then, once past warm-up, an update every ``update_every`` steps; a target sync every
``target_update`` steps; an evaluation every ``eval_every`` steps on a separate env.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

from atari_dqn.agent import DQNAgent, UpdateResult
from atari_dqn.evaluate import EvalResult, play_games
from atari_dqn.replay.uniform import UniformReplay
from atari_dqn.schedules import LinearSchedule


class NonFiniteLossError(RuntimeError):
    """The TD loss or the Q-values became NaN or infinite."""


@dataclass(frozen=True)
class LoopSettings:
    total_steps: int
    warmup_steps: int
    update_every: int
    target_update: int
    batch_size: int
    eval_every: int
    eval_games: int
    eval_epsilon: float
    eval_seed: int
    env_seed: int
    report_every: int = 100


@dataclass
class Progress:
    """What happened since the previous report."""

    step: int
    epsilon: float
    updates: int = 0  # gradient updates so far
    loss: float | None = None  # of the latest update
    q_mean: float | None = None
    game_returns: list[float] = field(default_factory=list)  # raw full-game scores finished
    game_lengths: list[int] = field(default_factory=list)  # agent steps per finished game
    evaluation: EvalResult | None = None
    beta: float = 0.0  # prioritized replay's IS exponent at this step (schedule value)
    replay_stats: dict[str, float] = field(default_factory=dict)  # the replay's stats()


class TrainLoop:
    """Holds the loop's state so a caller can inspect it between yields."""

    def __init__(
        self,
        env: gym.Env,
        eval_env: gym.Env,
        agent: DQNAgent,
        replay: UniformReplay,
        epsilon: LinearSchedule,
        beta: Callable[[int], float],
        rng: np.random.Generator,
        settings: LoopSettings,
    ) -> None:
        self.env = env
        self.eval_env = eval_env
        self.agent = agent
        self.replay = replay
        self.epsilon = epsilon
        self.beta = beta
        self.rng = rng
        self.s = settings
        self.step = 0
        self.updates = 0
        self._obs: np.ndarray | None = None
        self._seeded = False

    def _begin_episode(self) -> np.ndarray:
        if self._seeded:
            obs, _ = self.env.reset()
        else:
            obs, _ = self.env.reset(seed=self.s.env_seed)
            self._seeded = True
        self.replay.begin(0, obs[-1])
        return obs

    def evaluate(self, index: int) -> EvalResult:
        scores = play_games(
            self.eval_env,
            self.agent.act,
            games=self.s.eval_games,
            epsilon=self.s.eval_epsilon,
            seed=self.s.eval_seed + 1000 * index,
        )
        return EvalResult(index=index, step=self.step, scores=tuple(scores))

    def run(self) -> Iterator[Progress]:
        s = self.s
        last: UpdateResult | None = None
        report = Progress(step=self.step, epsilon=self.epsilon(self.step))
        while self.step < s.total_steps:
            if self._obs is None:
                self._obs = self._begin_episode()
            self.step += 1
            step = self.step
            eps = self.epsilon(step)
            action = int(self.agent.act(self._obs[None], eps, self.rng)[0])
            obs, reward, terminated, truncated, info = self.env.step(action)
            self.replay.append(0, action, float(reward), obs[-1], terminated, truncated)
            self._obs = None if (terminated or truncated) else obs
            if info.get("game_over"):
                report.game_returns.append(float(info["game_return"]))
                report.game_lengths.append(int(info["game_length"]))

            learning = step > s.warmup_steps and len(self.replay) >= s.batch_size
            if learning and step % s.update_every == 0:
                batch = self.replay.sample(s.batch_size, self.beta(step))
                last = self.agent.update(batch)
                self.replay.update_priorities(batch.indices, last.td_abs.numpy())
                self.updates += 1
            if step % s.target_update == 0:
                self.agent.sync_target()

            evaluation = None
            if step % s.eval_every == 0:
                evaluation = self.evaluate(step // s.eval_every)
            if evaluation is not None or step % s.report_every == 0 or step == s.total_steps:
                report.step, report.epsilon, report.updates = step, eps, self.updates
                report.evaluation = evaluation
                report.beta, report.replay_stats = float(self.beta(step)), self.replay.stats()
                if last is not None:
                    report.loss, report.q_mean = float(last.loss), float(last.q_mean)
                    if not (np.isfinite(report.loss) and np.isfinite(report.q_mean)):
                        raise NonFiniteLossError(
                            f"training diverged at step {step}: loss {report.loss},"
                            f" mean Q {report.q_mean}"
                        )
                yield report
                report = Progress(step=step, epsilon=eps)
