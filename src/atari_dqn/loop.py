"""The training loop. It yields progress and evaluation results; it does no I/O of its own.

An agent step is one transition of one env; with N envs an iteration makes up to N of them. Per
iteration: act ε-greedily for all envs in one forward pass, start the envs, run the updates due
(one per ``update_every`` agent steps after warm-up: the replay ratio does not depend on N) while
the emulators run, collect and store the transitions; a target sync every ``target_update``
agent steps; an evaluation every ``eval_every`` agent steps on a separate env.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

from atari_dqn.agent import DQNAgent, UpdateResult
from atari_dqn.evaluate import EvalResult, scheduled_evaluation
from atari_dqn.replay.uniform import UniformReplay
from atari_dqn.schedules import LinearSchedule
from atari_dqn.vector import AtariVector, SingleEnv


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
        env: SingleEnv | AtariVector,
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
        self.step = 0  # agent steps (transitions) so far, over all envs
        self.updates = 0
        self.next_update = settings.warmup_steps + settings.update_every
        self.next_sync = settings.target_update
        self.next_eval = settings.eval_every
        self._obs: np.ndarray | None = None  # (N, 4, 84, 84): what each env acts from next

    def state(self) -> tuple[dict[str, np.ndarray], dict]:
        """The loop's position, its generator and, where it can be saved, the envs' state."""
        env = self.env.state() if self._obs is not None else None
        arrays = {f"env.{k}": v for k, v in env[0].items()} if env is not None else {}
        meta = {
            "step": self.step,
            "updates": self.updates,
            "next_update": self.next_update,
            "next_sync": self.next_sync,
            "next_eval": self.next_eval,
            "started": self._obs is not None,
            "rng": self.rng.bit_generator.state,
            "env": env[1] if env is not None else None,
        }
        return arrays, meta

    def load_state(
        self, arrays: dict[str, np.ndarray], meta: dict, *, replay_restored: bool
    ) -> None:
        """Continue from a saved state.

        The single env is restored exactly. Vectorised C++ envs cannot be: their open episodes
        are cut (as at a time limit) and new games start. Without the replay, learning waits
        for a new warm-up.
        """
        self.step = int(meta["step"])
        self.updates = int(meta["updates"])
        self.next_update = int(meta["next_update"])
        self.next_sync = int(meta["next_sync"])
        self.next_eval = int(meta["next_eval"])
        self.rng.bit_generator.state = meta["rng"]
        if not replay_restored:
            self.next_update = self.step + self.s.warmup_steps + self.s.update_every
        if not meta["started"]:
            return
        if meta["env"] is not None:
            env_arrays = {k[4:]: v for k, v in arrays.items() if k.startswith("env.")}
            self._obs = self.env.load_state(env_arrays, meta["env"])
            if not replay_restored:
                for i in range(self.env.num_envs):
                    self.replay.begin(i, self._obs[i, -1])
            return
        for i in range(self.env.num_envs):
            if replay_restored:
                self.replay.cut(i)
        self._start(seed=self.s.env_seed + self.step)

    def _start(self, seed: int) -> None:
        vs = self.env.reset(seed=seed)
        for i in range(self.env.num_envs):
            self.replay.begin(i, vs.obs[i, -1])
        self._obs = vs.obs

    def evaluate(self, index: int) -> EvalResult:
        return scheduled_evaluation(
            self.eval_env,
            self.agent.act,
            index=index,
            step=self.step,
            games=self.s.eval_games,
            epsilon=self.s.eval_epsilon,
            seed_base=self.s.eval_seed,
        )

    def _learn(self) -> UpdateResult | None:
        """The updates due at this step: one per ``update_every`` agent steps after warm-up."""
        s, last = self.s, None
        while self.step >= self.next_update:
            self.next_update += s.update_every
            if len(self.replay) < s.batch_size:
                continue
            batch = self.replay.sample(s.batch_size, self.beta(self.step))
            last = self.agent.update(batch)
            if self.replay.uses_priorities:  # else nothing waits for the device here
                self.replay.update_priorities(batch.indices, last.td_abs.cpu().numpy())
            self.updates += 1
        return last

    def run(self) -> Iterator[Progress]:
        """Act, step all envs (updating while they run), store, sync, evaluate, report."""
        s = self.s
        last: UpdateResult | None = None
        report = Progress(step=self.step, epsilon=self.epsilon(self.step))
        next_report = (self.step // s.report_every + 1) * s.report_every
        if self._obs is None:
            self._start(seed=s.env_seed)
        while self.step < s.total_steps:
            eps = self.epsilon(self.step + 1)
            actions = self.agent.act(self._obs, eps, self.rng)
            self.env.send(actions)
            # The emulators run while the learner updates (in C++ threads for vector envs).
            last = self._learn() or last
            vs = self.env.recv()
            for i in np.flatnonzero(vs.transition):
                self.replay.append(
                    int(i), int(actions[i]), float(vs.rewards[i]), vs.next_frames[i],
                    bool(vs.terminated[i]), bool(vs.truncated[i]),
                )  # fmt: skip
            for i in np.flatnonzero(vs.begin):
                self.replay.begin(int(i), vs.obs[i, -1])
            self._obs = vs.obs
            self.step += int(vs.transition.sum())
            report.game_returns += vs.game_returns
            report.game_lengths += vs.game_lengths
            step = self.step
            if step >= self.next_sync:
                self.agent.sync_target()
                self.next_sync += s.target_update * (1 + (step - self.next_sync) // s.target_update)

            evaluation = None
            if step >= self.next_eval:
                evaluation = self.evaluate(self.next_eval // s.eval_every)
                self.next_eval += s.eval_every * (1 + (step - self.next_eval) // s.eval_every)
            if evaluation is not None or step >= next_report or step >= s.total_steps:
                next_report = (step // s.report_every + 1) * s.report_every
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
