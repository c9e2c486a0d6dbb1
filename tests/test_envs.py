"""Tests for atari_dqn.envs: DeepMind-style Atari preprocessing on Gymnasium + ale-py."""

from __future__ import annotations

import warnings

import ale_py
import cv2
import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from atari_dqn.envs import (
    ALL_ACTIONS,
    ENV_ID_HELP,
    EnvError,
    EnvSettings,
    check_env_id,
    make_env,
    resolve_actions,
)

BREAKOUT = "BreakoutNoFrameskip-v4"
PONG = "PongNoFrameskip-v4"
NOOP, FIRE, RIGHT, LEFT = (int(ale_py.Action[n].value) for n in ("NOOP", "FIRE", "RIGHT", "LEFT"))
SEED_ACTIONS = ("NOOP", "RIGHT", "LEFT")


def spy(env: gym.Env) -> list:
    """Record every emulator-level call: the ALE action id of each frame, "RESET" for resets.

    Below AtariPreprocessing the AtariEnv runs with frameskip=1 and the full action space, so
    each ``step`` call is one emulator frame and its action index is the ALE action id.
    """
    base = env.unwrapped
    calls: list = []
    orig_step, orig_reset = base.step, base.reset

    def step(action):
        calls.append(int(action))
        return orig_step(action)

    def reset(**kwargs):
        calls.append("RESET")
        return orig_reset(**kwargs)

    base.step, base.reset = step, reset
    return calls


def breakout(training: bool, **kwargs) -> gym.Env:
    kwargs.setdefault("noop_max", 0)
    actions = kwargs.pop("actions", SEED_ACTIONS)
    frame_stack = kwargs.pop("frame_stack", 4)
    return make_env(
        EnvSettings(BREAKOUT, actions, **kwargs), training=training, frame_stack=frame_stack
    )


# ----------------------------------------------------------------------------- ids and actions


@pytest.mark.parametrize("env_id", [BREAKOUT, "ALE/Breakout-v5", PONG, "ALE/Pong-v5"])
def test_check_env_id_accepts_ale_games(env_id):
    check_env_id(env_id)


@pytest.mark.parametrize(
    "env_id", ["Nope-v0", "CartPole-v1", "ALE/Nope-v5", "Breakout-v5", "Breakout-v4", ""]
)
def test_check_env_id_rejects_others(env_id):
    with pytest.raises(EnvError) as err:
        check_env_id(env_id)
    msg = str(err.value)
    assert msg == f"unknown environment id {env_id!r}: {ENV_ID_HELP}"
    assert "expected an ALE game as XNoFrameskip-v4 or ALE/X-v5" in msg
    assert "\n" not in msg


def test_env_error_is_value_error():
    assert issubclass(EnvError, ValueError)
    with pytest.raises(EnvError):
        make_env(EnvSettings("CartPole-v1", ("NOOP",)), training=True)


def test_resolve_actions_sets():
    assert resolve_actions(BREAKOUT, "course") == ("NOOP", "RIGHT", "LEFT")
    assert resolve_actions("ALE/Breakout-v5", "course") == ("NOOP", "RIGHT", "LEFT")
    assert resolve_actions(BREAKOUT, "seed") == ("NOOP", "RIGHT", "LEFT")  # its old name
    assert resolve_actions(BREAKOUT, "minimal") == ("NOOP", "FIRE", "RIGHT", "LEFT")
    assert resolve_actions(BREAKOUT, "full") == ALL_ACTIONS
    assert len(ALL_ACTIONS) == 18 and ALL_ACTIONS[:2] == ("NOOP", "FIRE")
    pong_minimal = ("NOOP", "FIRE", "RIGHT", "LEFT", "RIGHTFIRE", "LEFTFIRE")
    assert resolve_actions(PONG, "minimal") == pong_minimal
    assert resolve_actions(PONG, "course") == resolve_actions(PONG, "seed") == pong_minimal


def test_resolve_actions_comma_list():
    assert resolve_actions(BREAKOUT, "NOOP,RIGHT,LEFT") == ("NOOP", "RIGHT", "LEFT")
    assert resolve_actions(BREAKOUT, " left , fire ") == ("LEFT", "FIRE")


@pytest.mark.parametrize("bad", ["NOOP,JUMP", "UP", "NOOP,,LEFT", "", "NOOP,NOOP"])
def test_resolve_actions_bad_names(bad):
    with pytest.raises(EnvError) as err:
        resolve_actions(BREAKOUT, bad)
    assert "\n" not in str(err.value)


def test_make_env_bad_action_name():
    with pytest.raises(EnvError):
        breakout(True, actions=("NOOP", "JUMP"))


# ----------------------------------------------------------------------------- construction


def test_v5_sticky_actions_and_frameskip_1():
    env = make_env(EnvSettings("ALE/Breakout-v5", SEED_ACTIONS, max_frames=5000), training=True)
    ale = env.unwrapped.ale
    assert ale.getFloat("repeat_action_probability") == pytest.approx(0.25)
    assert env.unwrapped._frameskip == 1
    assert ale.getInt("max_num_frames_per_episode") == 5000
    env = make_env(EnvSettings("ALE/Breakout-v5", SEED_ACTIONS, sticky_actions=0.0), training=True)
    assert env.unwrapped.ale.getFloat("repeat_action_probability") == 0.0


def test_v4_no_sticky_actions_by_default():
    env = breakout(True)
    assert env.unwrapped.ale.getFloat("repeat_action_probability") == 0.0
    assert env.unwrapped._frameskip == 1
    assert env.unwrapped.ale.getInt("max_num_frames_per_episode") == 108_000
    env = breakout(True, sticky_actions=0.25)
    assert env.unwrapped.ale.getFloat("repeat_action_probability") == pytest.approx(0.25)


def test_spaces_and_ale_reachable():
    env = breakout(True, frame_stack=4)
    assert env.observation_space == gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    assert env.action_space == gym.spaces.Discrete(3)
    assert env.unwrapped.ale.getScreenRGB().shape == (210, 160, 3)
    env = make_env(EnvSettings(BREAKOUT, ALL_ACTIONS), training=False, frame_stack=2)
    assert env.observation_space.shape == (2, 84, 84)
    assert env.action_space == gym.spaces.Discrete(18)


@pytest.mark.parametrize("training", [True, False])
def test_check_env_passes(training):
    for env_id in (BREAKOUT, "ALE/Breakout-v5"):
        env = make_env(EnvSettings(env_id, SEED_ACTIONS, noop_max=5), training=training)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "env is wrapped" advice
            check_env(env, skip_render_check=True)


# ----------------------------------------------------------------------------- observations


def test_observation_stack_filled_with_first_frame():
    env = breakout(True, noop_max=3)
    obs, info = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    assert obs.max() > 0
    assert all(np.array_equal(obs[0], obs[k]) for k in range(1, 4))
    assert info["lives"] == 5
    # Steps shift the stack left (oldest first): the newest frame is last.
    seen = [obs[-1]]
    for action in (1, 1, 2):
        obs, *_ = env.step(action)
        seen.append(obs[-1])
        assert np.array_equal(obs[0], seen[max(0, len(seen) - 4)])
    assert not np.array_equal(seen[0], seen[-1])  # the paddle moved / the ball flies


def test_observation_is_resized_grayscale_screen():
    # frame_skip=1 (no max-pool) and Pong (FIRE pressed at reset, one emulator frame).
    env = make_env(EnvSettings(PONG, ("NOOP",), noop_max=0, frame_skip=1), training=False)
    obs, _ = env.reset(seed=0)
    for _ in range(60):
        obs, *_ = env.step(0)
    expected = cv2.resize(
        env.unwrapped.ale.getScreenGrayscale(), (84, 84), interpolation=cv2.INTER_AREA
    )
    assert np.array_equal(obs[-1], expected)


def test_seeded_reset_is_reproducible():
    env = breakout(True, noop_max=30)
    runs = []
    for _ in range(2):
        obs, _ = env.reset(seed=7)
        frames = [obs]
        for action in (1, 2, 1, 0, 2):
            frames.append(env.step(action)[0])
        runs.append(np.stack(frames))
    assert np.array_equal(runs[0], runs[1])


# ----------------------------------------------------------------------------- FIRE and actions


def test_fire_pressed_after_real_reset():
    env = breakout(True, frame_skip=4)
    calls = spy(env)
    env.reset(seed=0)
    assert calls == ["RESET", FIRE, FIRE, FIRE, FIRE]
    env = breakout(True, noop_max=5)
    calls = spy(env)
    env.reset(seed=1)
    assert calls[0] == "RESET" and calls[-4:] == [FIRE] * 4
    assert set(calls[1:-4]) <= {NOOP} and 1 <= len(calls) - 5 <= 5  # 1..noop_max no-ops


def test_seed_action_mapping():
    env = breakout(True)
    calls = spy(env)
    env.reset(seed=0)
    for agent_action, ale_action in ((0, NOOP), (1, RIGHT), (2, LEFT), (1, RIGHT)):
        calls.clear()
        env.step(agent_action)
        assert calls == [ale_action] * 4


def test_custom_action_list_mapping():
    env = breakout(False, actions=resolve_actions(BREAKOUT, "LEFT,FIRE"))
    assert env.action_space.n == 2
    calls = spy(env)
    env.reset(seed=0)
    calls.clear()
    env.step(0)
    env.step(1)
    assert calls == [LEFT] * 4 + [FIRE] * 4


def _until_life_lost(env, calls, action=0, limit=2000):
    """Step ``action`` until lives decrease; return (calls of that step, terminated, info)."""
    lives = env.unwrapped.ale.lives()
    for _ in range(limit):
        calls.clear()
        _, _, terminated, truncated, info = env.step(action)
        if info["lives"] < lives or terminated or truncated:
            return list(calls), terminated, truncated, info
    raise AssertionError("no life lost")


def test_fire_after_life_loss_training():
    env = breakout(True)
    calls = spy(env)
    env.reset(seed=0)
    step_calls, terminated, truncated, info = _until_life_lost(env, calls)
    assert terminated and not truncated and info["lives"] == 4
    assert "game_over" not in info
    assert step_calls == [NOOP] * 4  # FIRE comes with the (pseudo) reset
    calls.clear()
    obs, info = env.reset()
    assert calls == [FIRE] * 4  # no "RESET": the game continues
    assert info["lives"] == 4
    assert all(np.array_equal(obs[0], obs[k]) for k in range(1, 4))
    # The ball was launched: the next life is lost too without the agent ever pressing FIRE.
    _, terminated, _, info = _until_life_lost(env, calls)
    assert terminated and info["lives"] == 3


def test_fire_after_life_loss_evaluation():
    env = breakout(False)
    calls = spy(env)
    env.reset(seed=0)
    step_calls, terminated, truncated, info = _until_life_lost(env, calls)
    assert not terminated and not truncated and info["lives"] == 4
    assert step_calls == [NOOP] * 4 + [FIRE] * 4


def test_reset_seed_or_full_reset_is_real_in_training():
    env = breakout(True)
    calls = spy(env)
    env.reset(seed=0)
    _until_life_lost(env, calls)
    calls.clear()
    _, info = env.reset(options={"full_reset": True})
    assert calls[0] == "RESET" and info["lives"] == 5
    _until_life_lost(env, calls)
    calls.clear()
    _, info = env.reset(seed=3)
    assert calls[0] == "RESET" and info["lives"] == 5


def test_pseudo_reset_without_fire_does_not_step():
    # Ms. Pac-Man has lives but no FIRE: the pseudo reset returns the current frame.
    env = make_env(EnvSettings("MsPacmanNoFrameskip-v4", ("NOOP",), noop_max=0), training=True)
    calls = spy(env)
    env.reset(seed=0)
    assert calls == ["RESET"]
    for _ in range(2000):
        last, _, terminated, _, info = env.step(0)
        if terminated:
            break
    assert terminated and info["lives"] == 2
    calls.clear()
    obs, info = env.reset()
    assert calls == [] and info["lives"] == 2
    assert all(np.array_equal(obs[k], last[-1]) for k in range(4))


# ----------------------------------------------------------------------------- episodes and games


def test_life_loss_is_terminal_in_training_and_game_stats_span_lives():
    env = breakout(True, noop_max=2)
    calls = spy(env)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    lives_seen, steps, raw_sum, episodes = [], 0, 0.0, 0
    while True:
        _, reward, terminated, truncated, info = env.step(int(rng.integers(3)))
        steps += 1
        raw_sum += info["raw_reward"]
        assert reward in (0.0, 1.0)
        assert isinstance(info["lives"], int)
        if terminated or truncated:
            episodes += 1
            lives_seen.append(info["lives"])
            if info.get("game_over"):
                break
            assert "game_return" not in info
            calls.clear()
            env.reset()
            assert "RESET" not in calls  # pseudo reset: the game goes on
    assert lives_seen == [4, 3, 2, 1, 0]
    assert episodes == 5 and not truncated
    assert info["game_return"] == pytest.approx(raw_sum)  # Breakout's FIRE scores nothing
    assert info["game_length"] == steps
    assert info["game_frames"] == env.unwrapped.ale.getEpisodeFrameNumber() >= 4 * steps
    assert isinstance(info["game_length"], int) and isinstance(info["game_return"], float)
    # After the game is over the next reset is a real one, with fresh bookkeeping.
    calls.clear()
    _, info = env.reset()
    assert calls[0] == "RESET" and info["lives"] == 5
    _, _, _, _, info = env.step(0)
    assert "game_over" not in info


def test_life_loss_not_terminal_in_evaluation():
    env = breakout(False, noop_max=2)
    rng = np.random.default_rng(1)
    env.reset(seed=0)
    lives, steps, raw_sum = [], 0, 0.0
    while True:
        _, reward, terminated, truncated, info = env.step(int(rng.integers(3)))
        steps += 1
        raw_sum += info["raw_reward"]
        assert reward == info["raw_reward"]
        lives.append(info["lives"])
        if terminated or truncated:
            break
    assert terminated and not truncated
    assert lives[-1] == 0 and sorted(set(lives), reverse=True) == [5, 4, 3, 2, 1, 0]
    assert info["game_over"] is True
    assert info["game_length"] == steps
    assert info["game_return"] == pytest.approx(raw_sum)


@pytest.mark.parametrize("training", [True, False])
def test_frame_cap_truncates_the_game(training):
    # NOOP survives in Pong for far longer than 400 frames (lives are not used).
    env = make_env(EnvSettings(PONG, ("NOOP",), noop_max=0, max_frames=400), training=training)
    calls = spy(env)
    env.reset(seed=0)
    steps = 0
    while True:
        _, _, terminated, truncated, info = env.step(0)
        steps += 1
        if terminated or truncated:
            break
    assert truncated and not terminated
    assert info["game_over"] is True
    assert info["game_frames"] == 400
    assert info["game_length"] == steps == -(-(400 - 4) // 4)  # FIRE at reset took 4 frames
    calls.clear()
    env.reset()
    assert calls[0] == "RESET"  # the next game starts afresh


def test_rewards_clipped_in_training_raw_in_evaluation():
    # Space Invaders pays 5..30 per invader, so raw rewards above 1 come quickly.
    env_id = "SpaceInvadersNoFrameskip-v4"
    for training in (True, False):
        settings = EnvSettings(env_id, resolve_actions(env_id, "course"), noop_max=0)
        env = make_env(settings, training=training)
        rng = np.random.default_rng(0)
        env.reset(seed=0)
        big = 0
        for _ in range(600):
            _, reward, terminated, truncated, info = env.step(int(rng.integers(6)))
            raw = info["raw_reward"]
            assert isinstance(reward, float) and isinstance(raw, float)
            assert reward == (np.sign(raw) if training else raw)
            big += raw > 1
            if terminated or truncated:
                env.reset()
        assert big > 0
