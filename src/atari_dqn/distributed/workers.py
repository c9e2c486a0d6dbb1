"""The two kinds of worker of an Ape-X run, as plain classes (``apex`` makes them Ray actors).

* :class:`ActorWorker`: one or more training envs and a CPU copy of the policy. It acts
  ε-greedily with its own fixed ε per env (and its own noise, with noisy nets), records the
  replay calls of a block of steps, computes the initial priorities of the transitions they
  complete and returns the block.
* :class:`ReplayService`: the replay memory (uniform or prioritized, one stream per actor env)
  behind add / sample / update_priorities / state.

Neither imports Ray, so both are tested in one process.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from atari_dqn import losses
from atari_dqn.build import build_env, build_network, build_policy
from atari_dqn.config import Config
from atari_dqn.distributed.blocks import Block, BlockRecorder, apply_block
from atari_dqn.networks import QNetwork, mean_weights
from atari_dqn.replay import Replay
from atari_dqn.replay.storage import Batch
from atari_dqn.vector import record


@torch.no_grad()
def initial_priorities(network: QNetwork, batch: Batch, *, double: bool) -> np.ndarray:
    """What a batch's transitions enter the replay with, under one network used as online and
    target net alike (an actor has one copy; the Double-DQN form is then the same as the plain
    one): ``|R + d · max_a Q(s', a) - Q(s, a)|``, or with a distributional head the cross-entropy
    of C51's projected target, as the learner's priorities are (Rainbow). Noisy layers use their
    mean weights here: a priority should not depend on the noise draw of the moment."""
    obs, next_obs = torch.from_numpy(batch.obs), torch.from_numpy(batch.next_obs)
    returns, discounts = torch.from_numpy(batch.returns), torch.from_numpy(batch.discounts)
    actions = torch.from_numpy(batch.actions)
    with mean_weights(network):
        if network.distributional:
            assert network.support is not None
            logits, next_logits = network.logits(obs), network.logits(next_obs)
            next_probs = next_logits.softmax(dim=-1)
            target = losses.categorical_target(
                returns, discounts, next_probs, next_probs, network.support
            )
            return losses.categorical_cross_entropy(logits, actions, target).numpy()
        q, next_q = network(obs), network(next_obs)
    if double:
        y = losses.double_q_target(returns, discounts, next_q, next_q)
    else:
        y = losses.q_learning_target(returns, discounts, next_q)
    return losses.td_errors(q, actions, y).abs().numpy()


@dataclass
class CollectStats:
    """What a block was, for the learner's bookkeeping (small: the block travels separately)."""

    actor: int
    steps: int  # agent steps (transitions) in the block
    game_returns: list[float]  # raw scores of the games that ended
    game_lengths: list[int]
    version: int  # weights version the block was played with
    fresh: bool = False  # new games: this incarnation's first block, or a restart asked for


class ActorWorker:
    """Envs, a policy copy and a block recorder; see the module docstring."""

    def __init__(
        self,
        index: int,
        config: Config,
        actions: tuple[str, ...],
        epsilons: list[float],
        *,
        block: int,
        prioritized: bool,
    ) -> None:
        torch.set_num_threads(1)
        self.index = index
        self.epsilons = np.asarray(epsilons, dtype=np.float64)
        self.num_envs = len(self.epsilons)
        # Preprocessed as in single-process training; one C++ thread: an actor has one CPU.
        self.env = build_env(config, actions, self.num_envs, num_threads=1)
        # The learner's network layout; its weights come from the learner (set_weights).
        network = build_network(config, len(actions))
        self.network = network
        # ε-greedy acting with one ε per env (the comparison broadcasts); no optimiser. Noisy
        # nets act with fresh noise every step, from this actor's own generator (seeded in
        # collect, as the ε draws are).
        self.noise = torch.Generator() if config.noisy else None
        self.policy = build_policy(network, torch.device("cpu"), noise=self.noise)
        self.double = config.double
        self.prioritized = prioritized
        self._new_recorder = functools.partial(
            BlockRecorder,
            index,
            self.num_envs,
            block=block,
            n_step=config.n_step,
            gamma=config.gamma,
        )
        self.recorder = self._new_recorder()
        self.block = block
        self.version = -1
        self.rng: np.random.Generator | None = None
        self._obs: np.ndarray | None = None

    def set_weights(self, weights: dict[str, np.ndarray], version: int) -> None:
        self.network.load_state_dict({k: torch.tensor(v) for k, v in weights.items()})
        self.version = version

    def _priorities(self, batch: Batch) -> np.ndarray:
        return initial_priorities(self.network, batch, double=self.double)

    def collect(
        self,
        iterations: int,
        weights: dict[str, np.ndarray] | None = None,
        version: int = -1,
        seed: int = 0,
        restart: bool = False,
    ) -> tuple[CollectStats, Block]:
        """Step every env ``iterations`` times (at most ``block``); return the block.

        ``weights``: newer policy weights (numbered ``version``) to act with from now on.
        ``seed``: seeds the envs and the ε draws on the first call (of this incarnation), and
        on a ``restart``: new games from here, in a fresh block (a new replay server, which
        does not hold the episodes this actor was playing, asks for it).
        """
        if weights is not None:
            self.set_weights(weights, version)
        if not 1 <= iterations <= self.block:
            raise ValueError(f"iterations must be in [1, {self.block}], got {iterations}")
        if restart:
            self._obs = None
            self.recorder = self._new_recorder()
        fresh = self._obs is None
        if self._obs is None:  # (not ``fresh``: mypy narrows only this form)
            self.rng = np.random.default_rng([seed, self.index])
            if self.noise is not None:
                state = np.random.SeedSequence([seed, self.index, 1]).generate_state(1, np.uint64)
                self.noise.manual_seed(int(state[0] >> np.uint64(1)))
            vs = self.env.reset(seed=seed)
            for i in range(self.num_envs):
                self.recorder.begin(i, vs.obs[i, -1])
            self._obs = vs.obs
        assert self.rng is not None
        steps, returns, lengths = 0, [], []
        for _ in range(iterations):
            actions = self.policy.act(self._obs, self.epsilons, self.rng)
            self.env.send(actions)
            vs = self.env.recv()
            record(self.recorder, actions, vs)
            self._obs = vs.obs
            steps += int(vs.transition.sum())
            returns += vs.game_returns
            lengths += vs.game_lengths
        block = self.recorder.take(self._priorities if self.prioritized else None)
        return CollectStats(self.index, steps, returns, lengths, self.version, fresh), block


@dataclass(frozen=True)
class SampleToken:
    """Where each stream's writer stood when a batch was drawn (to spot overwritten slots)."""

    cursor: np.ndarray  # (streams,) next local slot to write
    writes: np.ndarray  # (streams,) frames written so far


class ReplayService:
    """The replay memory of an Ape-X run: actors' blocks in, batches out, priorities back.

    ``make_replay()`` builds the memory (``build.build_replay``, one stream per actor env).
    A priority update for a slot that was overwritten after its batch was drawn (and may hold a
    new transition by now) is dropped.
    """

    def __init__(self, make_replay: Callable[[], Replay]) -> None:
        self.replay = make_replay()
        self.storage = self.replay.storage
        self.prioritized = self.replay.uses_priorities
        self.writes = np.zeros(self.storage.num_streams, dtype=np.int64)
        self.blocks = 0

    def add(self, block: Block) -> int:
        """Apply an actor's block; returns the number of sampleable transitions."""
        apply_block(self.replay, block, with_priorities=self.prioritized)
        first = block.actor * block.num_envs
        self.writes[first : first + block.num_envs] += block.writes()
        self.blocks += 1
        return len(self.replay)

    def size(self) -> int:
        return len(self.replay)

    def uses_priorities(self) -> bool:
        return self.prioritized

    def stats(self) -> dict[str, float]:
        return self.replay.stats()

    def sample(
        self, batch_size: int, beta: float
    ) -> tuple[Batch, SampleToken, int, dict[str, float]]:
        """A batch, the token to hand back with its priorities, the replay's size and stats."""
        batch = self.replay.sample(batch_size, beta)
        token = SampleToken(self.storage.cursor.copy(), self.writes.copy())
        return batch, token, len(self.replay), self.replay.stats()

    def update_priorities(
        self, indices: np.ndarray, td_errors: np.ndarray, token: SampleToken
    ) -> None:
        """New priorities for a batch's slots, except those rewritten since it was drawn."""
        st = self.storage
        indices = np.asarray(indices, dtype=np.int64)
        stream = indices // st.per_stream
        ahead = (indices - stream * st.per_stream - token.cursor[stream]) % st.per_stream
        keep = self.writes[stream] - token.writes[stream] <= ahead
        self.replay.update_priorities(indices[keep], np.asarray(td_errors)[keep])

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return self.replay.state()

    def load_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        self.replay.load_state(arrays, meta)

    # The frames, by slot range, for checkpoints (see FrameStorage).
    def frame_mark(self) -> np.ndarray:
        return self.replay.frame_mark()

    def ring_slots(self) -> int:
        return self.replay.ring_slots()

    def frame_ranges(self, since: np.ndarray | None = None) -> list[tuple[int, int]]:
        return self.replay.frame_ranges(since)

    def get_frames(self, start: int, stop: int) -> np.ndarray:
        return self.replay.get_frames(start, stop).copy()  # a copy: it leaves the process

    def put_frames(self, start: int, frames: np.ndarray) -> None:
        self.replay.put_frames(start, frames)
