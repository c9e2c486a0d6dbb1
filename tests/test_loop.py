"""The training loop's schedules, driven with a fake vector env and a fake agent.

No emulator and no network: the env emits tiny (N, 4, 8, 8) stacks with episodes of fixed,
known lengths, the replay is the real one (so "ready" means what it means in a run), and the
agent records the loop's ``step`` at every update and target sync. Every expected value below
is worked out by hand in a comment; none is recomputed with a copy of the loop's formulas.

What "the step of an update" means here: the loop runs the updates due *before* it collects
the iteration's transitions, so an update recorded at step ``s`` saw exactly ``s`` transitions
stored. Syncs, evaluations and reports are decided *after* the collection, at the new step.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from atari_dqn.agent import UpdateResult
from atari_dqn.build import make_replay
from atari_dqn.evaluate import EvalResult
from atari_dqn.loop import (
    PHASES,
    EvalSchedule,
    LoopSettings,
    NonFiniteLossError,
    PhaseTimer,
    Progress,
    TrainLoop,
    close_report,
)
from atari_dqn.replay import Batch, Replay
from atari_dqn.schedules import LinearSchedule
from atari_dqn.vector import VecStep

FRAME = (8, 8)
NUM_ACTIONS = 4

BASE = LoopSettings(
    total_steps=40,
    warmup_steps=8,
    update_every=4,
    target_update=10,
    batch_size=4,
    eval_every=15,
    eval_games=1,
    eval_epsilon=0.05,
    eval_seed=7,
    env_seed=11,
    report_every=10,
)
EPSILON = LinearSchedule(1.0, 0.0, 40)  # ε(t) = 1 - t/40 down to 0 at t = 40


def beta(step: int) -> float:
    return step / 100


# ---------------------------------------------------------------------- fakes
class FakeVecEnv:
    """N envs in lockstep; env ``i`` ends (terminates) an episode every ``lengths[i]`` steps.

    Every recv is a real agent step of every env. A finished game reports the return
    ``100 * i + k`` (env i's k-th game, k from 1) and its length, so each game is identifiable.
    """

    def __init__(self, lengths: tuple[int, ...]) -> None:
        self.num_envs = len(lengths)
        self.lengths = np.array(lengths, dtype=np.int64)
        self.t = np.zeros(self.num_envs, dtype=np.int64)  # steps into the open episode
        self.games = np.zeros(self.num_envs, dtype=np.int64)  # games finished
        self.reset_seeds: list[int] = []
        self._actions: np.ndarray | None = None

    def _obs(self) -> np.ndarray:
        n = self.num_envs
        frames = np.maximum(self.t[:, None] - np.arange(3, -1, -1)[None, :], 0) % 200 + 1
        return np.broadcast_to(frames.astype(np.uint8)[:, :, None, None], (n, 4, *FRAME)).copy()

    def reset(self, seed: int) -> VecStep:
        self.reset_seeds.append(seed)
        self.t[:] = 0
        n, obs = self.num_envs, self._obs()
        z = np.zeros(n, dtype=bool)
        return VecStep(
            obs=obs, next_frames=obs[:, -1], rewards=np.zeros(n, np.float32),
            terminated=z, truncated=z, transition=z, begin=np.ones(n, dtype=bool),
        )  # fmt: skip

    def send(self, actions: np.ndarray) -> None:
        assert actions.shape == (self.num_envs,)
        self._actions = actions

    def recv(self) -> VecStep:
        assert self._actions is not None, "recv() without send()"
        self._actions = None
        n = self.num_envs
        self.t += 1
        next_frames = self._obs()[:, -1]
        ended = self.t >= self.lengths
        returns: list[float] = []
        lengths: list[int] = []
        for i in np.flatnonzero(ended):
            self.games[i] += 1
            returns.append(float(100 * i + self.games[i]))
            lengths.append(int(self.lengths[i]))
        self.t[ended] = 0
        return VecStep(
            obs=self._obs(), next_frames=next_frames, rewards=np.ones(n, np.float32),
            terminated=ended.copy(), truncated=np.zeros(n, dtype=bool),
            transition=np.ones(n, dtype=bool), begin=ended.copy(),
            game_returns=returns, game_lengths=lengths,
        )  # fmt: skip

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        return {"t": self.t.copy(), "games": self.games.copy()}, {"lengths": self.lengths.tolist()}

    def load_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> np.ndarray:
        assert meta["lengths"] == self.lengths.tolist()
        self.t[:] = arrays["t"]
        self.games[:] = arrays["games"]
        return self._obs()

    def close(self) -> None:
        pass


class UnsaveableVecEnv(FakeVecEnv):
    """Like the C++ vector env: no state, a resumed run starts new games."""

    def state(self) -> None:
        return None

    def load_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> np.ndarray:
        raise AssertionError("the loop must not restore an env whose state() is None")


class FakeEvalEnv(gym.Env[np.ndarray, int]):
    """Every game ends after one step with a raw score of 1."""

    def __init__(self) -> None:
        self.seeds: list[int | None] = []

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        self.seeds.append(seed)
        return np.zeros((4, *FRAME), np.uint8), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        info = {"raw_reward": 1.0, "game_return": 1.0}
        return np.zeros((4, *FRAME), np.uint8), 1.0, True, False, info


class FakeAgent:
    """Random actions from the loop's generator; records the loop's step at updates/syncs."""

    def __init__(self, batch_size: int, nan_at: int | None = None) -> None:
        self.loop: TrainLoop | None = None
        self.batch_size = batch_size
        self.nan_at = nan_at  # the update (1-based) whose loss is NaN
        self.update_steps: list[int] = []
        self.sync_steps: list[int] = []
        self.batch_indices: list[list[int]] = []

    def _step(self) -> int:
        assert self.loop is not None
        return self.loop.step

    def act(
        self, obs: np.ndarray, epsilon: float | np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        return rng.integers(0, NUM_ACTIONS, size=obs.shape[0])

    act_eval = act  # evaluation acts as training does (a fake agent has no noisy layers)

    def update(self, batch: Batch) -> UpdateResult:
        b = self.batch_size
        assert batch.obs.shape == (b, 4, *FRAME) and batch.next_obs.shape == (b, 4, *FRAME)
        self.update_steps.append(self._step())
        self.batch_indices.append(batch.indices.tolist())
        loss = float("nan") if len(self.update_steps) == self.nan_at else 0.5
        return UpdateResult(
            loss=torch.tensor(loss), q_mean=torch.tensor(1.0), priority=torch.zeros(b)
        )

    def sync_target(self) -> None:
        self.sync_steps.append(self._step())


@dataclass
class Rig:
    loop: TrainLoop
    agent: FakeAgent
    env: FakeVecEnv
    eval_env: FakeEvalEnv
    replay: Replay


def rig(
    settings: LoopSettings,
    lengths: tuple[int, ...],
    *,
    kind: str = "uniform",
    n_step: int = 1,
    nan_at: int | None = None,
    env_type: type[FakeVecEnv] = FakeVecEnv,
    timer: PhaseTimer | None = None,
) -> Rig:
    n = len(lengths)
    replay = make_replay(
        kind, 100 * n, np.random.default_rng(5), n_step=n_step, num_streams=n, frame_shape=FRAME
    )
    env, eval_env = env_type(lengths), FakeEvalEnv()
    agent = FakeAgent(settings.batch_size, nan_at=nan_at)
    loop = TrainLoop(
        env, eval_env, agent, replay, EPSILON, beta, np.random.default_rng(3), settings, timer
    )
    agent.loop = loop
    return Rig(loop, agent, env, eval_env, replay)


def run_until(loop: TrainLoop, stop_at: int | None = None) -> list[Progress]:
    """The reports of a run, stopping (as a driver does on SIGTERM) at the first report at or
    past ``stop_at``."""
    reports = []
    for report in loop.run():
        reports.append(report)
        if stop_at is not None and report.step >= stop_at:
            break
    return reports


def resume(first: Rig, settings: LoopSettings, *, replay_restored: bool, **kw: Any) -> Rig:
    """A fresh rig continuing from ``first`` through a checkpoint's JSON round trip."""
    second = rig(settings, tuple(first.env.lengths.tolist()), **kw)
    if replay_restored:
        r_arrays, r_meta = first.replay.state()
        second.replay.load_state(
            {k: v.copy() for k, v in r_arrays.items()}, json.loads(json.dumps(r_meta))
        )
        for a, b in first.replay.frame_ranges():  # the frames go by slot range
            second.replay.put_frames(a, first.replay.get_frames(a, b).copy())
    arrays, meta = first.loop.state()
    second.loop.load_state(
        {k: v.copy() for k, v in arrays.items()},
        json.loads(json.dumps(meta)),
        replay_restored=replay_restored,
    )
    return second


def evaluations(reports: list[Progress]) -> list[tuple[int, int]]:
    return [(r.evaluation.index, r.evaluation.step) for r in reports if r.evaluation is not None]


# ---------------------------------------------------------------------- one env
def test_one_env_updates_syncs_evaluations_and_reports() -> None:
    r = rig(BASE, (6,))
    reports = run_until(r.loop)

    # next update starts at warmup 8 + update_every 4 = 12, then every 4 agent steps; the
    # updates due at a step run before its transition, so the last is at 36 (none at 40: the
    # run ends there). The replay holds s >= 12 >= batch 4 ready transitions at each.
    assert r.agent.update_steps == [12, 16, 20, 24, 28, 32, 36]
    assert r.loop.updates == 7
    # every 10 agent steps, the first at 10
    assert r.agent.sync_steps == [10, 20, 30, 40]
    # every 15 agent steps (15 and 30; 45 is past the end): index 15 // 15 = 1, 30 // 15 = 2
    assert evaluations(reports) == [(1, 15), (2, 30)]
    # evaluation g of index i is seeded eval_seed + 1000 i + g = 7 + 1000 i (one game each)
    assert r.eval_env.seeds == [1007, 2007]
    # every 10 steps, at the evaluation at 15 (one report at 30: evaluation and multiple of 10),
    # and at the end (40)
    assert [p.step for p in reports] == [10, 15, 20, 30, 40]
    # updates made by then: none before 12; 12 | 12, 16 | 12..28 | all 7
    assert [p.updates for p in reports] == [0, 1, 2, 5, 7]
    assert [p.loss for p in reports] == [None, 0.5, 0.5, 0.5, 0.5]
    assert [p.q_mean for p in reports] == [None, 1.0, 1.0, 1.0, 1.0]
    # games of 6 steps end at 6, 12, 18, 24, 30, 36, each in the first report at or after it
    assert [p.game_returns for p in reports] == [[1.0], [2.0], [3.0], [4.0, 5.0], [6.0]]
    assert [p.game_lengths for p in reports] == [[6], [6], [6], [6, 6], [6]]
    # ε of the iteration's transition, ε(step) with one env: 1 - step / 40
    assert [p.epsilon for p in reports] == pytest.approx([0.75, 0.625, 0.5, 0.25, 0.0])
    assert [p.beta for p in reports] == pytest.approx([0.10, 0.15, 0.20, 0.30, 0.40])


# ---------------------------------------------------------------------- the time breakdown
class TickingClock:
    """A clock that moves 1 s forward at every reading: a lap then counts the calls."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_a_timer_counts_each_phase_and_changes_nothing() -> None:
    plain = rig(BASE, (6,))
    plain_reports = run_until(plain.loop)
    timer = PhaseTimer(TickingClock())
    timed = rig(BASE, (6,), timer=timer)
    timed_reports = run_until(timed.loop)
    # The same run with and without a timer: updates, syncs, reports, generator.
    assert timed.agent.update_steps == plain.agent.update_steps
    assert timed.agent.batch_indices == plain.agent.batch_indices
    assert timed.agent.sync_steps == plain.agent.sync_steps

    def without_clock(reports: list[Progress]) -> list[dict[str, Any]]:  # eval's wall seconds
        return [
            dataclasses.asdict(p) | {"evaluation": p.evaluation and p.evaluation.scores}
            for p in reports
        ]

    assert without_clock(timed_reports) == without_clock(plain_reports)
    assert timed.loop.rng.bit_generator.state == plain.loop.rng.bit_generator.state
    # With the clock ticking 1 s a reading, each lap adds 1 s: 40 iterations (one env, 40
    # steps) each lap act once, env twice (send, recv) and store once; 7 updates (at 12, 16,
    # ..., 36, as above) each lap sample and update once; 2 evaluations (15, 30) lap eval.
    assert timer.take() == {"act": 40, "env": 80, "sample": 7, "update": 7, "store": 40,
                            "eval": 2}  # fmt: skip
    assert timer.take() == dict.fromkeys(PHASES, 0.0)  # take() starts again from zero


def test_timed_phases_are_non_negative_and_sum_to_at_most_the_wall_time() -> None:
    import time

    timer = PhaseTimer()
    r = rig(N3, N3_LENGTHS, timer=timer)
    start = time.perf_counter()
    run_until(r.loop)
    total = time.perf_counter() - start
    parts = timer.take()
    assert set(parts) == set(PHASES)
    assert all(v >= 0 for v in parts.values())
    assert parts["update"] > 0 and parts["eval"] > 0 and parts["act"] > 0
    assert sum(parts.values()) <= total


# ---------------------------------------------------------------------- N envs
N3 = dataclasses.replace(BASE, total_steps=45, eval_every=14)
N3_LENGTHS = (4, 5, 6)
# With 3 envs the loop's step before each iteration is 0, 3, ..., 42. Updates due from 12 on,
# one per 4 agent steps: 12 (next 16) | 15 none | 18 (next 20) | 21 (24) | 24 (28) | 27 none |
# 30 (32) | 33 (36) | 36 (40) | 39 none | 42 (44). Not every 4th iteration, not one per iteration.
N3_UPDATES = [12, 18, 21, 24, 30, 33, 36, 42]
# Steps after the iterations are 3, 6, ..., 45. Syncs at the first step >= 10, 20, 30, 40, the
# next one due at the next multiple of 10 (not 10 after the sync step, which would give 12, 24,
# 36, 48).
N3_SYNCS = [12, 21, 30, 42]
# Evaluations at the first step >= 14, 28, 42; index = the multiple / 14.
N3_EVALS = [(1, 15), (2, 30), (3, 42)]
# Reports at the first step >= 10 (12), the evaluation at 15, the first step >= 20 (21), 30
# (both), 42 (both: >= 40), the end (45).
N3_REPORTS = [12, 15, 21, 30, 42, 45]
# Env 0 ends games (4 steps) at loop steps 12, 24, 36; env 1 (5) at 15, 30, 45; env 2 (6) at
# 18, 36. Returns are 100 * env + game number.
N3_RETURNS = [[1.0], [101.0], [201.0], [2.0, 102.0], [3.0, 202.0], [103.0]]
N3_GAME_LENGTHS = [[4], [5], [6], [4, 5], [4, 6], [5]]


@pytest.mark.parametrize("kind", ["uniform", "prioritized"])
def test_three_envs_count_agent_steps_over_all_envs(kind: str) -> None:
    r = rig(N3, N3_LENGTHS, kind=kind)
    reports = run_until(r.loop)

    assert r.agent.update_steps == N3_UPDATES
    assert r.agent.sync_steps == N3_SYNCS
    assert evaluations(reports) == N3_EVALS
    assert r.eval_env.seeds == [1007, 2007, 3007]
    assert [p.step for p in reports] == N3_REPORTS
    # updates made by then; a report's own iteration started at step - 3: none (the one at 12
    # comes in the next iteration) | 12 | 12, 18 | 12..24 | 12..36 | all 8
    assert [p.updates for p in reports] == [0, 1, 2, 4, 7, 8]
    assert [p.game_returns for p in reports] == N3_RETURNS
    assert [p.game_lengths for p in reports] == N3_GAME_LENGTHS
    # ε of the iteration's first transition, ε(s + 1) for s = 9, 12, 18, 27, 39, 42
    assert [p.epsilon for p in reports] == pytest.approx([0.75, 0.675, 0.525, 0.3, 0.0, 0.0])
    assert [p.beta for p in reports] == pytest.approx([0.12, 0.15, 0.21, 0.30, 0.42, 0.45])
    if kind == "prioritized":
        assert "replay/max_priority" in reports[-1].replay_stats


def test_several_updates_in_one_iteration() -> None:
    s = dataclasses.replace(BASE, total_steps=18, warmup_steps=6, update_every=2)
    r = rig(s, N3_LENGTHS)
    reports = run_until(r.loop)
    # Due from 6 + 2 = 8, one per 2 agent steps; steps before the iterations 0, 3, ..., 15:
    # 9 makes the one due at 8 | 12 those at 10 and 12 | 15 the one at 14.
    assert r.agent.update_steps == [9, 12, 12, 15]
    assert [p.step for p in reports] == [12, 15, 18]  # >= 10, evaluation at 15, end
    assert [p.updates for p in reports] == [1, 3, 4]


def test_one_sync_and_evaluation_per_iteration_when_it_passes_several_multiples() -> None:
    s = dataclasses.replace(BASE, total_steps=12, target_update=2, eval_every=2)
    r = rig(s, N3_LENGTHS)
    reports = run_until(r.loop)
    # Steps 3, 6, 9, 12: each passes a multiple of 2, so each syncs once; the next sync is due
    # at the next multiple above the step (4, 8, 10, 14), never at a multiple already passed.
    assert r.agent.sync_steps == [3, 6, 9, 12]
    assert r.loop.next_sync == 14
    # Evaluations: due at 2 (index 1) -> at 3, next due 4 (index 2) -> at 6, next due 8 (the
    # multiple 6 is passed over: index 3 is never used) -> at 9 index 4, next 10 -> at 12
    # index 5, next 14.
    assert evaluations(reports) == [(1, 3), (2, 6), (4, 9), (5, 12)]
    assert r.loop.evals.next == 14


def test_three_envs_run_to_the_end_of_the_iteration_past_total_steps() -> None:
    r = rig(dataclasses.replace(N3, total_steps=44), N3_LENGTHS)
    reports = run_until(r.loop)
    assert r.loop.step == 45  # 14 iterations make 42 < 44, the 15th all 3 transitions
    assert reports[-1].step == 45


# ---------------------------------------------------------------------- the replay's fill
def test_updates_wait_for_batch_size_ready_transitions() -> None:
    s = dataclasses.replace(
        BASE, total_steps=12, warmup_steps=0, update_every=1, batch_size=6, eval_every=100
    )
    r = rig(s, (5,), n_step=3)
    run_until(r.loop)
    # 3-step returns, episodes of 5 terminated steps. Ready transitions after t steps: a
    # transition is ready once 3 rewards follow it or its episode ends: t = 1, 2 -> 0; 3 -> 1;
    # 4 -> 2; 5 (end) -> 5; 6, 7 -> 5 (the new episode's first two still pending); 8 -> 6;
    # 9 -> 7; 10 (end) -> 10; 11 -> 10. Updates are due at every step from 1 but need 6 ready:
    # the first is at 8 (not 5, where 7 slots are written but only 5 ready).
    assert r.agent.update_steps == [8, 9, 10, 11]
    # The skipped ones are not made up later: 4 updates, and the next is due at 12.
    assert r.loop.updates == 4
    assert r.loop.next_update == 12


# ---------------------------------------------------------------------- resume
@pytest.mark.parametrize(
    ("settings", "lengths", "stop_at", "updates", "syncs", "evals", "report_steps"),
    [
        (BASE, (6,), 20, [12, 16, 20, 24, 28, 32, 36], [10, 20, 30, 40], [(1, 15), (2, 30)],
         [10, 15, 20, 30, 40]),
        (N3, N3_LENGTHS, 21, N3_UPDATES, N3_SYNCS, N3_EVALS, N3_REPORTS),
    ],
    ids=["one-env", "three-envs"],
)  # fmt: skip
@pytest.mark.parametrize("kind", ["uniform", "prioritized"])
def test_resume_with_replay_continues_the_schedules_exactly(
    kind: str,
    settings: LoopSettings,
    lengths: tuple[int, ...],
    stop_at: int,
    updates: list[int],
    syncs: list[int],
    evals: list[tuple[int, int]],
    report_steps: list[int],
) -> None:
    whole = rig(settings, lengths, kind=kind)
    whole_reports = run_until(whole.loop)
    first = rig(settings, lengths, kind=kind)
    first_reports = run_until(first.loop, stop_at)
    assert first_reports[-1].step == stop_at
    second = resume(first, settings, replay_restored=True, kind=kind)
    second_reports = run_until(second.loop)
    reports = first_reports + second_reports

    # The first part made the updates due before stop_at, the second the rest.
    assert first.agent.update_steps == [u for u in updates if u < stop_at]
    assert first.agent.update_steps + second.agent.update_steps == updates
    assert first.agent.sync_steps + second.agent.sync_steps == syncs
    assert evaluations(reports) == evals
    assert [p.step for p in reports] == report_steps
    assert second.loop.updates == len(updates)
    # Same batches (replay and its generator restored), same games (env restored), same
    # update counts and ε in every report.
    assert first.agent.batch_indices + second.agent.batch_indices == whole.agent.batch_indices
    for field in ("step", "updates", "game_returns", "game_lengths", "epsilon", "evaluation"):
        assert [getattr(p, field) for p in reports] == [getattr(p, field) for p in whole_reports]
    assert whole.agent.update_steps == updates and whole.agent.sync_steps == syncs


@pytest.mark.parametrize(
    ("settings", "lengths", "stop_at", "first_updates", "second_updates", "second_syncs"),
    [
        # resumed at 20 without the replay: next update at 20 + 8 + 4 = 32, then 36
        (BASE, (6,), 20, [12, 16], [32, 36], [30, 40]),
        # resumed at 21: next at 21 + 8 + 4 = 33 (next 37) | 36 none | 39 (41) | 42 (45)
        (N3, N3_LENGTHS, 21, [12, 18], [33, 39, 42], [30, 42]),
    ],
    ids=["one-env", "three-envs"],
)
def test_resume_without_replay_starts_a_new_warmup(
    settings: LoopSettings,
    lengths: tuple[int, ...],
    stop_at: int,
    first_updates: list[int],
    second_updates: list[int],
    second_syncs: list[int],
) -> None:
    first = rig(settings, lengths)
    run_until(first.loop, stop_at)
    second = resume(first, settings, replay_restored=False)
    assert len(second.replay) == 0
    run_until(second.loop)
    assert first.agent.update_steps == first_updates
    assert second.agent.update_steps == second_updates
    # the update count goes on from the checkpoint; syncs keep their schedule
    assert second.loop.updates == len(first_updates) + len(second_updates)
    assert second.agent.sync_steps == second_syncs


def test_resume_with_an_unsaveable_env_starts_new_games_on_the_same_schedule() -> None:
    first = rig(N3, N3_LENGTHS, env_type=UnsaveableVecEnv)
    first_reports = run_until(first.loop, 21)
    second = resume(first, N3, replay_restored=True, env_type=UnsaveableVecEnv)
    second_reports = run_until(second.loop)
    # new games seeded env_seed + step = 11 + 21 (the open episodes are cut in the replay:
    # otherwise beginning the new ones would fail)
    assert first.env.reset_seeds == [11]
    assert second.env.reset_seeds == [32]
    assert first.agent.update_steps + second.agent.update_steps == N3_UPDATES
    assert first.agent.sync_steps + second.agent.sync_steps == N3_SYNCS
    assert evaluations(first_reports + second_reports) == N3_EVALS


# ---------------------------------------------------------------------- the NaN guard
@pytest.mark.parametrize(
    ("nan_at", "good_reports", "stop_step"),
    [
        (1, [10], 15),  # the update at 12 is NaN: the report at 15 stops the run
        (2, [10, 15], 20),  # the one at 16: the report at 15 is fine, the one at 20 stops
    ],
)
def test_nan_loss_stops_the_run_at_the_next_report(
    nan_at: int, good_reports: list[int], stop_step: int
) -> None:
    r = rig(BASE, (6,), nan_at=nan_at)
    reports: list[Progress] = []
    with pytest.raises(NonFiniteLossError, match=f"at step {stop_step}: loss nan"):
        for report in r.loop.run():
            reports.append(report)
    assert [p.step for p in reports] == good_reports
    assert r.loop.step == stop_step


def test_close_report_fills_the_report_and_guards_loss_and_q() -> None:
    def close(last: UpdateResult | None) -> Progress:
        evaluation = EvalResult(index=2, step=30, scores=(1.0,))
        return close_report(
            Progress(step=0, epsilon=1.0), step=30, epsilon=0.25, updates=5,
            evaluation=evaluation, beta=0.3, replay_stats={"x": 1.0}, last=last,
        )  # fmt: skip

    def result(loss: float, q: float) -> UpdateResult:
        return UpdateResult(
            loss=torch.tensor(loss), q_mean=torch.tensor(q), priority=torch.zeros(1)
        )

    report = close(result(0.5, 2.0))
    assert (report.step, report.epsilon, report.updates, report.beta) == (30, 0.25, 5, 0.3)
    assert (report.loss, report.q_mean, report.replay_stats) == (0.5, 2.0, {"x": 1.0})
    assert report.evaluation == EvalResult(index=2, step=30, scores=(1.0,))
    no_update = close(None)
    assert (no_update.loss, no_update.q_mean) == (None, None)
    with pytest.raises(NonFiniteLossError, match="mean Q inf"):
        close(result(0.5, float("inf")))
    with pytest.raises(NonFiniteLossError, match="loss -inf"):
        close(result(float("-inf"), 1.0))


def test_eval_schedule_by_hand() -> None:
    evals = EvalSchedule(100)
    assert (evals.next, evals.index) == (100, 1)
    assert not evals.due(99) and evals.due(100)
    evals.done(104)  # played at the first report past 100 (8 envs: step 104)
    assert (evals.next, evals.index) == (200, 2)
    evals.done(350)  # a report that passed 200 and 300 (PQN's rollouts): one evaluation, at 350
    assert (evals.next, evals.index) == (400, 4)
    assert not evals.due(399)
