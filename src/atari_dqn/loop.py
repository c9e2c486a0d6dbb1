"""The training loop. It yields progress and evaluation results; it does no I/O of its own.

An agent step is one transition of one env; with N envs an iteration makes up to N of them. Per
iteration: act ε-greedily for all envs in one forward pass, start the envs, run the updates due
(one per ``update_every`` agent steps after warm-up: the replay ratio does not depend on N) while
the emulators run, collect and store the transitions; a target sync every ``target_update``
agent steps; an evaluation every ``eval_every`` agent steps on a separate env.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import torch

from atari_dqn import killpoints
from atari_dqn.agent import UpdateResult
from atari_dqn.evaluate import ActFn, EvalResult, EvaluationStopped, StopFn, scheduled_evaluation
from atari_dqn.replay import Batch, Replay
from atari_dqn.schedules import LinearSchedule
from atari_dqn.vector import VecEnv, record


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
    game_steps: list[int] = field(default_factory=list)  # the loop's step when each ended
    evaluation: EvalResult | None = None
    beta: float = 0.0  # prioritized replay's IS exponent at this step (schedule value)
    replay_stats: dict[str, float] = field(default_factory=dict)  # the replay's stats()
    # A stop abandoned the evaluation due at this step: the run that continues plays it first.
    evaluation_pending: bool = False

    def add_games(self, returns: list[float], lengths: list[int], step: int) -> None:
        """Games that ended by the loop's ``step``: their scores and lengths."""
        self.game_returns += returns
        self.game_lengths += lengths
        self.game_steps += [step] * len(returns)


PHASES = ("act", "env", "sample", "update", "store", "eval")


class PhaseTimer:
    """Wall seconds spent in each phase of the training loop, for ``bench train``'s breakdown.

    Phases: ``act`` (ε draws and the acting forward pass), ``env`` (starting the emulators and
    waiting for them: the part of their work that the updates did not hide), ``sample`` (the
    replay's draws and stack gathering), ``update`` (the gradient step, and new priorities when
    the replay uses them), ``store`` (recording the transitions), ``eval`` (evaluations). The
    loop calls :meth:`start` and :meth:`lap` only when it was given a timer; what it does not
    time (target syncs, reports, the caller's work between yields) is the rest of the wall
    time. On a GPU, kernels run asynchronously: their time shows up where the host next waits
    for the device (acting's copy of the actions back, say), not in ``update``.
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self._mark = clock()

    def start(self) -> None:
        """Begin timing here: what came since the last lap belongs to no phase."""
        self._mark = self.clock()

    def lap(self, phase: str) -> None:
        """The time since the previous lap (or start) was spent in ``phase``."""
        now = self.clock()
        self.seconds[phase] += now - self._mark
        self._mark = now

    def take(self) -> dict[str, float]:
        """The seconds per phase so far, and start counting from zero."""
        taken, self.seconds = self.seconds, dict.fromkeys(PHASES, 0.0)
        return taken


class Agent(Protocol):
    """What a loop needs of the learner (:class:`~atari_dqn.agent.DQNAgent` in a real run)."""

    def act(
        self, obs: np.ndarray, epsilon: float | np.ndarray, rng: np.random.Generator
    ) -> np.ndarray: ...

    def act_eval(
        self, obs: np.ndarray, epsilon: float | np.ndarray, rng: np.random.Generator
    ) -> np.ndarray: ...

    def update(self, batch: Batch) -> UpdateResult: ...

    def sync_target(self) -> None: ...


class UpdateStats(Protocol):
    """What a report reads of a learner's latest update (DQN's and PQN's results): scalars
    on the update's device, read only when a report is made."""

    @property
    def loss(self) -> torch.Tensor: ...

    @property
    def q_mean(self) -> torch.Tensor: ...


class EvalAgent(Protocol):
    """What a run's evaluations, videos and checkpoints need of any learner (``DQNAgent``,
    ``PQNLearner``): acting as evaluation does, and its checkpoint state."""

    def act_eval(
        self, obs: np.ndarray, epsilon: float | np.ndarray, rng: np.random.Generator
    ) -> np.ndarray: ...

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]: ...

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None: ...


class Loop(Protocol):
    """What the driver runs: the single-process :class:`TrainLoop` and the Ape-X learner's
    loop. ``run`` yields a :class:`Progress` per report; ``state``/``load_state`` are the
    loop's part of a checkpoint (its position, generators and, where possible, its envs)."""

    step: int  # agent steps so far
    updates: int  # gradient updates so far

    def run(self) -> Iterator[Progress]: ...

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]: ...

    def load_state(
        self, arrays: dict[str, np.ndarray], meta: dict[str, Any], *, replay_restored: bool
    ) -> None: ...

    def request_stop(self) -> None:
        """A signal arrived (called from the handler): yield a report as soon as the loop is
        at a step it can be saved at (the next agent step; an evaluation is abandoned and is
        due again when the run continues), so that the driver checkpoints and stops."""
        ...


def evaluate_at(
    eval_env: gym.Env,
    act: ActFn,
    settings: LoopSettings,
    *,
    index: int,
    step: int,
    stop: StopFn | None = None,
) -> EvalResult:
    """Evaluation number ``index`` at agent step ``step``, as every loop schedules it; its
    wall time is recorded so that training time can leave it out. ``stop``: see
    :func:`~atari_dqn.evaluate.play` (raises EvaluationStopped)."""
    start = time.perf_counter()
    result = scheduled_evaluation(
        eval_env,
        act,
        index=index,
        step=step,
        games=settings.eval_games,
        epsilon=settings.eval_epsilon,
        seed_base=settings.eval_seed,
        stop=stop,
    )
    return dataclasses.replace(result, seconds=time.perf_counter() - start)


def close_report(
    report: Progress,
    *,
    step: int,
    epsilon: float,
    updates: int,
    evaluation: EvalResult | None,
    beta: float,
    replay_stats: dict[str, float],
    last: UpdateStats | None,
) -> Progress:
    """Fill in a report with the loop's position and the latest update; the NaN guard: a loss
    or mean Q that is not finite stops the run (NonFiniteLossError) before anything is saved."""
    report.step, report.epsilon, report.updates = step, epsilon, updates
    report.evaluation = evaluation
    report.beta, report.replay_stats = beta, replay_stats
    if last is not None:
        report.loss, report.q_mean = float(last.loss), float(last.q_mean)
        if not (np.isfinite(report.loss) and np.isfinite(report.q_mean)):
            raise NonFiniteLossError(
                f"training diverged at step {step}: loss {report.loss}, mean Q {report.q_mean}"
            )
    return report


class EvalSchedule:
    """Which evaluation falls due when: at the first report at or past each multiple of
    ``every`` agent steps. One that a stop abandons stays due (``next`` moves only when it is
    :meth:`done`), so the run that continues from the checkpoint plays it first. Every loop
    keeps its evaluations by one of these (checkpoints hold ``next`` as ``next_eval``)."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.next = every  # the step at which the next evaluation falls due

    def due(self, step: int) -> bool:
        return step >= self.next

    @property
    def index(self) -> int:
        """The number of the evaluation due next (1 for the first)."""
        return self.next // self.every

    def done(self, step: int) -> None:
        """The due evaluation counts as played at ``step``: the next one is the first multiple
        of ``every`` past it (a report may pass several)."""
        self.next += self.every * (1 + (step - self.next) // self.every)


def play_due(
    evals: EvalSchedule,
    step: int,
    evaluate: Callable[[int], EvalResult],
    timer: PhaseTimer | None = None,
) -> EvalResult | None:
    """The evaluation due at ``step``, played, if any (None too when a stop abandoned it:
    then it stays due)."""
    if not evals.due(step):
        return None
    if timer is not None:
        timer.start()
    try:
        evaluation = evaluate(evals.index)
    except EvaluationStopped:
        return None
    finally:
        if timer is not None:
            timer.lap("eval")
    evals.done(step)
    return evaluation


def env_position(
    env: VecEnv, obs: np.ndarray | None
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """What a checkpoint keeps of the envs: their state where it can be saved (arrays under
    ``env.`` keys) and whether they had started (``obs``: what they act from next)."""
    saved = env.state() if obs is not None else None
    arrays = {f"env.{k}": v for k, v in saved[0].items()} if saved is not None else {}
    return arrays, {"started": obs is not None, "env": saved[1] if saved is not None else None}


def restored_env(
    env: VecEnv, arrays: dict[str, np.ndarray], meta: dict[str, Any]
) -> np.ndarray | None:
    """The observations of envs restored from :func:`env_position`'s record, or None where
    their state was not saved (vectorised C++ envs: the caller starts new games)."""
    env_arrays = {k[4:]: v for k, v in arrays.items() if k.startswith("env.")}
    return env.load_state(env_arrays, meta["env"]) if meta["env"] is not None else None


class TrainLoop:
    """Holds the loop's state so a caller can inspect it between yields."""

    def __init__(
        self,
        env: VecEnv,
        eval_env: gym.Env,
        agent: Agent,
        replay: Replay,
        epsilon: LinearSchedule,
        beta: Callable[[int], float],
        rng: np.random.Generator,
        settings: LoopSettings,
        timer: PhaseTimer | None = None,
    ) -> None:
        self.env = env
        self.eval_env = eval_env
        self.agent = agent
        self.replay = replay
        self.epsilon = epsilon
        self.beta = beta
        self.rng = rng
        self.settings = settings
        self.timer = timer  # None: nothing is timed (the loop does exactly the same work)
        self.step = 0  # agent steps (transitions) so far, over all envs
        self.updates = 0
        self.next_update = settings.warmup_steps + settings.update_every
        self.next_sync = settings.target_update
        self.evals = EvalSchedule(settings.eval_every)
        self._obs: np.ndarray | None = None  # (N, 4, 84, 84): what each env acts from next
        self._stop = False  # request_stop() was called: report at the next step

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The loop's position, its generator and, where it can be saved, the envs' state."""
        arrays, envs = env_position(self.env, self._obs)
        meta = {
            "step": self.step,
            "updates": self.updates,
            "next_update": self.next_update,
            "next_sync": self.next_sync,
            "next_eval": self.evals.next,
            "rng": self.rng.bit_generator.state,
            **envs,
        }
        return arrays, meta

    def load_state(
        self, arrays: dict[str, np.ndarray], meta: dict[str, Any], *, replay_restored: bool
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
        self.evals.next = int(meta["next_eval"])
        self.rng.bit_generator.state = meta["rng"]
        if not replay_restored:
            self.next_update = self.step + self.settings.warmup_steps + self.settings.update_every
        if not meta["started"]:
            return
        obs = restored_env(self.env, arrays, meta)
        if obs is not None:
            self._obs = obs
            if not replay_restored:
                for i in range(self.env.num_envs):
                    self.replay.begin(i, self._obs[i, -1])
            return
        for i in range(self.env.num_envs):
            if replay_restored:
                self.replay.cut(i)
        self._start(seed=self.settings.env_seed + self.step)

    def _start(self, seed: int) -> None:
        vec_step = self.env.reset(seed=seed)
        for i in range(self.env.num_envs):
            self.replay.begin(i, vec_step.obs[i, -1])
        self._obs = vec_step.obs

    def request_stop(self) -> None:
        self._stop = True

    def _stopping(self) -> bool:
        return self._stop

    def evaluate(self, index: int) -> EvalResult:
        return evaluate_at(
            self.eval_env,
            self.agent.act_eval,
            self.settings,
            index=index,
            step=self.step,
            stop=self._stopping,
        )

    def _due_evaluation(self, timer: PhaseTimer | None = None) -> EvalResult | None:
        return play_due(self.evals, self.step, self.evaluate, timer)

    def _learn(self, timer: PhaseTimer | None) -> UpdateResult | None:
        """The updates due at this step: one per ``update_every`` agent steps after warm-up."""
        settings, last = self.settings, None
        while self.step >= self.next_update:
            self.next_update += settings.update_every
            if len(self.replay) < settings.batch_size:
                continue
            batch = self.replay.sample(settings.batch_size, self.beta(self.step))
            if timer is not None:
                timer.lap("sample")
            last = self.agent.update(batch)
            if self.replay.uses_priorities:  # else nothing waits for the device here
                self.replay.update_priorities(batch.indices, last.priority.cpu().numpy())
            if timer is not None:
                timer.lap("update")
            self.updates += 1
        return last

    def run(self) -> Iterator[Progress]:
        """Act, step all envs (updating while they run), store, sync, evaluate, report."""
        settings, timer = self.settings, self.timer
        last: UpdateResult | None = None
        report = Progress(step=self.step, epsilon=self.epsilon(self.step))
        next_report = (self.step // settings.report_every + 1) * settings.report_every
        if self._obs is None:
            self._start(seed=settings.env_seed)
        obs = self._obs
        assert obs is not None
        if self.evals.due(self.step):  # one a stop abandoned before its checkpoint: first
            evaluation = self._due_evaluation(timer)
            report.evaluation_pending = self.evals.due(self.step)
            yield close_report(
                report,
                step=self.step,
                epsilon=report.epsilon,
                updates=self.updates,
                evaluation=evaluation,
                beta=float(self.beta(self.step)),
                replay_stats=self.replay.stats(),
                last=None,
            )
            report = Progress(step=self.step, epsilon=report.epsilon)
        while self.step < settings.total_steps:
            if timer is not None:
                timer.start()
            eps = self.epsilon(self.step + 1)
            actions = self.agent.act(obs, eps, self.rng)
            if timer is not None:
                timer.lap("act")
            self.env.send(actions)
            if timer is not None:
                timer.lap("env")
            # The emulators run while the learner updates (in C++ threads for vector envs).
            last = self._learn(timer) or last
            vec_step = self.env.recv()
            if timer is not None:
                timer.lap("env")
            record(self.replay, actions, vec_step)
            if timer is not None:
                timer.lap("store")
            self._obs = obs = vec_step.obs
            self.step += int(vec_step.transition.sum())
            if killpoints.ARMED:  # (tests only: one test of a constant per step otherwise)
                killpoints.kill_point("train.learning" if self.updates else "train.warmup")
            report.add_games(vec_step.game_returns, vec_step.game_lengths, self.step)
            step = self.step
            if step >= self.next_sync:
                self.agent.sync_target()
                self.next_sync += settings.target_update * (
                    1 + (step - self.next_sync) // settings.target_update
                )

            evaluation = self._due_evaluation(timer)
            report.evaluation_pending = self.evals.due(step)
            due = evaluation is not None or step >= next_report or step >= settings.total_steps
            if due or self._stop:
                next_report = (step // settings.report_every + 1) * settings.report_every
                yield close_report(
                    report,
                    step=step,
                    epsilon=eps,
                    updates=self.updates,
                    evaluation=evaluation,
                    beta=float(self.beta(step)),
                    replay_stats=self.replay.stats(),
                    last=last,
                )
                report = Progress(step=step, epsilon=eps)
