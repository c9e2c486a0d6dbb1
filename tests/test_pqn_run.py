"""PQN as a run: the loop's rollout, update and evaluation schedule (the fake env of
test_loop.py, a recording learner), then the CLI end to end: exact resume, model files that
`evaluate` and `load_policy` read with no flag, `--algo pqn` alone, and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import atari_dqn
from atari_dqn.checkpoint import CHECKPOINT_NAME, read_checkpoint_state
from atari_dqn.cli import main
from atari_dqn.config import ConfigError, preset_config
from atari_dqn.loop import LoopSettings, Progress
from atari_dqn.pqn import PQNLoop, PQNUpdateResult, Rollout
from atari_dqn.schedules import LinearSchedule
from test_loop import FakeEvalEnv, FakeVecEnv
from tiny import TINY_PQN, same_run


class RecordingLearner:
    """Acts with action 0 and max-Q = the env index; records each update's lr and rollout."""

    device = torch.device("cpu")

    def __init__(self) -> None:
        self.updates: list[tuple[float, Rollout]] = []

    def act_with_max_q(self, obs, epsilon, rng):
        n = obs.shape[0]
        return np.zeros(n, dtype=np.int64), torch.arange(n, dtype=torch.float32)

    def act_eval(self, obs, epsilon, rng):
        return np.zeros(obs.shape[0], dtype=np.int64)

    def max_q(self, obs):
        return torch.arange(obs.shape[0], dtype=torch.float32)

    def update(self, rollout: Rollout, lr: float) -> PQNUpdateResult:
        self.updates.append((lr, rollout))
        zero = torch.zeros(())
        return PQNUpdateResult(loss=zero, q_mean=zero, target_mean=zero, grad_steps=6)


SETTINGS = LoopSettings(
    total_steps=20,
    warmup_steps=8,
    update_every=4,  # (DQN's; PQN's loop does not read it)
    target_update=10,
    batch_size=4,
    eval_every=12,
    eval_games=1,
    eval_epsilon=0.05,
    eval_seed=7,
    env_seed=11,
)


def test_rollouts_updates_evaluations_and_reports() -> None:
    # 2 envs (episodes of 3 and 5 steps), rollouts of T = 4: 8 agent steps per rollout, so
    # rollouts end at steps 8, 16 and 24 (the loop stops at the first boundary >= 20).
    env = FakeVecEnv((3, 5))
    learner = RecordingLearner()
    loop = PQNLoop(
        env,
        FakeEvalEnv(),
        learner,  # type: ignore[arg-type]
        LinearSchedule(1.0, 0.0, 16, begin=8),
        rng=np.random.default_rng(0),
        settings=SETTINGS,
        rollout_steps=4,
        lr=lambda s: 1e-3 * s,
    )
    reports: list[Progress] = list(loop.run())
    # A report per rollout, at its end.
    assert [r.step for r in reports] == [8, 16, 24]
    # Warm-up 8: the first rollout (steps 1-8) trains nothing; the two after it one update
    # each, at the learning rate of the step the rollout ended at (lr(s) = 1e-3 s).
    assert [r.updates for r in reports] == [0, 1, 2]
    assert [round(lr, 6) for lr, _ in learner.updates] == [0.016, 0.024]
    # Evaluations at the first boundary at or past 12 and 24: index 1 at 16, index 2 at 24.
    assert [(r.evaluation.index, r.evaluation.step) for r in reports if r.evaluation] == [
        (1, 16),
        (2, 24),
    ]
    # Env 0's episodes end at its steps 3, 6, 9, 12 (games 1-4: returns 1-4), env 1's at 5,
    # 10 (returns 101, 102); rollout 1 covers env steps 1-4, rollout 2 steps 5-8, 3 steps 9-12.
    assert [sorted(r.game_returns) for r in reports] == [[1.0], [2.0, 101.0], [3.0, 4.0, 102.0]]
    # The last rollout as the update saw it: env 0 ended an episode at env steps 9 and 12
    # (rows 0 and 3), env 1 at step 10 (row 1); every max-Q row t < T-1 is row t+1's acting
    # value (env index), the last row the bootstrap pass after the rollout.
    rollout = learner.updates[-1][1]
    assert rollout.terminated.tolist() == [
        [True, False],
        [False, True],
        [False, False],
        [True, False],
    ]
    assert rollout.next_max_q.tolist() == [[0.0, 1.0]] * 4
    assert rollout.valid.all() and rollout.obs.shape == (4, 2, 4, 8, 8)


def test_the_rollouts_fill_epsilon_from_the_schedule() -> None:
    env = FakeVecEnv((50, 50))
    loop = PQNLoop(
        env,
        FakeEvalEnv(),
        RecordingLearner(),  # type: ignore[arg-type]
        LinearSchedule(1.0, 0.0, 16),
        rng=np.random.default_rng(0),
        settings=SETTINGS,
        rollout_steps=4,
        lr=lambda s: 1e-3,
    )
    # Each row acts with ε(step + 1), ε(t) = 1 - t/16; 2 envs make 2 steps a row, so the
    # first rollout's last row acts at step 6 and the report shows ε(7) = 0.5625.
    first = next(iter(loop.run()))
    assert first.epsilon == pytest.approx(1 - 7 / 16)


# ---------------------------------------------------------------------- end to end


def test_algo_pqn_alone_starts_from_the_pqn_preset() -> None:
    config = preset_config("pqn")
    assert config.algo == "pqn" and config.layer_norm and config.num_envs == 128
    assert config.warmup_steps == 0 and config.lr == 2.5e-4 and config.q_lambda == 0.65


@pytest.mark.slow
def test_pqn_resume_at_a_rollout_boundary_is_exact(tmp_path: Path) -> None:
    # One env (SingleEnv: saved exactly), rollouts of 16 steps: 64 is a rollout boundary.
    flags = [*TINY_PQN, "--num-envs", "1", "--seed", "5"]
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    assert main(["train", *flags, "--total-steps", "128", "--out", str(ref)]) == 0
    assert main(["train", *flags, "--total-steps", "64", "--out", str(cut)]) == 0
    assert main(["train", "--resume", str(cut), "--total-steps", "128", "--quiet"]) == 0
    same_run(ref, cut)
    assert (ref / "games.csv").read_text().splitlines()[0] == "step,score,length,train_seconds"
    config = (ref / "config.toml").read_text()
    assert 'algo = "pqn"' in config and "layer_norm = true" in config
    assert 'preset = "pqn"' in config  # --algo pqn alone: the pqn preset's settings
    # The model files rebuild the LayerNorm network with no flag.
    policy = atari_dqn.load_policy(ref, which="best")
    assert policy.actions == ("NOOP", "FIRE", "RIGHT", "LEFT")
    assert any("LayerNorm" in type(m).__name__ for m in policy._policy.network.modules())
    games = policy.play(1, epsilon=0.05)
    assert games[0].length > 0
    assert main(["evaluate", str(ref), "--episodes", "1", "--max-frames", "400"]) == 0


def test_pqn_with_vector_envs_trains_and_evaluates(tmp_path: Path) -> None:
    out = tmp_path / "vec"
    flags = [*TINY_PQN, "--num-envs", "4", "--rollout-steps", "8", "--total-steps", "96"]
    assert main(["train", *flags, "--out", str(out)]) == 0
    rewards = (out / "rewards.txt").read_text().split("\n")
    assert len([line for line in rewards if line.strip()]) == 1  # one evaluation, at >= 64


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--distributional"], "--distributional True is not available with --algo pqn"),
        (["--replay", "prioritized"], "--replay prioritized is not available with --algo pqn"),
        (["--n-step", "3"], "--n-step 3 is not available with --algo pqn"),
        (["--double"], "--double True is not available with --algo pqn"),
        (["--compile"], "--compile True is not available with --algo pqn"),
        (["--bf16"], "--bf16 on is not available with --algo pqn"),
        (["--minibatches", "5"], "--minibatches 5 must divide the rollout's"),
        (["--q-lambda", "1.5"], "--q-lambda must be in [0, 1]"),
        (["--max-grad-norm", "0"], "--max-grad-norm must be a positive number"),
    ],
)
def test_bad_pqn_settings_are_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    out = tmp_path / "bad"
    assert main(["train", *TINY_PQN, "--total-steps", "64", *flags, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists()


def test_dqn_only_settings_are_checked_in_config() -> None:
    with pytest.raises(ConfigError, match="--noisy True is not available with --algo pqn"):
        preset_config("pqn").replace(noisy=True).validate()
    preset_config("pqn").replace(bf16="auto").validate()  # 'auto' is float32 for PQN


# ---------------------------------------------------------------------- signals
# A stop is honoured at the next rollout boundary (the rollout under way is collected and
# learned from); an evaluation under way or due there is abandoned and played on resume.
@pytest.mark.slow
def test_a_signal_mid_rollout_stops_at_its_boundary_and_the_run_resumes_exactly(
    tmp_path: Path,
) -> None:
    from test_bad_inputs import signalled

    flags = [*TINY_PQN, "--num-envs", "1", "--seed", "5", "--total-steps", "128"]
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    assert main(["train", *flags, "--out", str(ref)]) == 0
    # The 70th step: inside the rollout of steps 65..80 (evaluation 1 at 64 is done).
    proc = signalled("train.", 70, ["train", *flags, "--out", str(cut)])
    assert proc.returncode == 130, proc.stderr
    assert "stopped by SIGINT at step 80" in proc.stdout
    assert read_checkpoint_state(cut / CHECKPOINT_NAME)["loop"]["step"] == 80
    assert main(["train", "--resume", str(cut), "--quiet"]) == 0
    same_run(ref, cut)
    # Inside evaluation 1 (step 64): abandoned, played first on resume.
    cut2 = tmp_path / "cut2"
    proc = signalled("eval.step", 3, ["train", *flags, "--out", str(cut2)])
    assert proc.returncode == 130, proc.stderr
    assert "after the signal" not in proc.stderr  # not one more evaluation step
    assert "stopped by SIGINT at step 64" in proc.stdout
    rewards = cut2 / "rewards.txt"
    assert not rewards.exists() or not rewards.read_text()
    assert main(["train", "--resume", str(cut2), "--quiet"]) == 0
    same_run(ref, cut2)
