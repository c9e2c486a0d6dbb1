"""Batched envs: episode bookkeeping, FIRE after life loss, per-env stacks, the replay ratio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from atari_dqn.cli import main
from atari_dqn.envs import EnvSettings, make_env, resolve_actions
from atari_dqn.replay.storage import FrameStorage
from atari_dqn.vector import AtariVector, SingleEnv

BREAKOUT = "BreakoutNoFrameskip-v4"
COURSE_ACTIONS = resolve_actions(BREAKOUT, "course")


def drive(env, steps: int, policy, n: int):
    """Play, mirroring everything into a FrameStorage like the training loop does.

    Checks at every step that the stack each env acts from is exactly the stack the replay
    rebuilds for its current state, so learning sees what acting saw.
    """
    st = FrameStorage(n * 600, num_streams=n)
    vs = env.reset(seed=3)
    for i in range(n):
        st.begin(i, vs.obs[i, -1])
    log = []
    for t in range(steps):
        actions = policy(t)
        env.send(actions)
        vs = env.recv()
        for i in np.flatnonzero(vs.transition):
            st.append(int(i), int(actions[i]), float(vs.rewards[i]), vs.next_frames[i],
                      bool(vs.terminated[i]), bool(vs.truncated[i]))  # fmt: skip
        for i in np.flatnonzero(vs.begin):
            st.begin(int(i), vs.obs[i, -1])
        for i in range(n):
            slot = st._current[i]
            if slot >= 0:
                np.testing.assert_array_equal(st.stacks(np.array([slot]))[0], vs.obs[i])
        log.append(vs)
    return log, st


@pytest.mark.parametrize("kind", ["single", "vector"])
def test_noop_play_loses_every_life_so_fire_is_automatic(kind: str) -> None:
    n = 1 if kind == "single" else 2
    if kind == "single":
        env = SingleEnv(make_env(EnvSettings(BREAKOUT, COURSE_ACTIONS, noop_max=0), training=True))
    else:
        env = AtariVector(EnvSettings(BREAKOUT, COURSE_ACTIONS, noop_max=0), n)
    log, st = drive(env, 900, lambda t: np.zeros(n, dtype=np.int64), n)
    # Without FIRE after each life loss the ball never comes back and lives stop at 4.
    games = [r for vs in log for r in vs.game_returns]
    assert len(games) >= n  # every env finished at least one full game of 5 lives
    lengths = [x for vs in log for x in vs.game_lengths]
    assert all(x > 20 for x in lengths)
    # Each env: 5 terminal transitions (life losses) per finished game, each followed by a
    # fresh training episode.
    terms = sum(int(vs.terminated.sum()) for vs in log)
    assert terms >= 5 * len(games)
    for t, vs in enumerate(log[:-1]):
        for i in np.flatnonzero(vs.terminated):
            nxt = log[t + 1]
            # Vector env: the next step is FIRE / auto-reset, not an agent step; it begins.
            # Single env: the reset happens inside the same recv, which already begins.
            assert vs.begin[i] or (nxt.begin[i] and not nxt.transition[i])


def test_vector_random_play_stacks_match_the_replay_and_rewards_are_clipped() -> None:
    n = 3
    env = AtariVector(EnvSettings(BREAKOUT, resolve_actions(BREAKOUT, "minimal")), n)
    rng = np.random.default_rng(0)
    log, st = drive(env, 400, lambda t: rng.integers(0, 4, size=n), n)
    rewards = np.concatenate([vs.rewards for vs in log])
    assert set(np.unique(rewards)) <= {0.0, 1.0}
    assert len(st) > 0.9 * sum(int(vs.transition.sum()) for vs in log) - 10 * n
    # Streams are separate rings: every ready slot's stack comes from its own stream.
    ready = np.flatnonzero(st.ready)
    slots = st._stack_slots(ready)
    assert np.all(slots // st.per_stream == (ready // st.per_stream)[:, None])


def test_single_env_matches_the_plain_env_step_for_step() -> None:
    plain = make_env(EnvSettings(BREAKOUT, COURSE_ACTIONS), training=True)
    wrapped = SingleEnv(make_env(EnvSettings(BREAKOUT, COURSE_ACTIONS), training=True))
    obs, _ = plain.reset(seed=5)
    vs = wrapped.reset(seed=5)
    rng = np.random.default_rng(1)
    for _ in range(300):
        a = int(rng.integers(0, 3))
        np.testing.assert_array_equal(vs.obs[0], obs)
        wrapped.send(np.array([a]))
        vs = wrapped.recv()
        obs, reward, term, trunc, _ = plain.step(a)
        assert (vs.rewards[0], vs.terminated[0], vs.truncated[0]) == (reward, term, trunc)
        np.testing.assert_array_equal(vs.next_frames[0], obs[-1])
        if term or trunc:
            obs, _ = plain.reset()


@pytest.mark.slow
def test_replay_ratio_is_kept_with_several_envs(tmp_path: Path) -> None:
    from atari_dqn.checkpoint import CHECKPOINT_NAME, read_checkpoint_state

    out = tmp_path / "run"
    code = main(
        ["train", "--num-envs", "4", "--total-steps", "600", "--warmup-steps", "200",
         "--update-every", "4", "--eval-every", "300", "--eval-games", "1",
         "--eval-max-frames", "400", "--buffer-size", "800", "--batch-size", "8", "--quiet",
         "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    state = read_checkpoint_state(out / CHECKPOINT_NAME)["loop"]
    steps, updates = state["step"], state["updates"]
    assert 600 <= steps < 604
    # One update per 4 agent steps after warm-up, counted over all envs.
    assert abs(updates - (steps - 200) // 4) <= 1
    assert len((out / "rewards.txt").read_text().splitlines()) == 2
    # A vector run resumes too (new games: C++ emulator states cannot be saved).
    assert main(["train", "--resume", str(out), "--total-steps", "800", "--quiet"]) == 0
    assert read_checkpoint_state(out / CHECKPOINT_NAME)["loop"]["step"] >= 800
