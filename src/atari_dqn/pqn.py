"""PQN (Gallici et al. 2024, "Simplifying Deep Temporal Difference Learning"): the rollout, the
settings, the learner and its loop (:class:`PQNLoop`, built by ``build.build_training`` for
``--algo pqn``, driven by the same driver as DQN's loop).

N envs act ε-greedily for T steps; the Q(λ) targets of the whole rollout are computed once
(:func:`atari_dqn.losses.q_lambda_returns`) from the ``max_a Q`` the network gave while acting,
with no target network and no second forward pass over the rollout; then E epochs of M
minibatches (a fresh permutation of the T·N samples per epoch) each make one gradient step of
``½ (Q(s, a) - G)²`` with RAdam and a global gradient-norm clip.

How a loop fills a :class:`Rollout` from this project's vector envs (``vector.VecStep``):

* Row t is one call of ``send``/``recv`` for all N envs: ``obs[t]`` the stacks acted from,
  ``actions[t]``, and from the ``VecStep``: ``rewards``, ``terminated`` (a life loss or game
  over: training episodes end at a life loss here, as ``envs.AtariGame(training=True)`` and
  ``AtariVector`` report it), ``truncated`` (the frame cap), ``valid = transition``.
* ``AtariVector`` (ale-py's C++ ``AtariVectorEnv``, whose ``autoreset_mode`` defaults to
  ``NEXT_STEP`` in ale-py 0.12; ``vector.ale_vector_env`` keeps it) resets *on the next step*:
  after a step that ends an episode, ``VecStep.obs`` is still that episode's true last state
  s_{t+1}; the next ``send`` is not an agent step (the env presses FIRE after a life loss, or
  resets after a game over, and ignores the action): that row has ``valid = False``, is
  trained on nothing, and its acting pass is what gives ``max_a Q(s_{t+1})`` for the bootstrap
  of a truncated step t (``test_pqn`` checks this on the real env).
* ``SingleEnv`` resets *in the same step*: after an episode's end ``VecStep.obs`` is already the
  next episode's first state. For a truncated step :meth:`Rollout.record` rebuilds the true
  s_{t+1} (``obs[t][1:]`` + ``VecStep.next_frames``) and the loop gives its ``max_a Q``
  (one small extra pass, only at a frame cap). A terminal step needs no bootstrap value.
* ``next_max_q[t]`` is otherwise ``max_a Q(obs[t+1])`` from row t+1's acting pass, and for the
  last row that of the states the envs stand in after the rollout: one pass of N states, as
  purejaxql's ``last_q``, so that a rollout is whole when the update starts (and a checkpoint
  at a rollout boundary holds no half rollout).

A loop's rollout, then::

    for t in range(T):
        actions, max_q = learner.act_with_max_q(obs, epsilon(step), rng)
        if t > 0:
            rollout.record_acting_max_q(t, max_q)
        env.send(actions)
        vec_step = env.recv()
        envs, stacks = rollout.record(t, obs, actions, vec_step)
        if len(envs):
            rollout.set_next_max_q(t, learner.max_q(stacks), envs)
        obs = vec_step.obs
        step += int(vec_step.transition.sum())
    rollout.record_acting_max_q(T, learner.max_q(obs))
    result = learner.update(rollout, settings.lr_at(step, total_steps))
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from atari_dqn import killpoints, losses
from atari_dqn.agent import (
    EpsilonGreedyPolicy,
    load_optimizer_state,
    optimizer_state,
    section,
)
from atari_dqn.evaluate import EvalResult
from atari_dqn.loop import (
    EvalSchedule,
    LoopSettings,
    PhaseTimer,
    Progress,
    close_report,
    env_position,
    evaluate_at,
    play_due,
    restored_env,
)
from atari_dqn.networks import QNetwork
from atari_dqn.schedules import LinearSchedule
from atari_dqn.vector import VecEnv, VecStep


@dataclass(frozen=True)
class PQNSettings:
    """PQN's Atari settings. Sources: purejaxql ``purejaxql/config/alg/pqn_atari.yaml`` (the
    paper's code, commit 0436c80; "pqn_atari.yaml" below) and ``purejaxql/pqn_atari.py``;
    CleanRL's ``cleanrl/pqn_atari_envpool.py`` where it differs."""

    num_envs: int = 128  # NUM_ENVS, pqn_atari.yaml (CleanRL: 8)
    rollout_steps: int = 32  # NUM_STEPS: T, steps of each env per rollout (CleanRL: 128)
    epochs: int = 2  # NUM_EPOCHS, pqn_atari.yaml (CleanRL update_epochs: 4)
    minibatches: int = 32  # NUM_MINIBATCHES per epoch, pqn_atari.yaml (CleanRL: 4)
    lr: float = 2.5e-4  # LR, pqn_atari.yaml (CleanRL learning_rate: 2.5e-4)
    # LR_LINEAR_DECAY: False in pqn_atari.yaml at 0436c80; CleanRL anneal_lr: True. When on,
    # lr falls linearly to 0 over the run's agent steps, set per update as CleanRL does
    # (purejaxql decays it per gradient step: within one update the two differ by < 1/updates).
    lr_linear_decay: bool = False
    max_grad_norm: float = 10.0  # MAX_GRAD_NORM (global norm), both sources
    gamma: float = 0.99  # GAMMA, both sources
    lam: float = 0.65  # LAMBDA, pqn_atari.yaml (CleanRL q_lambda: 0.65)
    epsilon_start: float = 1.0  # EPS_START, both sources
    epsilon_end: float = 0.001  # EPS_FINISH, pqn_atari.yaml (CleanRL end_e: 0.01)
    # EPS_DECAY: ε reaches its end after this fraction of the run ("ratio of total updates"),
    # pqn_atari.yaml (CleanRL exploration_fraction: 0.10 of the steps)
    epsilon_fraction: float = 0.1
    layer_norm: bool = True  # NORM_TYPE: "layer_norm", pqn_atari.yaml; CleanRL too
    # The optimiser is RAdam (optax.radam in pqn_atari.py, optim.RAdam in CleanRL) with its
    # default betas (0.9, 0.999) and eps 1e-8; the loss ½ (Q - G)² mean (pqn_atari.py).

    def lr_at(self, step: int, total_steps: int) -> float:
        """The learning rate of the update made at agent step ``step`` of ``total_steps``."""
        if not self.lr_linear_decay:
            return self.lr
        return self.lr * max(0.0, 1.0 - step / total_steps)

    def epsilon_schedule(self, total_steps: int) -> LinearSchedule:
        """ε from ``epsilon_start`` to ``epsilon_end`` over ``epsilon_fraction`` of the run's
        agent steps (purejaxql counts it in rollouts, so its ε is constant within one)."""
        duration = max(1, int(self.epsilon_fraction * total_steps))
        return LinearSchedule(self.epsilon_start, self.epsilon_end, duration)

    @property
    def batch(self) -> int:
        """Samples per rollout, T·N."""
        return self.rollout_steps * self.num_envs

    @property
    def minibatch_size(self) -> int:
        return self.batch // self.minibatches

    def check(self) -> None:
        """ValueError for settings the learner cannot run."""
        if min(self.num_envs, self.rollout_steps, self.epochs, self.minibatches) < 1:
            raise ValueError("num_envs, rollout_steps, epochs and minibatches must be >= 1")
        if self.batch % self.minibatches:
            raise ValueError(
                f"minibatches ({self.minibatches}) must divide the rollout's "
                f"{self.rollout_steps} x {self.num_envs} = {self.batch} samples"
            )
        if not (0.0 <= self.lam <= 1.0 and 0.0 <= self.gamma <= 1.0):
            raise ValueError(f"gamma and lam must lie in [0, 1], got {self.gamma}, {self.lam}")


@dataclass
class Rollout:
    """T steps of N envs, as acted (see the module's docstring for how a loop fills it).

    Everything is a host array except ``next_max_q``, which stays where the network computed it.
    """

    obs: np.ndarray  # (T, N, 4, 84, 84) uint8: s_t, the stack each env acted from
    actions: np.ndarray  # (T, N) int64: a_t
    rewards: np.ndarray  # (T, N) float32: r_t, clipped to its sign
    terminated: np.ndarray  # (T, N) bool: s_{t+1} is terminal (life loss or game over)
    truncated: np.ndarray  # (T, N) bool: the frame cap cut the episode at s_{t+1}
    valid: np.ndarray  # (T, N) bool: a real agent step (False: the env's FIRE or reset step)
    next_max_q: torch.Tensor  # (T, N) float32: max_a Q(s_{t+1}, a) of the true successor
    # (T, N) bool: next_max_q[t] was given from a rebuilt s_{t+1} (a same-step reset)
    rebuilt: np.ndarray

    @classmethod
    def empty(
        cls,
        steps: int,
        num_envs: int,
        device: torch.device,
        frames: int = 4,
        frame_shape: tuple[int, ...] = (84, 84),
    ) -> Rollout:
        """Zeroed storage for ``steps`` rows of ``num_envs`` envs (``next_max_q`` on ``device``)."""
        t, n = steps, num_envs
        return cls(
            obs=np.zeros((t, n, frames, *frame_shape), dtype=np.uint8),
            actions=np.zeros((t, n), dtype=np.int64),
            rewards=np.zeros((t, n), dtype=np.float32),
            terminated=np.zeros((t, n), dtype=bool),
            truncated=np.zeros((t, n), dtype=bool),
            valid=np.zeros((t, n), dtype=bool),
            next_max_q=torch.zeros((t, n), dtype=torch.float32, device=device),
            rebuilt=np.zeros((t, n), dtype=bool),
        )

    def record(
        self, t: int, obs: np.ndarray, actions: np.ndarray, vec_step: VecStep
    ) -> tuple[np.ndarray, np.ndarray]:
        """Row t: the stacks ``obs`` the envs acted from, their ``actions`` and what ``recv``
        returned. Returns the envs (indices) whose true s_{t+1} is *not* the next row's
        ``obs`` (a truncation where the env reset in the same step, as ``SingleEnv`` does),
        with that state rebuilt (``obs[i][1:]`` + the newest frame): give their
        ``max_a Q`` to :meth:`set_next_max_q`. Empty for ``AtariVector``."""
        self.obs[t] = obs
        self.actions[t] = actions
        self.rewards[t] = vec_step.rewards
        self.terminated[t] = vec_step.terminated
        self.truncated[t] = vec_step.truncated
        self.valid[t] = vec_step.transition
        self.rebuilt[t] = False
        moved_on = vec_step.transition & vec_step.truncated & ~vec_step.terminated & vec_step.begin
        envs = np.flatnonzero(moved_on)
        stacks = np.concatenate([obs[envs, 1:], vec_step.next_frames[envs, None]], axis=1)
        return envs, stacks

    def set_next_max_q(self, t: int, max_q: torch.Tensor, envs: np.ndarray) -> None:
        """``max_a Q`` of the rebuilt successors of row t's ``envs`` (what :meth:`record`
        returned); :meth:`record_acting_max_q` leaves them alone."""
        self.next_max_q[t, torch.from_numpy(envs).to(self.next_max_q.device)] = max_q
        self.rebuilt[t, envs] = True

    def record_acting_max_q(self, t: int, max_q: torch.Tensor) -> None:
        """``max_a Q(s, a)`` of the N states acted from at row t (``t = T``: the states after
        the rollout, purejaxql's ``last_q``): the bootstrap of row t-1, except where that row's
        successor was rebuilt. Call it after :meth:`record` of row t-1."""
        keep = torch.from_numpy(self.rebuilt[t - 1]).to(self.next_max_q.device)
        self.next_max_q[t - 1] = torch.where(keep, self.next_max_q[t - 1], max_q)

    @property
    def steps(self) -> int:
        return int(self.rewards.shape[0])

    @property
    def num_envs(self) -> int:
        return int(self.rewards.shape[1])


@dataclass
class PQNUpdateResult:
    """Outcome of one :meth:`PQNLearner.update`, as detached device tensors (no sync)."""

    loss: torch.Tensor  # scalar: mean over the update's minibatches of ½ (Q(s, a) - G)²
    q_mean: torch.Tensor  # scalar: mean Q(s, a) of the valid samples, as epoch 1 found them
    target_mean: torch.Tensor  # scalar: mean Q(λ) target G over the valid samples
    grad_steps: int  # gradient steps this update made (epochs x minibatches)


class PQNLearner:
    """Owns the online network (no target network), RAdam and the minibatch permutations.

    ``generator`` (a CPU ``torch.Generator``, seeded by the caller from the run seed) draws
    each epoch's permutation; it is saved in :meth:`state`, so a restored learner draws what an
    uninterrupted one would. The learning rate is an argument of :meth:`update`
    (``settings.lr_at``), a function of the loop's step, so it needs no state of its own.
    Acting goes through the same :class:`~atari_dqn.agent.EpsilonGreedyPolicy` as DQN's.
    """

    def __init__(
        self,
        network: QNetwork,
        optimizer: torch.optim.Optimizer,
        *,
        num_actions: int,
        device: torch.device,
        settings: PQNSettings,
        generator: torch.Generator,
    ) -> None:
        if network.distributional or network.noisy:
            raise ValueError("PQN learns scalar Q-values: no distributional or noisy network")
        settings.check()
        self.online = network
        self.optimizer = optimizer
        self.num_actions = num_actions
        self.device = device
        self.settings = settings
        self.generator = generator
        self.grad_steps = 0  # gradient steps so far
        self.updates = 0  # rollouts learned from so far
        self.policy = EpsilonGreedyPolicy(network, num_actions, device)

    # ------------------------------------------------------------------ acting
    def act(
        self, obs: np.ndarray, epsilon: float | np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        return self.policy.act(obs, epsilon, rng)

    def act_eval(
        self, obs: np.ndarray, epsilon: float | np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        return self.policy.act(obs, epsilon, rng)

    def act_with_max_q(
        self, obs: np.ndarray, epsilon: float | np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, torch.Tensor]:
        """Training's acting step: ε-greedy actions and ``max_a Q(s, a)`` for the targets."""
        return self.policy.act_with_max_q(obs, epsilon, rng)

    def max_q(self, obs: np.ndarray) -> torch.Tensor:
        """``max_a Q(s, a)`` of a batch of stacks, (B,) float32 on the device: the bootstrap
        of the rollout's last row, and of rebuilt successors (:meth:`Rollout.record`)."""
        return self.policy.q_values(obs).float().max(dim=1).values

    # ------------------------------------------------------------------ learning
    def targets(self, rollout: Rollout) -> torch.Tensor:
        """The rollout's Q(λ) targets G, (T, N) on the device."""

        def dev(array: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(array).to(self.device)

        return losses.q_lambda_returns(
            dev(rollout.rewards),
            dev(rollout.terminated),
            dev(rollout.truncated),
            rollout.next_max_q.to(self.device),
            gamma=self.settings.gamma,
            lam=self.settings.lam,
        )

    def update(self, rollout: Rollout, lr: float | None = None) -> PQNUpdateResult:
        """E epochs x M minibatches over the T·N samples of ``rollout``; each epoch uses every
        sample once, in the order of a fresh permutation from the learner's generator. ``lr``:
        the learning rate of all its steps (default ``settings.lr``)."""
        settings = self.settings
        for group in self.optimizer.param_groups:
            group["lr"] = settings.lr if lr is None else lr
        batch = rollout.steps * rollout.num_envs
        if batch % settings.minibatches:
            raise ValueError(f"minibatches ({settings.minibatches}) must divide {batch} samples")
        targets = self.targets(rollout).reshape(batch)
        obs = torch.from_numpy(rollout.obs).to(self.device)
        obs = obs.reshape(batch, *obs.shape[2:])
        actions = torch.from_numpy(rollout.actions).to(self.device).reshape(batch)
        valid = torch.from_numpy(rollout.valid).to(self.device).reshape(batch).float()
        batch_losses: list[torch.Tensor] = []
        q_sum = torch.zeros((), device=self.device)
        for epoch in range(settings.epochs):
            order = torch.randperm(batch, generator=self.generator).to(self.device)
            for idx in order.view(settings.minibatches, -1):
                q = self.online(obs[idx]).float()
                q_taken = q.gather(1, actions[idx].unsqueeze(1)).squeeze(1)
                loss = losses.masked_half_squared(q_taken - targets[idx], valid[idx])
                self._step(loss)
                batch_losses.append(loss.detach())
                if epoch == 0:  # each sample once: Q(s, a) as the rollout's update found it
                    q_sum = q_sum + (q_taken.detach() * valid[idx]).sum()
        self.updates += 1
        count = valid.sum().clamp(min=1.0)
        return PQNUpdateResult(
            loss=torch.stack(batch_losses).mean(),
            q_mean=q_sum / count,
            target_mean=(targets * valid).sum() / count,
            grad_steps=settings.epochs * settings.minibatches,
        )

    def _step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.online.parameters(), self.settings.max_grad_norm)
        self.optimizer.step()
        self.grad_steps += 1

    # ------------------------------------------------------------------ state
    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Network, optimiser and permutation generator as flat tensors plus JSON-able
        metadata (no pickle), in the layout of ``DQNAgent.state`` (``online.``, ``optim.``)."""
        tensors = {f"online.{k}": v for k, v in self.online.state_dict().items()}
        tensors["permutation_generator"] = self.generator.get_state()
        optim_tensors, meta = optimizer_state(self.optimizer)
        meta |= {"grad_steps": self.grad_steps, "updates": self.updates}
        return tensors | optim_tensors, meta

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        self.online.load_state_dict(section(tensors, "online."))
        self.generator.set_state(tensors["permutation_generator"])
        load_optimizer_state(self.optimizer, tensors, meta)
        self.grad_steps = int(meta["grad_steps"])
        self.updates = int(meta["updates"])


def make_optimizer(network: nn.Module, lr: float, eps: float = 1e-8) -> torch.optim.Optimizer:
    """RAdam (Liu et al. 2020) with its default betas, as optax.radam in purejaxql."""
    return torch.optim.RAdam(network.parameters(), lr=lr, eps=eps)


class PQNLoop:
    """PQN's training loop behind the :class:`~atari_dqn.loop.Loop` protocol: a rollout of
    ``T`` steps of all envs (ε-greedy, recording ``max_a Q`` as it acts), then one
    :meth:`PQNLearner.update` over it; a report after every rollout (so every checkpoint is at
    a rollout boundary); evaluations as DQN's loop has them, at the first boundary at or past
    each multiple of ``eval_every``. During ``warmup_steps`` it acts and learns nothing.

    :meth:`request_stop` (a signal) is honoured at the next rollout boundary: the rollout under
    way is collected to its end and learned from (at most ``rollout_steps`` steps of the envs
    and one update, no waiting for anything else), then the loop reports, so that the
    checkpoint is at a boundary as every other one, from which a resumed run continues exactly.
    An evaluation under way or due there is abandoned instead (``Progress.evaluation_pending``):
    it is left due and played first by the run that continues, as in DQN's loop.
    """

    def __init__(
        self,
        env: VecEnv,
        eval_env: gym.Env,
        learner: PQNLearner,
        epsilon: Callable[[int], float],
        rng: np.random.Generator,
        settings: LoopSettings,
        rollout_steps: int,
        lr: Callable[[int], float],
        timer: PhaseTimer | None = None,
    ) -> None:
        self.env = env
        self.timer = timer  # None: nothing is timed (the loop does exactly the same work)
        self.eval_env = eval_env
        self.learner = learner
        self.epsilon = epsilon
        self.rng = rng
        self.settings = settings
        self.lr = lr
        self.rollout_steps = rollout_steps
        self.rollout: Rollout | None = None  # allocated for the envs' stacks at the first one
        self.step = 0  # agent steps (transitions) so far, over all envs
        self.updates = 0  # rollouts learned from
        self.evals = EvalSchedule(settings.eval_every)
        self._obs: np.ndarray | None = None  # (N, 4, 84, 84): what each env acts from next
        self._stop = False  # request_stop() was called: report at the next rollout boundary

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The loop's position, its generator and, where it can be saved, the envs' state."""
        arrays, envs = env_position(self.env, self._obs)
        meta = {
            "step": self.step,
            "updates": self.updates,
            "next_eval": self.evals.next,
            "rng": self.rng.bit_generator.state,
            **envs,
        }
        return arrays, meta

    def load_state(
        self, arrays: dict[str, np.ndarray], meta: dict[str, Any], *, replay_restored: bool
    ) -> None:
        """Continue from a saved state (there is no replay: ``replay_restored`` is moot). The
        single env is restored exactly; vectorised C++ envs start new games, as in DQN's loop."""
        del replay_restored
        self.step = int(meta["step"])
        self.updates = int(meta["updates"])
        self.evals.next = int(meta["next_eval"])
        self.rng.bit_generator.state = meta["rng"]
        if not meta["started"]:
            return
        obs = restored_env(self.env, arrays, meta)
        self._obs = (
            obs if obs is not None else self.env.reset(seed=self.settings.env_seed + self.step).obs
        )

    def request_stop(self) -> None:
        self._stop = True

    def _stopping(self) -> bool:
        return self._stop

    def evaluate(self, index: int) -> EvalResult:
        return evaluate_at(
            self.eval_env,
            self.learner.act_eval,
            self.settings,
            index=index,
            step=self.step,
            stop=self._stopping,
        )

    def _due_evaluation(self) -> EvalResult | None:
        """The evaluation due at this boundary, if any; none once a stop is asked for (it stays
        due, and the run that continues from the checkpoint plays it first)."""
        if self._stop:
            return None
        return play_due(self.evals, self.step, self.evaluate, self.timer)

    def _collect(
        self, rollout: Rollout, obs: np.ndarray, report: Progress
    ) -> tuple[np.ndarray, float]:
        """One rollout into ``rollout``, from ``obs``; returns the envs' states after it and
        the last ε acted with."""
        learner, timer = self.learner, self.timer
        eps = self.epsilon(self.step + 1)
        if timer is not None:
            timer.start()
        for t in range(rollout.steps):
            eps = self.epsilon(self.step + 1)
            actions, max_q = learner.act_with_max_q(obs, eps, self.rng)
            if t > 0:
                rollout.record_acting_max_q(t, max_q)
            if timer is not None:
                timer.lap("act")
            self.env.send(actions)
            vec_step = self.env.recv()
            if timer is not None:
                timer.lap("env")
            envs, stacks = rollout.record(t, obs, actions, vec_step)
            if len(envs):
                rollout.set_next_max_q(t, learner.max_q(stacks), envs)
            if timer is not None:
                timer.lap("store")
            obs = vec_step.obs
            self.step += int(vec_step.transition.sum())
            if killpoints.ARMED:  # (tests only: one test of a constant per step otherwise)
                killpoints.kill_point("train.learning" if self.updates else "train.warmup")
            report.add_games(vec_step.game_returns, vec_step.game_lengths, self.step)
        rollout.record_acting_max_q(rollout.steps, learner.max_q(obs))
        if timer is not None:
            timer.lap("act")
        return obs, eps

    def run(self) -> Iterator[Progress]:
        """Collect a rollout, learn from it, evaluate when due, report; until total_steps."""
        settings = self.settings
        last: PQNUpdateResult | None = None
        if self._obs is None:
            self._obs = self.env.reset(seed=settings.env_seed).obs
        if self.evals.due(self.step):  # one a stop abandoned before its checkpoint: first
            report = Progress(step=self.step, epsilon=self.epsilon(self.step))
            if self.timer is not None:
                self.timer.start()
            evaluation = self._due_evaluation()
            report.evaluation_pending = self.evals.due(self.step)
            yield close_report(
                report,
                step=self.step,
                epsilon=report.epsilon,
                updates=self.updates,
                evaluation=evaluation,
                beta=0.0,
                replay_stats={},
                last=None,
            )
        while self.step < settings.total_steps:
            report = Progress(step=self.step, epsilon=self.epsilon(self.step))
            if self.rollout is None:
                n, frames, *shape = self._obs.shape
                self.rollout = Rollout.empty(
                    self.rollout_steps, n, self.learner.device, frames, tuple(shape)
                )
            self._obs, eps = self._collect(self.rollout, self._obs, report)
            if self.step > settings.warmup_steps:
                last = self.learner.update(self.rollout, self.lr(self.step))
                self.updates += 1
                if self.timer is not None:
                    self.timer.lap("update")
            evaluation = self._due_evaluation()
            report.evaluation_pending = self.evals.due(self.step)
            yield close_report(
                report,
                step=self.step,
                epsilon=eps,
                updates=self.updates,
                evaluation=evaluation,
                beta=0.0,
                replay_stats={},
                last=last,
            )
