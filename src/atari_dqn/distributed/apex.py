"""Ape-X on Ray (Horgan et al. 2018): actors collect, a replay server stores, the learner learns.

* N **actors** (Ray actors, restarted by Ray when they die) each run one env, or an AtariVector
  of several, with a CPU copy of the policy and a fixed ε per env (``actor_exploration``). They
  play blocks of steps and compute the initial priority of every transition they complete.
* The **replay server** (a Ray actor) holds the replay memory, one stream per actor env.
* The **learner** is this process (the GPU when there is one): it samples batches (one drawn
  ahead), updates, sends the new priorities back, syncs its target network, publishes its
  weights to the actors every ``publish_every`` updates, evaluates and reports exactly as the
  single-process :class:`~atari_dqn.loop.TrainLoop` (the same ``evaluate_at`` and
  ``close_report``). Both implement the :class:`~atari_dqn.loop.Loop` protocol, so the driver's
  progress bar, rewards.txt, models, TensorBoard and checkpoints serve both.

Blocks go from the actors to the replay server through this process in order (as object
references: the frames travel between the two directly), so the replay holds exactly the steps
counted here when a checkpoint is taken. Steps are handed to the actors so that the collected
count lands exactly on each evaluation and on ``total_steps``; while an evaluation and its
checkpoint run, the actors already play their next blocks. The learner never makes more than one
update per ``update_every`` collected steps (after ``warmup_steps``), the single-process replay
ratio; when the actors outrun it, it makes fewer.

If the replay server dies, the learner starts a new one and restores into it the replay of the
run's last checkpoint (or, when that saved none, lets the actors refill it: a new warm-up before
learning goes on), says so in one line, and carries on; the actors start new games, since the
new server does not hold the episodes they were in. What the dead server received after that
checkpoint is lost; the step count goes on (those steps were played).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import ray
import torch

from atari_dqn.agent import DQNAgent, UpdateResult
from atari_dqn.build import LearnerSide, build_learner, build_replay
from atari_dqn.checkpoint import load_checkpoint_replay
from atari_dqn.config import Config
from atari_dqn.distributed.settings import ApexSettings, actor_exploration, check_local_ray
from atari_dqn.distributed.workers import ActorWorker, CollectStats, ReplayService
from atari_dqn.driver import Driven, Launch
from atari_dqn.evaluate import EvalResult
from atari_dqn.loop import EvalSchedule, LoopSettings, Progress, close_report, evaluate_at
from atari_dqn.replay import Replay

log = logging.getLogger(__name__)

# An actor that dies this many times in a row without delivering a block stops the run, and so
# does one that stays unavailable (restarting) this long.
MAX_DEATHS_IN_A_ROW = 3
MAX_UNAVAILABLE_S = 600.0
RETRY_AFTER_S = 0.5  # wait before handing a block to an actor that is restarting
MAX_PENDING_ADDS_PER_ACTOR = 2
MAX_PENDING_PRIORITY_UPDATES = 8
# A replay server that dies this many times without a learner update in between stops the run.
MAX_SERVER_LOSSES_IN_A_ROW = 3


class ReplayServerLost(RuntimeError):
    """The replay server died; the learner replaces it (see the module docstring)."""


def start_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Join the cluster at ``address`` (``auto``: the local one), or start a local Ray with
    ``num_cpus``. A Ray already initialised in this process (a test, a Tune trial) is used as it
    is. Returns whether this call started or joined Ray, and so should shut it down."""
    if ray.is_initialized():
        return False
    check_local_ray(address)  # never a local Ray open to the network without authentication
    if address is not None or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True)
    else:
        ray.init(
            num_cpus=num_cpus,
            include_dashboard=False,
            logging_level=logging.WARNING,
            log_to_driver=True,
        )
    return True


def weights_of(network: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy().copy() for k, v in network.state_dict().items()}


class RemoteReplay:
    """The replay server seen as a replay by checkpoints and reports (state, load_state, len).

    ``start()`` starts a server (an empty replay); :meth:`replace_server` starts a new one when
    the current one died and restores into it the replay of ``checkpoint`` (the run's last; the
    driver tells it through :meth:`checkpoint_saved`). A call that finds the server dead calls
    ``on_lost`` (the learner's recovery), then tries once more on the new server.
    """

    def __init__(self, start: Callable[[], Any], *, uses_priorities: bool | None = None) -> None:
        self._start = start
        self.server = start()
        if uses_priorities is None:
            uses_priorities = bool(ray.get(self.server.uses_priorities.remote()))
        self.uses_priorities = uses_priorities
        self.checkpoint: Path | None = None
        self.replacements = 0  # servers started after the first one died
        self.on_lost: Callable[[], None] | None = None

    def _call(self, method: str, *args: Any) -> Any:
        try:
            return ray.get(getattr(self.server, method).remote(*args))
        except ray.exceptions.RayActorError:
            if self.on_lost is None:
                raise
        self.on_lost()
        return ray.get(getattr(self.server, method).remote(*args))

    def __len__(self) -> int:
        return int(self._call("size"))

    def stats(self) -> dict[str, float]:
        return self._call("stats")

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return self._call("state")

    def load_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        self._call("load_state", arrays, meta)

    def checkpoint_saved(self, path: Path) -> None:
        """The run's checkpoint at ``path`` is the one to restore a new server from."""
        self.checkpoint = Path(path)

    def replace_server(self) -> int | None:
        """Start a new server in place of the dead one, with the replay of the last checkpoint
        (returns its step), or empty (None: no checkpoint yet, or one without a replay)."""
        with contextlib.suppress(Exception):
            ray.kill(self.server, no_restart=True)
        self.server = self._start()
        self.replacements += 1
        if self.checkpoint is None:
            return None
        return load_checkpoint_replay(self.checkpoint, self)

    def close(self) -> None:
        ray.kill(self.server, no_restart=True)

    def frame_mark(self) -> np.ndarray:
        return ray.get(self.server.frame_mark.remote())

    def ring_slots(self) -> int:
        return ray.get(self.server.ring_slots.remote())

    def frame_ranges(self, since: np.ndarray | None = None) -> list[tuple[int, int]]:
        return ray.get(self.server.frame_ranges.remote(since))

    def get_frames(self, start: int, stop: int) -> np.ndarray:
        return ray.get(self.server.get_frames.remote(start, stop))

    def put_frames(self, start: int, frames: np.ndarray) -> None:
        ray.get(self.server.put_frames.remote(start, frames))


@dataclass
class _Slot:
    """One actor as the pool sees it."""

    handle: Any
    stats_ref: Any = None  # the collect in flight, if any: its stats ...
    block_ref: Any = None  # ... and its block
    bound: int = 0  # at most this many steps in flight
    version: int = -1  # weights version it has
    restarts: int = 0  # deaths seen: a call failed, or a block came from a new incarnation
    deaths_in_a_row: int = 0
    down_since: float | None = None  # unavailable since (perf_counter), while it restarts
    retry_at: float = 0.0  # no block before this time (perf_counter)
    submitted: int = 0  # collects handed to it
    delivered: int = 0  # blocks it delivered
    restart_games: bool = False  # its next block starts new games (a new replay server) ...
    expect_fresh: bool = False  # the block in flight starts new games, as asked or as known
    discard: bool = False  # ... and the block in flight now is not forwarded (the old one's)


@dataclass
class Harvest:
    """Blocks that came back since the last poll."""

    steps: int = 0
    game_returns: list[float] = field(default_factory=list)
    game_lengths: list[int] = field(default_factory=list)


class ActorPool:
    """N actors with at most one collect in flight each; forwards their blocks to the server.

    ``seed`` and each actor's restart count seed its envs, so a restarted actor (or a resumed
    run, through ``epoch``) plays new games.
    """

    def __init__(
        self,
        handles: list[Any],
        server: Any,
        *,
        envs_per_actor: int,
        block: int,
        seed: int,
        epoch: int = 0,
    ) -> None:
        self.slots = [_Slot(h) for h in handles]
        self.server = server
        self.envs_per_actor = envs_per_actor
        self.block = block
        self.seed = seed
        self.epoch = epoch  # bumped on resume, so new games are played
        self.version = -1
        self._weights_ref: Any = None
        self._adds: deque[Any] = deque()

    @property
    def restarts(self) -> list[int]:
        return [s.restarts for s in self.slots]

    @property
    def in_flight(self) -> int:
        """Upper bound of the steps being collected now."""
        return sum(s.bound for s in self.slots if s.stats_ref is not None)

    def publish(self, weights: dict[str, np.ndarray]) -> int:
        """Make ``weights`` the policy the actors act with from their next block on."""
        self.version += 1
        self._weights_ref = ray.put(weights)
        return self.version

    def submit(self, budget: int) -> int:
        """Give idle actors blocks of at most ``budget`` steps in all; returns what was handed."""
        handed = 0
        now = time.perf_counter()
        for i, slot in enumerate(self.slots):
            if slot.stats_ref is not None or budget - handed <= 0 or now < slot.retry_at:
                continue
            iterations = min(self.block, -(-(budget - handed) // self.envs_per_actor))
            send_weights = slot.version != self.version
            # Used by an actor's first collect only (a restarted one too): new games each time.
            seq = np.random.SeedSequence([self.seed, i, self.epoch, slot.submitted])
            seed = int(seq.generate_state(1)[0] >> 1)
            slot.stats_ref, slot.block_ref = slot.handle.collect.options(num_returns=2).remote(
                iterations,
                self._weights_ref if send_weights else None,
                self.version,
                seed,
                slot.restart_games,
            )
            # A block that starts new games though neither this nor a death seen asked for it
            # comes from an incarnation Ray restarted between two blocks (poll counts it).
            slot.expect_fresh = (
                slot.submitted == 0 or slot.restart_games or slot.down_since is not None
            )
            slot.restart_games = False
            slot.bound = iterations * self.envs_per_actor
            slot.submitted += 1
            if send_weights:
                slot.version = self.version
            handed += slot.bound
        return handed

    def poll(self, timeout: float) -> Harvest:
        """Collect the blocks that are done (waiting up to ``timeout`` s for a first one)."""
        harvest = Harvest()
        refs = [s.stats_ref for s in self.slots if s.stats_ref is not None]
        if not refs:
            return harvest
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        if not ready and timeout > 0:
            ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0) if ready else ([], [])
        done = set(ready)
        for i, slot in enumerate(self.slots):
            if slot.stats_ref is None or slot.stats_ref not in done:
                continue
            try:
                stats: CollectStats = ray.get(slot.stats_ref)
            except ray.exceptions.RayActorError as exc:
                self._failed(i, slot, exc)
                continue
            if stats.fresh and not slot.expect_fresh:
                # Ray restarted the actor while no collect of ours was in flight, so no call
                # failed. It played this block with its initial weights: send them again.
                slot.restarts += 1
                slot.version = -1
                log.warning("actor %d was restarted by Ray between two blocks", i)
            if slot.discard:  # continues games the new replay server does not hold
                slot.stats_ref, slot.block_ref, slot.bound, slot.discard = None, None, 0, False
                continue
            self._adds.append(self.server.add.remote(slot.block_ref))
            slot.stats_ref, slot.block_ref, slot.bound = None, None, 0
            slot.deaths_in_a_row, slot.down_since = 0, None
            slot.delivered += 1
            harvest.steps += stats.steps
            harvest.game_returns += stats.game_returns
            harvest.game_lengths += stats.game_lengths
        while len(self._adds) > MAX_PENDING_ADDS_PER_ACTOR * len(self.slots):
            self._settle(self._adds.popleft())
        return harvest

    def _failed(self, i: int, slot: _Slot, exc: Exception) -> None:
        """The actor died, or is restarting: its block is lost; it gets a new one later."""
        slot.stats_ref, slot.block_ref, slot.bound = None, None, 0
        slot.version = -1  # a new incarnation has no weights yet
        slot.discard = False  # (and starts new games anyway)
        now = time.perf_counter()
        slot.retry_at = now + RETRY_AFTER_S
        if slot.down_since is None:
            slot.down_since = now
            slot.restarts += 1
            log.warning("actor %d died (%s); Ray restarts it and the run goes on", i, exc)
        if isinstance(exc, ray.exceptions.ActorUnavailableError):  # restarting: wait
            if now - slot.down_since > MAX_UNAVAILABLE_S:
                raise RuntimeError(f"actor {i} has been restarting for too long: {exc}") from exc
            return
        slot.deaths_in_a_row += 1
        if slot.deaths_in_a_row >= MAX_DEATHS_IN_A_ROW:
            raise RuntimeError(
                f"actor {i} died {slot.deaths_in_a_row} times without delivering a block: {exc}"
            ) from exc

    def _settle(self, ref: Any) -> None:
        try:
            ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            raise ReplayServerLost(f"the replay server died: {exc}") from exc

    def server_replaced(self, server: Any) -> None:
        """Forward to ``server`` from now on. The blocks forwarded to the dead one are lost;
        those being played now continue games it held, so they are dropped, and every actor's
        next block starts new games."""
        self.server = server
        self._adds.clear()
        for slot in self.slots:
            slot.restart_games = True
            slot.discard = slot.stats_ref is not None

    def flush(self) -> None:
        """Wait until every forwarded block is in the replay."""
        while self._adds:
            self._settle(self._adds.popleft())

    def close(self) -> None:
        for slot in self.slots:
            ray.kill(slot.handle, no_restart=True)


class ApexLoop:
    """The learner's side of an Ape-X run, with TrainLoop's interface (run, step, state)."""

    def __init__(
        self,
        *,
        pool: ActorPool,
        replay: RemoteReplay,
        agent: DQNAgent,
        eval_env: gym.Env,
        settings: LoopSettings,
        apex: ApexSettings,
        beta: Callable[[int], float],
        rng: np.random.Generator,
        epsilons: np.ndarray,
    ) -> None:
        self.pool = pool
        self.replay = replay
        self.server = replay.server
        self.agent = agent
        self.eval_env = eval_env
        self.settings = settings
        self.apex = apex
        self.beta = beta
        self.rng = rng
        self.epsilon = float(np.mean(epsilons))  # reported as charts/epsilon
        self.step = 0  # agent steps collected (and forwarded to the replay)
        self.updates = 0
        self.evals = EvalSchedule(settings.eval_every)
        self.learn_from = settings.warmup_steps  # learning starts at this step ...
        self.updates_from = 0  # ... counting its updates from this many
        # Copy the online net to the target every this many updates (the single-process
        # cadence when the learner keeps up: target_update agent steps).
        self.sync_every = max(1, settings.target_update // settings.update_every)
        self._samples: deque[Any] = deque()
        self._stop = False  # request_stop(): report at the next harvest (evaluations finish)
        self._priority_updates: deque[Any] = deque()
        self._replay_size = 0
        self._size_known_at = -1
        self._replay_stats: dict[str, float] = {}
        self._server_losses = 0  # in a row, without an update in between
        replay.on_lost = self._replace_server

    # ------------------------------------------------------------------ state
    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The learner's counters and generator, and the Ape-X layout (the streams)."""
        return {}, {
            "step": self.step,
            "updates": self.updates,
            "next_eval": self.evals.next,
            "learn_from": self.learn_from,
            "updates_from": self.updates_from,
            "rng": self.rng.bit_generator.state,
            "apex": self.apex.to_dict(),
            "restarts": self.pool.restarts,
            "epoch": self.pool.epoch,
        }

    def load_state(
        self, arrays: dict[str, np.ndarray], meta: dict[str, Any], *, replay_restored: bool
    ) -> None:
        """Continue from a checkpoint. Actors start new games (their envs are not saved)."""
        del arrays
        if "apex" not in meta:
            raise ValueError("the checkpoint is of a single-process run, not an --actors run")
        saved = ApexSettings.from_dict(meta["apex"])
        if (saved.actors, saved.envs_per_actor) != (self.apex.actors, self.apex.envs_per_actor):
            raise ValueError(
                f"it has {saved.actors} actors x {saved.envs_per_actor} envs, this run "
                f"{self.apex.actors} x {self.apex.envs_per_actor}"
            )
        self.step = int(meta["step"])
        self.updates = int(meta["updates"])
        self.evals.next = int(meta["next_eval"])
        self.learn_from = int(meta["learn_from"])
        self.updates_from = int(meta["updates_from"])
        self.rng.bit_generator.state = meta["rng"]
        self.pool.epoch = int(meta.get("epoch", 0)) + 1
        if not replay_restored:  # an empty replay: a new warm-up before learning
            self.learn_from = self.step + self.settings.warmup_steps
            self.updates_from = self.updates

    def request_stop(self) -> None:
        """Report at the next harvest. An evaluation under way plays to its end: this loop
        counts it as done before it is played (its schedule moves first), so it cannot be left
        due for the resumed run."""
        self._stop = True

    # ------------------------------------------------------------------ parts
    def evaluate(self, index: int) -> EvalResult:
        return evaluate_at(
            self.eval_env, self.agent.act_eval, self.settings, index=index, step=self.step
        )

    def _updates_due(self) -> int:
        """Updates the learner may still make: one per update_every steps after warm-up."""
        if self.step < self.learn_from:
            return 0
        allowed = self.updates_from + (self.step - self.learn_from) // self.settings.update_every
        return allowed - self.updates

    def _request_sample(self) -> None:
        self._samples.append(
            self.server.sample.remote(self.settings.batch_size, self.beta(self.step))
        )

    @staticmethod
    def _from_server(ref: Any) -> Any:
        try:
            return ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            raise ReplayServerLost(f"the replay server died: {exc}") from exc

    def _replace_server(self) -> None:
        """A new replay server, with the last checkpoint's replay or refilled; one log line."""
        self._server_losses += 1
        if self._server_losses > MAX_SERVER_LOSSES_IN_A_ROW:
            raise RuntimeError(
                f"the replay server died {self._server_losses} times without a learner update"
            )
        restored = self.replay.replace_server()
        self.server = self.replay.server
        self.pool.server_replaced(self.server)
        self._samples.clear()
        self._priority_updates.clear()
        self._replay_size, self._size_known_at, self._replay_stats = 0, -1, {}
        if restored is None:  # an empty replay: a new warm-up before learning goes on
            self.learn_from = self.step + self.settings.warmup_steps
            self.updates_from = self.updates
            log.warning(
                "the replay server died at step %d; a new one is refilled: learning goes on "
                "after %d steps of warm-up, at step %d",
                self.step,
                self.settings.warmup_steps,
                self.learn_from,
            )
        else:
            log.warning(
                "the replay server died at step %d; a new one holds the replay of the "
                "checkpoint at step %d (%d transitions) and the run goes on",
                self.step,
                restored,
                len(self.replay),
            )

    def _learn(self) -> UpdateResult | None:
        """One update, if one is due and the replay can fill a batch."""
        if self._updates_due() <= 0:
            return None
        # (until the first batch: asked once a block)
        if self._replay_size < self.settings.batch_size:
            if self._size_known_at == self.step:
                return None
            self._size_known_at = self.step
            self.pool.flush()
            self._replay_size = len(self.replay)
            if self._replay_size < self.settings.batch_size:
                return None
        while len(self._samples) < 2:  # one batch in hand, one being drawn
            self._request_sample()
        batch, token, self._replay_size, self._replay_stats = self._from_server(
            self._samples.popleft()
        )
        # Arrays from Ray's object store are read-only views: torch wants its own.
        batch = dataclasses.replace(
            batch, **{f.name: np.array(getattr(batch, f.name)) for f in dataclasses.fields(batch)}
        )
        result = self.agent.update(batch)
        self._priority_updates.append(
            self.server.update_priorities.remote(
                batch.indices, result.priority.cpu().numpy(), token
            )
        )
        while len(self._priority_updates) > MAX_PENDING_PRIORITY_UPDATES:
            self._from_server(self._priority_updates.popleft())
        self.updates += 1
        self._server_losses = 0
        if self.updates % self.sync_every == 0:
            self.agent.sync_target()
        if self.updates % self.apex.publish_every == 0:
            self.pool.publish(weights_of(self.agent.online))
        return result

    def _limit(self) -> int:
        """Blocks are handed out up to the next evaluation, and never past the end."""
        return min(self.settings.total_steps, self.evals.next)

    def _hand_out(self) -> None:
        self.pool.submit(self._limit() - self.step - self.pool.in_flight)

    # ------------------------------------------------------------------ the loop
    def run(self) -> Iterator[Progress]:
        """Collect, learn, sync, publish, evaluate, report; until ``total_steps``."""
        settings = self.settings
        last: UpdateResult | None = None
        report = Progress(step=self.step, epsilon=self.epsilon)
        next_report = (self.step // settings.report_every + 1) * settings.report_every
        if self.pool.version < 0:
            self.pool.publish(weights_of(self.agent.online))
        self._hand_out()
        learned = False
        while self.step < settings.total_steps:
            try:
                # Wait for the actors only when the learner has nothing to do.
                harvest = self.pool.poll(timeout=0.0 if learned else 0.2)
                self.step += harvest.steps
                report.add_games(harvest.game_returns, harvest.game_lengths, self.step)
                evaluation = None
                if self.evals.due(self.step):
                    index = self.evals.index
                    self.pool.flush()  # the checkpoint's replay holds every counted step
                    self.evals.done(self.step)
                    self._hand_out()  # the actors play on during the evaluation and checkpoint
                    evaluation = self.evaluate(index)
                else:
                    self._hand_out()
                    result = self._learn()
                    learned = result is not None
                    last = result or last
                if self.step >= settings.total_steps:
                    self.pool.flush()
            except ReplayServerLost:
                self._replace_server()
                learned = False
                continue
            step = self.step
            due = evaluation is not None or step >= next_report or step >= settings.total_steps
            if due or self._stop:
                next_report = (step // settings.report_every + 1) * settings.report_every
                report = close_report(
                    report,
                    step=step,
                    epsilon=self.epsilon,
                    updates=self.updates,
                    evaluation=evaluation,
                    beta=float(self.beta(step)),
                    replay_stats=self._replay_stats,
                    last=last,
                )
                yield report
                report = Progress(step=step, epsilon=self.epsilon)


@dataclass
class ApexRun:
    """The Ray side of an ``--actors`` run: actors, replay server, the loop; ``close()`` ends it."""

    loop: ApexLoop
    replay: RemoteReplay
    pool: ActorPool
    owns_ray: bool

    def close(self) -> None:
        try:
            self.pool.close()
            self.replay.close()
        finally:
            if self.owns_ray:
                ray.shutdown()


def actor_options(num_cpus: float = 1.0) -> dict[str, Any]:
    """Restarted by Ray whenever it dies; a block it was playing is not retried (lost)."""
    return {"num_cpus": num_cpus, "max_restarts": -1, "max_task_retries": 0}


def start_actors(
    config: Config,
    actions: tuple[str, ...],
    apex: ApexSettings,
    epsilons: np.ndarray,
    *,
    prioritized: bool,
) -> list[Any]:
    """``prioritized``: the actors compute their transitions' initial priorities."""
    remote_actor = ray.remote(ActorWorker)
    e = apex.envs_per_actor
    return [
        remote_actor.options(**actor_options()).remote(
            i,
            config,
            actions,
            epsilons[i * e : (i + 1) * e].tolist(),
            block=apex.block,
            prioritized=prioritized,
        )
        for i in range(apex.actors)
    ]


def start_server(make_replay: Callable[[], Replay]) -> Any:
    """The replay server: no CPU reserved (it mostly waits), restarted never (its state would
    be lost: resume the run from its checkpoint instead)."""
    remote_server = ray.remote(ReplayService)
    return remote_server.options(num_cpus=0, max_restarts=0).remote(make_replay)


def start_apex(learner: LearnerSide, apex: ApexSettings, *, address: str | None = None) -> ApexRun:
    """Start (or join) Ray, the replay server (its replay built from the learner's config and
    replay generator, one stream per actor env) and the actors; wire the learner's loop."""
    config = learner.config
    owns_ray = start_ray(address, num_cpus=max(os.cpu_count() or 1, apex.actors))
    try:
        epsilons = actor_exploration(config, apex.streams)
        make_replay = functools.partial(build_replay, config, learner.replay_rng, apex.streams)
        replay = RemoteReplay(functools.partial(start_server, make_replay))
        prioritized = replay.uses_priorities
        handles = start_actors(config, learner.actions, apex, epsilons, prioritized=prioritized)
        pool = ActorPool(
            handles,
            replay.server,
            envs_per_actor=apex.envs_per_actor,
            block=apex.block,
            seed=learner.settings.env_seed,
        )
        loop = ApexLoop(
            pool=pool,
            replay=replay,
            agent=learner.agent,
            eval_env=learner.eval_env,
            settings=learner.settings,
            apex=apex,
            beta=learner.beta,
            rng=learner.loop_rng,
            epsilons=epsilons,
        )
    except BaseException:
        if owns_ray:
            ray.shutdown()
        raise
    return ApexRun(loop, replay, pool, owns_ray)


def apex_launch(apex: ApexSettings, address: str | None = None) -> Launch:
    """How the driver builds an ``--actors`` run: the learner here, the actors and the replay
    server on Ray (started or joined), all stopped when the run ends."""

    @contextlib.contextmanager
    def launch(config: Config, restore: Path | None) -> Iterator[Driven]:
        learner = build_learner(config, restore=restore)
        ray_run = start_apex(learner, apex, address=address)
        try:
            yield Driven(
                learner,
                ray_run.loop,
                ray_run.replay,
                on_checkpoint=ray_run.replay.checkpoint_saved,
                tables={"apex": apex.to_dict()},
                banner=f"Ape-X: {apex.actors} actors x {apex.envs_per_actor} env(s), weights "
                f"published every {apex.publish_every} updates, blocks of {apex.block} steps",
            )
        finally:
            ray_run.close()

    return launch


def collect_rate(pool: ActorPool, steps: int, *, warmup: int) -> float:
    """Env steps per second the actors deliver into the replay (no learner): ``warmup`` steps
    first (actors starting, compiling), then ``steps`` timed, until the replay has them all."""
    done = 0
    start = None
    while done < warmup + steps:
        if done >= warmup and start is None:
            pool.flush()
            start, done_at_start = time.perf_counter(), done
        pool.submit(warmup + steps - done - pool.in_flight)
        done += pool.poll(timeout=0.5).steps
    pool.flush()
    assert start is not None
    return (done - done_at_start) / (time.perf_counter() - start)
