"""The composition root: the one place that turns a :class:`Config` into working parts.

Every entry point builds here: ``train`` (single process and the Ape-X learner), ``evaluate``,
the Ape-X actors, and every benchmark. Nothing else constructs envs, replays, networks,
optimisers or loops from a config, so a new setting is wired in exactly one place.

One run seed is split (``SeedSequence.spawn``) into independent streams for the training env,
the evaluation env, the network's initial weights, the replay's sampler, the loop's ε draws and
the noisy nets' noise (a sixth stream: the first five are what they were before noisy nets)
and the augmentation's shifts (a seventh); the order of the streams is part of the
reproducibility contract (same seed, same weights).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import gymnasium as gym
import numpy as np
import torch

from atari_dqn.agent import DQNAgent, EpsilonGreedyPolicy
from atari_dqn.augment import RandomShift
from atari_dqn.config import Config, UsageError
from atari_dqn.envs import (
    TRAINING_MAX_FRAMES,
    EnvSettings,
    check_env_id,
    make_env,
    resolve_actions,
)
from atari_dqn.host import host_info
from atari_dqn.loop import EvalAgent, Loop, LoopSettings, PhaseTimer, TrainLoop
from atari_dqn.networks import QNetwork
from atari_dqn.pqn import PQNLearner, PQNLoop, PQNSettings
from atari_dqn.pqn import make_optimizer as make_pqn_optimizer
from atari_dqn.replay import Replay
from atari_dqn.replay.prioritized import PrioritizedReplay
from atari_dqn.replay.storage import FrameStorage
from atari_dqn.replay.sum_tree import SumTree
from atari_dqn.replay.uniform import UniformReplay
from atari_dqn.schedules import LinearSchedule
from atari_dqn.vector import AtariVector, SingleEnv, VecEnv


def bf16_in_update(config: Config, device: torch.device, native: bool | None) -> bool:
    """Whether the DQN update runs under bf16 autocast: ``--bf16 on``, or ``auto`` on a CPU
    that does bf16 in hardware (``native``, from :func:`atari_dqn.host.host_info`). ``auto`` is
    float32 on GPUs (bf16 has not been measured against float32 on one here) and for PQN."""
    if config.algo != "dqn" or config.bf16 == "off":
        return False
    return config.bf16 == "on" or (device.type == "cpu" and native is True)


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when present, else Apple's MPS, else the CPU; a device asked for on a
    machine without it is bad input (UsageError), not a crash later. (Every tensor the update
    moves to the device is float32, int64 or uint8: MPS has no float64.)"""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available on this machine")
    if name == "mps" and not torch.backends.mps.is_available():  # Apple GPUs
        raise UsageError("--device mps: Apple's MPS backend is not available on this machine")
    return torch.device(name)


def check_training_input(config: Config) -> tuple[tuple[str, ...], torch.device]:
    """Everything about a config a user can get wrong that needs more than the config itself."""
    config.validate()
    check_env_id(config.env_id)
    return resolve_actions(config.env_id, config.actions), resolve_device(config.device)


@dataclass(frozen=True)
class MemoryNeed:
    """Host memory a run's config asks for, estimated before anything is allocated."""

    # frames and per-slot arrays at full capacity, plus the sum tree if prioritized; PQN: the
    # rollout's frame stacks
    replay: int
    networks: int  # online and target weights, their gradients, Adam's two moments

    @property
    def total(self) -> int:
        return self.replay + self.networks


def memory_need(config: Config, num_actions: int) -> MemoryNeed:
    """What :func:`build_training` will allocate for the replay and the networks (the same
    capacity as :func:`build_replay`; the kind mirrors :func:`make_replay`'s one look at it)."""
    if config.algo == "pqn":  # no replay: the rollout's frame stacks
        replay = config.rollout_steps * config.num_envs * 4 * 84 * 84
    else:
        capacity = config.buffer_size // config.num_envs * config.num_envs
        replay = FrameStorage.nbytes_for(capacity)
        if config.replay == "prioritized":
            replay += SumTree.nbytes_for(capacity)
    weights = sum(
        p.numel() * p.element_size() for p in build_network(config, num_actions).parameters()
    )
    return MemoryNeed(replay=replay, networks=5 * weights)


def available_memory() -> int | None:
    """Bytes the kernel says can be allocated without swapping (``MemAvailable``), or None
    where /proc/meminfo does not say (not Linux): then nothing is refused."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_memory(config: Config, actions: tuple[str, ...]) -> None:
    """Refuse (UsageError) a run whose replay and networks cannot fit in available memory."""
    available = available_memory()
    if available is None:
        return
    need = memory_need(config, len(actions))
    if need.total > available:
        raise UsageError(
            f"--buffer-size {config.buffer_size} needs {_size(need.total)} of memory "
            f"(replay {_size(need.replay)}, networks {_size(need.networks)}) but "
            f"{_size(available)} is available; use a smaller --buffer-size, or "
            "--force-memory to start anyway (with swap)"
        )


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n / 1e3:.1f} kB"


# ---------------------------------------------------------------------- parts
def make_replay(
    kind: str,
    capacity: int,
    rng: np.random.Generator,
    *,
    n_step: int = 1,
    gamma: float = 0.99,
    num_streams: int = 1,
    alpha: float = 0.6,
    priority_eps: float = 1e-6,
    frame_shape: tuple[int, int] = (84, 84),
) -> Replay:
    """A replay memory of ``kind`` over frame-deduplicated storage (the one place the kind is
    looked at; afterwards the replay says what it needs through ``uses_priorities``)."""
    storage = FrameStorage(
        capacity, frame_shape=frame_shape, n_step=n_step, gamma=gamma, num_streams=num_streams
    )
    if kind == "prioritized":
        return PrioritizedReplay(storage, rng, alpha=alpha, priority_eps=priority_eps)
    if kind == "uniform":
        return UniformReplay(storage, rng)
    raise ValueError(f"unknown replay kind {kind!r}")


def build_replay(config: Config, rng: np.random.Generator, num_streams: int = 1) -> Replay:
    """The replay memory the config asks for, with equal rings, one per env stream."""
    return make_replay(
        config.replay,
        config.buffer_size // num_streams * num_streams,
        rng,
        n_step=config.n_step,
        gamma=config.gamma,
        num_streams=num_streams,
        alpha=config.alpha,
        priority_eps=config.priority_eps,
    )


def build_env(
    config: Config, actions: tuple[str, ...], num_envs: int, *, num_threads: int = 0
) -> VecEnv:
    """The training env(s): one exact, saveable env, or N in ale-py's C++ vector env. Training
    games keep the ALE's 30-minute cap, whatever --eval-max-frames says of evaluation's."""
    settings = dataclasses.replace(EnvSettings.of(config, actions), max_frames=TRAINING_MAX_FRAMES)
    if num_envs == 1:
        return SingleEnv(make_env(settings, training=True))
    return AtariVector(settings, num_envs, num_threads=num_threads)


def build_eval_env(config: Config, actions: tuple[str, ...]) -> gym.Env:
    """The separate evaluation env: full games, raw rewards, the config's frame cap."""
    return make_env(EnvSettings.of(config, actions), training=False)


def build_network(
    config: Config, num_actions: int, generator: torch.Generator | None = None
) -> QNetwork:
    return QNetwork(
        num_actions,
        generator=generator,
        dueling=config.dueling,
        channels_last=config.channels_last,
        distributional=config.distributional,
        atoms=config.atoms,
        v_min=config.v_min,
        v_max=config.v_max,
        noisy=config.noisy,
        sigma0=config.noisy_sigma0,
        layer_norm=config.layer_norm,
    )


def build_online(
    config: Config,
    num_actions: int,
    device: torch.device,
    *,
    generator: torch.Generator | None = None,
    restore: Path | None = None,
) -> QNetwork:
    """The online network: initialised from ``generator``, or the weights of ``restore``."""
    from atari_dqn.artifacts import load_weights_into

    online = build_network(config, num_actions, generator)
    if restore is not None:
        load_weights_into(online, restore)
    return online.to(device)


def build_agent(
    config: Config,
    num_actions: int,
    device: torch.device,
    *,
    online: QNetwork | None = None,
    noise: torch.Generator | None = None,
    augment: torch.Generator | None = None,
) -> DQNAgent:
    """The learner around ``online`` (default: a fresh network): a target network, Adam; with
    noisy nets, ``noise`` is the generator of their noise, with ``--augment shift``,
    ``augment`` the generator of the shifts (default for each: seeded from 0)."""
    if online is None:
        online = build_online(config, num_actions, device)
    target = build_network(config, num_actions).to(device)
    optimizer = torch.optim.Adam(
        online.parameters(), lr=config.lr, eps=config.adam_eps, fused=config.fused_adam
    )
    return DQNAgent(
        online,
        target,
        optimizer,
        num_actions=num_actions,
        device=device,
        double=config.double,
        grad_clip=config.grad_clip,
        bf16=bf16_in_update(config, device, host_info()["bf16_native"]),
        one_pass=config.one_pass_double,
        compile=config.compile,
        noise=(noise or torch.Generator().manual_seed(0)) if config.noisy else None,
        augment=(
            RandomShift(augment or torch.Generator().manual_seed(0), pad=4)
            if config.augment == "shift"
            else None
        ),
    )


def build_policy(
    network: QNetwork, device: torch.device, noise: torch.Generator | None = None
) -> EpsilonGreedyPolicy:
    """An act-only ε-greedy policy over a network (evaluation, Ape-X actors): no optimiser.
    Noisy layers act with their mean weights (as Dopamine evaluates), or, given ``noise`` (an
    Ape-X actor of a noisy run), with fresh noise from it at every step, as training acts."""
    network = network.to(device).train(noise is not None)
    return EpsilonGreedyPolicy(network, network.num_actions, device, noise=noise)


# ---------------------------------------------------------------------- a training run
AgentT = TypeVar("AgentT", bound=EvalAgent, covariant=True)
A = TypeVar("A", bound=EvalAgent)


@dataclass(frozen=True)
class LearnerSide(Generic[AgentT]):
    """The learner's side of a run, shared by the single-process loops and the Ape-X learner:
    the learner itself (``agent``: a ``DQNAgent`` or ``PQNLearner``), the evaluation env, the
    schedules, the loop's settings and the generators it continues."""

    config: Config
    actions: tuple[str, ...]
    device: torch.device
    agent: AgentT
    online: QNetwork  # the agent's online network, as built (what model files save)
    eval_env: gym.Env
    settings: LoopSettings
    epsilon: LinearSchedule
    beta: LinearSchedule
    loop_rng: np.random.Generator
    replay_rng: np.random.Generator


@dataclass
class Training:
    """Every part of a single-process training run, built and wired, not yet started."""

    learner: LearnerSide[EvalAgent]
    env: VecEnv
    replay: Replay | None  # None: PQN has no replay memory
    loop: Loop


@dataclass(frozen=True)
class _Seeds:
    """The run seed's independent streams (``SeedSequence.spawn``: child i is the same for any
    count, so a stream added at the end changes none before it)."""

    env: int
    eval: int
    weights: torch.Generator
    replay: np.random.Generator
    loop: np.random.Generator
    noise: torch.Generator
    augment: torch.Generator  # DQN's --augment shift
    permutations: torch.Generator  # PQN's minibatch permutations

    @classmethod
    def of(cls, seed: int) -> _Seeds:
        seeds = np.random.SeedSequence(seed).spawn(8)

        def torch_gen(child: np.random.SeedSequence) -> torch.Generator:
            return torch.Generator().manual_seed(int(child.generate_state(1)[0]))

        env_seed, eval_seed = (int(s.generate_state(1)[0] >> 1) for s in seeds[:2])
        return cls(
            env=env_seed,
            eval=eval_seed,
            weights=torch_gen(seeds[2]),
            replay=np.random.default_rng(seeds[3]),
            loop=np.random.default_rng(seeds[4]),
            noise=torch_gen(seeds[5]),
            augment=torch_gen(seeds[6]),
            permutations=torch_gen(seeds[7]),
        )


def _learner(
    config: Config, restore: Path | None, make_agent: Callable[[QNetwork, torch.device, _Seeds], A]
) -> LearnerSide[A]:
    """The parts every learner has, around the agent ``make_agent`` builds on the online net."""
    from atari_dqn.perf import tune_allocator

    actions, device = check_training_input(config)
    seeds = _Seeds.of(config.seed)
    tune_allocator()
    online = build_online(config, len(actions), device, generator=seeds.weights, restore=restore)
    settings = LoopSettings(
        total_steps=config.total_steps,
        warmup_steps=config.warmup_steps,
        update_every=config.update_every,
        target_update=config.target_update,
        batch_size=config.batch_size,
        eval_every=config.eval_every,
        eval_games=config.eval_games,
        eval_epsilon=config.eval_epsilon,
        eval_seed=seeds.eval,
        env_seed=seeds.env,
    )
    return LearnerSide(
        config=config,
        actions=actions,
        device=device,
        agent=make_agent(online, device, seeds),
        online=online,
        eval_env=build_eval_env(config, actions),
        settings=settings,
        epsilon=LinearSchedule(
            config.eps_start, config.eps_end, config.eps_decay, begin=config.warmup_steps
        ),
        beta=LinearSchedule(config.beta0, 1.0, config.beta_steps or config.total_steps),
        loop_rng=seeds.loop,
        replay_rng=seeds.replay,
    )


def build_learner(config: Config, *, restore: Path | None = None) -> LearnerSide[DQNAgent]:
    """A DQN learner: networks, optimiser, evaluation env, schedules and generators of a run."""

    def agent(online: QNetwork, device: torch.device, seeds: _Seeds) -> DQNAgent:
        n = online.num_actions
        return build_agent(
            config, n, device, online=online, noise=seeds.noise, augment=seeds.augment
        )

    return _learner(config, restore, agent)


def pqn_settings(config: Config) -> PQNSettings:
    return PQNSettings(
        num_envs=config.num_envs,
        rollout_steps=config.rollout_steps,
        epochs=config.epochs,
        minibatches=config.minibatches,
        lr=config.lr,
        max_grad_norm=config.max_grad_norm,
        gamma=config.gamma,
        lam=config.q_lambda,
        layer_norm=config.layer_norm,
    )


def build_pqn_learner(config: Config, *, restore: Path | None = None) -> LearnerSide[PQNLearner]:
    """A PQN learner: the online network (no target), RAdam, the permutation generator."""

    def agent(online: QNetwork, device: torch.device, seeds: _Seeds) -> PQNLearner:
        return PQNLearner(
            online,
            make_pqn_optimizer(online, config.lr, config.adam_eps),
            num_actions=online.num_actions,
            device=device,
            settings=pqn_settings(config),
            generator=seeds.permutations,
        )

    return _learner(config, restore, agent)


def build_training(
    config: Config, *, restore: Path | None = None, timer: PhaseTimer | None = None
) -> Training:
    """A single-process run: the learner, the training env(s), the replay (DQN) and the loop;
    ``config.algo`` is looked at here, once. ``timer`` (``bench train``'s breakdown) is given
    the time of each phase of the loop."""
    if config.algo == "pqn":
        pqn = build_pqn_learner(config, restore=restore)
        env = build_env(config, pqn.actions, config.num_envs)
        lr = config.lr
        pqn_loop = PQNLoop(
            env,
            pqn.eval_env,
            pqn.agent,
            pqn.epsilon,
            rng=pqn.loop_rng,
            settings=pqn.settings,
            rollout_steps=config.rollout_steps,
            lr=lambda step: lr,
            timer=timer,
        )
        return Training(pqn, env, None, pqn_loop)
    learner = build_learner(config, restore=restore)
    env = build_env(config, learner.actions, config.num_envs)
    replay = build_replay(config, learner.replay_rng, config.num_envs)
    loop = TrainLoop(
        env,
        learner.eval_env,
        learner.agent,
        replay,
        learner.epsilon,
        beta=learner.beta,
        rng=learner.loop_rng,
        settings=learner.settings,
        timer=timer,
    )
    return Training(learner, env, replay, loop)
