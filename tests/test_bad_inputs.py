"""The bad inputs of issue 26, each kept out: one line and exit 2 before any file is written (a
damaged file found on --resume: one line naming the file and the line, the run untouched), a
warning where the input is legal but useless, and signals honoured wherever the loop is."""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from atari_dqn.artifacts import ArtifactError
from atari_dqn.checkpoint import CHECKPOINT_NAME, read_checkpoint_state
from atari_dqn.cli import main
from atari_dqn.config import Config, ConfigError
from tiny import TINY_RUN, same_run

TINY = [*TINY_RUN, "--quiet"]


def snapshot(directory: Path) -> dict[str, str]:
    """Every file of a directory (the lock file aside), by its hash."""
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("atari-dqn: error: "), err
    assert "\n" not in err and "Traceback" not in err, err
    return err


def model_with(src: Path, dst: Path, *, nan: bool = False, **meta: str) -> Path:
    """A copy of a model file with changed metadata, or with NaN weights."""
    with safe_open(str(src), framework="pt") as fh:
        metadata = dict(fh.metadata() or {})
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    if nan:
        tensors = {k: torch.full_like(v, math.nan) for k, v in tensors.items()}
    save_file(tensors, str(dst), metadata={**metadata, **meta})
    return dst


# ---------------------------------------------------------------------- 1, 2, 5: config bounds
@pytest.mark.parametrize(
    "flags, words",
    [
        (["--noop-max", "2000000000"], "--noop-max must be between 0 and 1000"),
        (["--frame-skip", "2000000000"], "--frame-skip must be between 1 and 64"),
        (["--eval-max-frames", "4000000000"], "--eval-max-frames must be between 1 and"),
        (["--replay", "prioritized", "--alpha", "nan"], "--alpha must be in [0, 1]"),
        (["--replay", "prioritized", "--priority-eps", "inf"], "--priority-eps must be in (0, 1]"),
        (["--seed", "-1"], "--seed must be between 0 and 2**63 - 1"),
        (["--seed", "99999999999999999999999"], "--seed must be between 0 and 2**63 - 1"),
        (["--distributional", "--v-min=-1e308", "--v-max=1e308"], "(the support is float32)"),
        (["--distributional", "--v-min=0", "--v-max=1e-320"], "too close for 51 atoms"),
        (["--noisy", "--noisy-sigma0", "1e300"], "--noisy-sigma0 must be a float32 number"),
        (["--total-steps", str(2**64)], "--total-steps 18446744073709551616 is beyond a 64-bit"),
    ],
)
def test_values_past_their_meaning_are_one_line_before_any_file(
    flags: list[str], words: str, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "run"
    assert main(["train", *TINY, "--out", str(out), *flags]) == 2
    assert words in one_line_error(capsys)
    assert not out.exists()


def test_the_bounds_admit_every_preset_and_the_published_values() -> None:
    from atari_dqn.config import PRESETS, preset_config

    for name in PRESETS:
        preset_config(name).validate()
    Config(noop_max=1000, frame_skip=64, seed=2**63 - 1, alpha=1.0, priority_eps=1.0).validate()
    Config(distributional=True, v_min=-1e38, v_max=1e38, noisy_sigma0=1e38).validate()
    with pytest.raises(ConfigError, match="too close"):  # equal once rounded to float32
        Config(v_min=1e6, v_max=1e6 + 1e-3).validate()


def test_warmup_not_shorter_than_the_run_is_a_warning(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", *TINY, "--out", str(out), "--warmup-steps", "240"]) == 0
    err = capsys.readouterr().err
    assert "atari-dqn: warning: --warmup-steps 240 is not shorter than --total-steps 240" in err
    assert (out / "rewards.txt").is_file()


# ---------------------------------------------------------------------- evaluate and model files
@pytest.mark.parametrize(
    "meta, words",
    [
        ({"noop_max": "2000000000"}, "noop_max = '2000000000': must be between 0 and 1000"),
        ({"frame_skip": "abc"}, "frame_skip = 'abc' is not a number"),
        ({"eval_max_frames": "-5"}, "eval_max_frames = '-5': must be between 1"),
        ({"num_actions": "2000000000"}, "num_actions = '2000000000' is not between 1 and 18"),
    ],
)
def test_model_metadata_past_the_bounds_is_one_line(
    tiny_run: Path, tmp_path: Path, capsys, meta: dict[str, str], words: str
) -> None:
    model = model_with(tiny_run / "model_002.safetensors", tmp_path / "m.safetensors", **meta)
    assert main(["evaluate", str(model), "--episodes", "1"]) == 2
    assert words in one_line_error(capsys)


def test_evaluate_refuses_a_negative_seed_and_a_frames_file(
    tiny_run: Path, tmp_path: Path, capsys
) -> None:
    assert main(["evaluate", str(tiny_run), "--episodes", "1", "--seed", "-1"]) == 2
    assert "--seed must be between 0 and 2**63 - 1" in one_line_error(capsys)
    afile = tmp_path / "afile"
    afile.write_text("mine")
    assert main(["evaluate", str(tiny_run), "--episodes", "1", "--frames", str(afile)]) == 2
    assert "is not a directory" in one_line_error(capsys)
    assert afile.read_text() == "mine"
    assert main(["evaluate", str(tiny_run), "--noop-max", "2000000000"]) == 2
    assert "--noop-max must be between 0 and 1000" in one_line_error(capsys)


def test_a_model_with_weights_not_finite_is_refused_everywhere(
    tiny_run: Path, tmp_path: Path, capsys
) -> None:
    from atari_dqn import load_policy

    model = model_with(tiny_run / "model_002.safetensors", tmp_path / "nan.safetensors", nan=True)
    assert main(["evaluate", str(model), "--episodes", "1"]) == 2
    assert "its weights are not all finite" in one_line_error(capsys)
    out = tmp_path / "restored"
    assert main(["train", *TINY, "--out", str(out), "--restore", str(model)]) == 2
    assert "its weights are not all finite" in one_line_error(capsys)
    assert not out.exists()
    with pytest.raises(ArtifactError, match="not all finite"):
        load_policy(model)


def test_evaluate_on_another_game_says_so(tiny_run: Path, capsys) -> None:
    code = main(
        ["evaluate", str(tiny_run), "--episodes", "1", "--max-frames", "200",
         "--env-id", "ALE/Pong-v5"]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "note: --env-id ALE/Pong-v5 differs from the run's BreakoutNoFrameskip-v4" in out


# ---------------------------------------------------------------------- damaged run files
@pytest.mark.parametrize(
    "name, damage, words",
    [
        ("rewards.txt", b"\xff\xfe\n", "rewards.txt:3: not UTF-8 text"),
        ("rewards.txt", b"hello world\n", "rewards.txt:3: not an 'index step score' line"),
        ("games.csv", b"1,2,3\n", "not a 'step,score,length,train_seconds' line: '1,2,3'"),
        ("games.csv", b"\x80\n", "not UTF-8 text"),
        ("sessions.csv", b"\xc3\x28\n", "sessions.csv:3: not UTF-8 text"),
    ],
)
def test_resume_of_a_damaged_file_names_it_and_touches_nothing(
    tiny_run: Path, tmp_path: Path, capsys, name: str, damage: bytes, words: str
) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    with open(run / name, "ab") as fh:
        fh.write(damage)
    before = snapshot(run)
    assert main(["train", "--resume", str(run), "--total-steps", "360", "--quiet"]) == 2
    assert words in one_line_error(capsys)
    assert snapshot(run) == before


def test_plot_of_rewards_not_utf8_is_one_line(tiny_run: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    with open(run / "rewards.txt", "ab") as fh:
        fh.write(b"  3      360 1\xe9.0\n")
    assert main(["plot", str(run), "-o", str(tmp_path / "p.png")]) == 2
    assert "rewards.txt:3: not UTF-8 text" in one_line_error(capsys)
    assert not (tmp_path / "p.png").exists()


def test_plot_does_not_subtract_the_scores_of_two_games(
    tiny_run: Path, tmp_path: Path, capsys
) -> None:
    other = tmp_path / "pong"
    shutil.copytree(tiny_run, other)
    config = (other / "config.toml").read_text()
    (other / "config.toml").write_text(
        config.replace("BreakoutNoFrameskip-v4", "PongNoFrameskip-v4")
    )
    assert main(["plot", str(tiny_run), str(other), "-o", str(tmp_path / "p.png")]) == 0
    out = capsys.readouterr().out
    assert "not compared: games BreakoutNoFrameskip-v4, PongNoFrameskip-v4" in out
    csv = (tmp_path / "p.csv").read_text().splitlines()
    assert csv[2].split(",")[-3:] == ["", "", ""]  # no final_diff and interval for the Pong run


# ---------------------------------------------------------------------- signals
# The CLI in a child process that sends itself SIGINT the N-th time the loop reaches a kill point
# (killpoints.py) whose name starts with WHICH: a Ctrl-C landing exactly there.
SIGNAL_AT = textwrap.dedent(
    """
    import os, signal, sys
    import atari_dqn.evaluate as evaluate
    import atari_dqn.killpoints as killpoints
    which, n, reached = sys.argv[1], int(sys.argv[2]), []
    def point(name):
        if name.startswith(which):
            reached.append(name)
            if len(reached) == n:
                os.kill(os.getpid(), signal.SIGINT)
            elif len(reached) > n:
                print(f"reached {name} after the signal", file=sys.stderr)
    killpoints.ARMED, killpoints.kill_point, evaluate.kill_point = True, point, point
    from atari_dqn.cli import main
    sys.exit(main(sys.argv[3:]))
    """
)


def signalled(which: str, n: int, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """``atari-dqn argv`` in a child that sends itself SIGINT at the ``n``-th kill point whose
    name starts with ``which``."""
    return subprocess.run(
        [sys.executable, "-c", SIGNAL_AT, which, str(n), *argv],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def train_signalled(which: str, n: int, *args: str) -> subprocess.CompletedProcess[str]:
    return signalled(which, n, ["train", *TINY, *args])


@pytest.mark.slow
def test_a_signal_inside_an_evaluation_stops_it_and_the_run_resumes_exactly(
    tiny_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    proc = train_signalled("eval.step", 3, "--seed", "1", "--out", str(out))
    assert proc.returncode == 130, proc.stderr
    assert "after the signal" not in proc.stderr  # not one more evaluation step
    assert "stopped by SIGINT at step 120" in proc.stdout
    assert read_checkpoint_state(out / CHECKPOINT_NAME)["loop"]["step"] == 120
    rewards = out / "rewards.txt"  # the evaluation is not done: it is played on resume
    assert not rewards.exists() or not rewards.read_text()
    assert main(["train", "--resume", str(out), "--quiet"]) == 0
    same_run(tiny_run, out)


@pytest.mark.slow
def test_a_late_signal_after_the_last_step_ends_the_run_as_finished(tmp_path: Path) -> None:
    out = tmp_path / "run"
    # The 250th and last step (evaluations at 120 and 240 are done).
    proc = train_signalled("train.", 250, "--seed", "1", "--total-steps", "250", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "SIGINT after the last step: the run is complete" in proc.stdout
    assert "--resume" not in proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1].startswith("done: 250 steps")
    assert read_checkpoint_state(out / CHECKPOINT_NAME)["loop"]["step"] == 250


@pytest.mark.slow
def test_a_signal_at_the_last_step_before_its_evaluation_leaves_it_to_resume(
    tiny_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    proc = train_signalled("train.", 240, "--seed", "1", "--out", str(out))  # eval 2 is due
    assert proc.returncode == 130, proc.stderr
    assert "stopped by SIGINT at step 240; continue with" in proc.stdout
    assert main(["train", "--resume", str(out), "--quiet"]) == 0  # plays evaluation 2
    same_run(tiny_run, out)
