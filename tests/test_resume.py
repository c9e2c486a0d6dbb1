"""Never lose a run: exact resume, kills at random moments, safe loading, the NaN guard."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from atari_dqn.artifacts import RunDir, atomic_write_text
from atari_dqn.checkpoint import CHECKPOINT_NAME, REPLAY_DIR, read_checkpoint_state
from atari_dqn.cli import main
from atari_dqn.host import host_info
from tiny import same_run, tiny

TINY = [*tiny(total_steps=None, update_every=None, eval_every=100, eval_max_frames=400,
             buffer_size=400, eps_decay=200), "--quiet"]  # fmt: skip


def games(run: Path) -> list[tuple[int, float, int, float]]:
    """games.csv as (step, score, length, train_seconds) rows; every line whole."""
    text = (run / "games.csv").read_text()
    lines = text.splitlines(keepends=True)
    assert lines[0] == "step,score,length,train_seconds\n"
    assert all(ln.endswith("\n") for ln in lines)
    rows = [ln.strip().split(",") for ln in lines[1:]]
    return [(int(s), float(g), int(n), float(t)) for s, g, n, t in rows]


def same_games(a: Path, b: Path) -> None:
    """The same training games at the same steps; the training clock never goes back."""
    ga, gb = games(a), games(b)
    assert [g[:3] for g in ga] == [g[:3] for g in gb]
    seconds = [g[3] for g in gb]
    assert seconds == sorted(seconds) and all(t >= 0 for t in seconds)


@pytest.fixture(scope="session")
def reference(shared_runs) -> Path:
    """An uninterrupted run of 400 steps."""
    return shared_runs.get("resume-reference", [*TINY, "--total-steps", "400", "--seed", "3"])


def test_resume_at_an_evaluation_is_exact(reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["train", *TINY, "--total-steps", "200", "--seed", "3", "--out", str(out)]) == 0
    assert main(["train", "--resume", str(out), "--total-steps", "400", "--quiet"]) == 0
    same_run(reference, out)
    same_games(reference, out)
    assert "total_steps = 400" in (out / "config.toml").read_text()
    # sessions.csv: where each process's wall-clock seconds were measured, a line per start
    assert [s["step"] for s in RunDir(reference).sessions()] == ["0"]
    started, resumed = RunDir(out).sessions()
    assert (started["step"], resumed["step"]) == ("0", "200")
    assert resumed["cpu"] == host_info()["cpu"] and resumed["device"] == "cpu"
    assert int(resumed["torch_threads"]) == torch.get_num_threads()


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["rainbow-lite", "rainbow"])
def test_resume_is_exact_with_prioritized_nstep_double_dueling(tmp_path: Path, preset) -> None:
    # β anneals over a fixed horizon: the run's length when it started, or this flag.
    flags = [*TINY, "--preset", preset, "--beta-steps", "300", "--seed", "5"]
    ref, out = tmp_path / "ref", tmp_path / "run"
    assert main(["train", *flags, "--total-steps", "300", "--out", str(ref)]) == 0
    assert main(["train", *flags, "--total-steps", "100", "--out", str(out)]) == 0
    assert main(["train", "--resume", str(out), "--total-steps", "300", "--quiet"]) == 0
    same_run(ref, out)


@pytest.mark.slow
def test_resume_is_exact_with_shift_augmentation_and_layer_norm(tmp_path: Path) -> None:
    # The shifts' generator is in the checkpoint: the resumed run draws what the whole one did.
    flags = [*TINY, "--augment", "shift", "--layer-norm", "--double", "--seed", "4"]
    ref, out = tmp_path / "ref", tmp_path / "run"
    assert main(["train", *flags, "--total-steps", "300", "--out", str(ref)]) == 0
    assert main(["train", *flags, "--total-steps", "100", "--out", str(out)]) == 0
    assert main(["train", "--resume", str(out), "--total-steps", "300", "--quiet"]) == 0
    same_run(ref, out)
    text = (out / "config.toml").read_text()
    assert 'augment = "shift"' in text and "layer_norm = true" in text


NEW_HEAD_KEYS = ("distributional", "atoms", "v_min", "v_max", "noisy", "noisy_sigma0")
NEW_KEYS = (*NEW_HEAD_KEYS, "layer_norm", "augment")


@pytest.mark.slow
def test_a_run_from_before_the_rainbow_head_settings_resumes_exactly(
    reference: Path, tmp_path: Path
) -> None:
    # A run started before --distributional/--noisy (or --layer-norm, --augment) existed:
    # neither its config.toml nor its checkpoint's config has those keys. It resumes, exactly,
    # as a run without them.
    from safetensors import safe_open
    from safetensors.numpy import save_file

    out = tmp_path / "run"
    assert main(["train", *TINY, "--total-steps", "200", "--seed", "3", "--out", str(out)]) == 0
    toml = out / "config.toml"
    lines = toml.read_text().splitlines(keepends=True)
    toml.write_text("".join(ln for ln in lines if ln.split(" = ")[0] not in NEW_KEYS))
    ckpt = out / CHECKPOINT_NAME
    with safe_open(str(ckpt), framework="np") as fh:
        meta = dict(fh.metadata())
        arrays = {k: fh.get_tensor(k) for k in fh.keys()}
    state = json.loads(meta["state"])
    for key in NEW_KEYS:
        del state["config"][key]
    save_file(arrays, str(ckpt), metadata={**meta, "state": json.dumps(state)})
    assert main(["train", "--resume", str(out), "--total-steps", "400", "--quiet"]) == 0
    same_run(reference, out)


@pytest.mark.slow
def test_a_run_whose_files_hold_old_names_of_values_resumes_exactly(
    reference: Path, tmp_path: Path
) -> None:
    # A run started when the course project's preset and action set were called "seed" and
    # bf16 was a yes/no setting: its config.toml and its checkpoint's config say so. It
    # resumes, exactly, under the new names.
    from safetensors import safe_open
    from safetensors.numpy import save_file

    out = tmp_path / "run"
    args = ["--preset", "seed", "--actions", "seed", "--total-steps", "200", "--seed", "3"]
    assert main(["train", *TINY, *args, "--out", str(out)]) == 0
    toml = out / "config.toml"
    text = toml.read_text()
    assert 'preset = "course"' in text and 'actions = "course"' in text  # new runs: new names
    assert 'bf16 = "off"' in text
    toml.write_text(text.replace('"course"', '"seed"').replace('bf16 = "off"', "bf16 = false"))
    ckpt = out / CHECKPOINT_NAME
    with safe_open(str(ckpt), framework="np") as fh:
        meta = dict(fh.metadata())
        arrays = {k: fh.get_tensor(k) for k in fh.keys()}
    state = json.loads(meta["state"])
    state["config"].update(preset="seed", actions="seed", bf16=False)
    save_file(arrays, str(ckpt), metadata={**meta, "state": json.dumps(state)})
    resume = ["train", "--resume", str(out), "--total-steps", "400", "--quiet"]
    assert main([*resume, "--actions", "seed"]) == 0  # the old name agrees with the run's
    same_run(reference, out)
    assert 'actions = "course"' in toml.read_text() and 'bf16 = "off"' in toml.read_text()


def _spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "atari_dqn", "train", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)


@pytest.mark.slow
def test_sigterm_mid_run_checkpoints_exits_0_and_resumes_exactly(
    reference: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    proc = _spawn(*TINY, "--total-steps", "400", "--seed", "3", "--out", str(out))
    _wait_for(out / "model_001.safetensors", proc)
    time.sleep(0.3)  # somewhere between two evaluations
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "stopped by SIGTERM" in stdout and "--resume" in stdout
    step = read_checkpoint_state(out / CHECKPOINT_NAME)["loop"]["step"]
    assert 100 <= step < 400
    assert main(["train", "--resume", str(out), "--quiet"]) == 0
    same_run(reference, out)
    same_games(reference, out)


@pytest.mark.slow
def test_checkpoint_every_bounds_what_a_kill_loses_and_changes_no_result(tmp_path: Path) -> None:
    # One evaluation, at the end: without --checkpoint-every a kill at step ~243 would leave no
    # checkpoint at all; with checkpoints every 100 steps it leaves the one at step 200.
    flags = [*TINY, "--eval-every", "400", "--total-steps", "400", "--seed", "4"]
    ref, out = tmp_path / "ref", tmp_path / "run"
    assert main(["train", *flags, "--out", str(ref)]) == 0
    kill = {**os.environ, "ATARI_DQN_KILL_AT": "train.learning:200"}  # learning starts at 44
    proc = _spawn(*flags, "--checkpoint-every", "100", "--out", str(out), env=kill)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, stderr
    assert [ln.split()[3].rstrip(":") for ln in stdout.splitlines() if "checkpoint at" in ln] == [
        "100",
        "200",
    ]
    assert read_checkpoint_state(out / CHECKPOINT_NAME)["loop"]["step"] == 200
    assert "checkpoint_every = 100" in (out / "config.toml").read_text()
    # It may change on --resume like the other checkpoint settings; the results are the
    # uninterrupted run's, which checkpointed only at its end.
    assert main(["train", "--resume", str(out), "--checkpoint-every", "0", "--quiet"]) == 0
    same_run(ref, out)
    same_games(ref, out)


# Where each process of the kill test dies (ATARI_DQN_KILL_AT, see atari_dqn/killpoints.py),
# one after another, each resuming from the checkpoint the one before left, and the step of the
# checkpoint it leaves. With warm-up up to step 150, evaluations at 100, 200, 300 and 400, and
# chunks of 128 slots (of 400).
# The last number: the files the kill leaves for the next start to remove (temporary files
# of writes, chunks the checkpoint does not name).
KILLS = [
    ("train.warmup:120", "warm-up", 100, 0),  # step 120, after the checkpoint at 100
    ("eval.step:10", "evaluation", 100, 0),  # inside the evaluation at 200
    ("train.learning:60", "learning", 200, 0),  # the 60th step with updates: about step 213
    ("write.rewards:1", "rewards.txt", 200, 1),  # the line of the evaluation at 300
    ("write.model:1", "model file", 200, 1),  # model_003, after its rewards.txt line
    ("checkpoint.chunk:2", "checkpoint chunk", 200, 2),  # the 2nd of chunks 1 and 2 at 300
    ("checkpoint.manifest:1", "checkpoint manifest", 200, 3),  # both new chunks written
    ("checkpoint.cleanup:1", "checkpoint cleanup", 300, 1),  # the old chunk 1 (2 is new)
]
KILL_FLAGS = [*TINY, "--warmup-steps", "150", "--checkpoint-chunk", "128", "--seed", "3"]


def _leftovers(out: Path) -> list[Path]:
    """Temporary files of writes, and replay chunks the checkpoint does not name."""
    doc = read_checkpoint_state(out / CHECKPOINT_NAME)["replay_frames"]
    named = {out / c["file"] for c in doc["chunks"]}
    chunks = (out / REPLAY_DIR).glob("frames_*")
    return sorted([*out.rglob(".*.tmp"), *(p for p in chunks if p not in named)])


def _check_artifacts(out: Path) -> int:
    """Everything in the run directory parses after a kill; returns the checkpoint's step."""
    step = read_checkpoint_state(out / CHECKPOINT_NAME)["loop"]["step"]
    lines = (out / "rewards.txt").read_text().splitlines(keepends=True)
    assert all(ln.endswith("\n") and len(ln.split()) == 3 for ln in lines)
    for model in out.glob("model_*"):
        load_file(model)
    return step


@pytest.mark.slow
def test_sigkill_at_each_kind_of_moment_then_resume(tmp_path: Path) -> None:
    ref, out = tmp_path / "ref", tmp_path / "run"
    assert main(["train", *KILL_FLAGS, "--total-steps", "400", "--out", str(ref)]) == 0
    first = ["--total-steps", "400", "--out", str(out), "--quiet", *KILL_FLAGS]
    kills: dict[str, int] = {}
    for spec, kind, left, junk in KILLS:
        args = first if not kills else ["--resume", str(out), "--quiet"]
        proc = _spawn(*args, env={**os.environ, "ATARI_DQN_KILL_AT": spec})
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == -signal.SIGKILL, (spec, proc.returncode, stderr)
        kills[kind] = kills.get(kind, 0) + 1
        # The checkpoint left is the last one before the kill, whole; every file parses.
        assert _check_artifacts(out) == left, spec
        assert len(_leftovers(out)) == junk, (spec, _leftovers(out))
    proc = _spawn("--resume", str(out), "--quiet")
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    print("kills by kind: " + ", ".join(f"{k} {n}" for k, n in kills.items()))
    assert list(kills) == [kind for _, kind, _, _ in KILLS] and set(kills.values()) == {1}
    # No gap, no duplicate, the uninterrupted run's results, and nothing left behind.
    steps = [int(ln.split()[1]) for ln in (out / "rewards.txt").read_text().splitlines()]
    assert steps == [100, 200, 300, 400]
    same_run(ref, out)
    same_games(ref, out)
    assert _leftovers(out) == []  # each start removed what the kill before it left
    named = read_checkpoint_state(out / CHECKPOINT_NAME)["replay_frames"]["chunks"]
    assert len(named) == len(list((out / REPLAY_DIR).iterdir())) == 4  # 0-127, ..., 384-399


def test_games_csv_records_every_training_game_once(reference: Path) -> None:
    rows = games(reference)
    assert len(rows) >= 1  # random play ends a Breakout game within about 200 agent steps
    steps = [r[0] for r in rows]
    assert steps == sorted(steps) and 0 < steps[0] and steps[-1] <= 400
    assert all(length > 0 and score >= 0 for _, score, length, _ in rows)
    # Each game ends where the previous one ended plus its own length (one env, N = 1).
    assert [r[0] for r in rows] == list(np.cumsum([r[2] for r in rows]))


def test_truncate_games_drops_later_games_and_a_half_written_line(tmp_path: Path) -> None:
    from atari_dqn.artifacts import RunDir

    run = RunDir(tmp_path)
    run.append_games([(150, 2.0, 150, 1.5), (300, 0.0, 150, 3.0)])
    with (tmp_path / "games.csv").open("a") as fh:
        fh.write("451,3,15")  # a kill in the middle of a line
    run.truncate_games(300)
    assert (tmp_path / "games.csv").read_text() == (
        "step,score,length,train_seconds\n150,2,150,1.500\n300,0,150,3.000\n"
    )
    run.truncate_games(200)
    assert games(tmp_path) == [(150, 2.0, 150, 1.5)]


def test_no_checkpoint_replay_resumes_with_a_new_warmup(tmp_path: Path) -> None:
    out = tmp_path / "run"
    flags = [*TINY, "--seed", "1", "--out", str(out), "--no-checkpoint-replay"]
    assert main(["train", *flags, "--total-steps", "100"]) == 0
    state = read_checkpoint_state(out / CHECKPOINT_NAME)
    assert state["replay"] is None
    assert main(["train", "--resume", str(out), "--total-steps", "200", "--quiet"]) == 0
    assert len((out / "rewards.txt").read_text().splitlines()) == 2


# ---------------------------------------------------------------------- safe loading
def _bad(args: list[str], message: str, capsys) -> None:
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err, err
    assert len(err.strip().splitlines()) == 1, err


@pytest.fixture()
def short_run(tmp_path: Path) -> Path:
    out = tmp_path / "short"
    assert main(["train", *TINY, "--total-steps", "100", "--out", str(out)]) == 0
    return out


def test_malicious_pickle_checkpoint_is_refused_without_running(
    short_run: Path, tmp_path: Path, capsys
) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"agent": Evil()}, short_run / CHECKPOINT_NAME)
    _bad(["train", "--resume", str(short_run)], "is not a valid atari-dqn checkpoint", capsys)
    assert not marker.exists()


def test_truncated_checkpoint_is_refused(short_run: Path, capsys) -> None:
    ckpt = short_run / CHECKPOINT_NAME
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    _bad(["train", "--resume", str(short_run), "--total-steps", "200"], "not a valid", capsys)


def test_a_missing_or_truncated_replay_chunk_is_refused(short_run: Path, capsys) -> None:
    (chunk,) = (short_run / REPLAY_DIR).glob("frames_*.safetensors")  # 400 slots: one chunk
    data = chunk.read_bytes()
    chunk.write_bytes(data[: len(data) // 2])
    args = ["train", "--resume", str(short_run), "--total-steps", "200"]
    _bad(args, f"replay chunk {chunk} of the checkpoint is missing or truncated", capsys)
    chunk.unlink()
    _bad(args, f"replay chunk {chunk} of the checkpoint is missing or truncated", capsys)


def test_resume_removes_what_a_killed_save_left(short_run: Path) -> None:
    (chunk,) = (short_run / REPLAY_DIR).glob("frames_*.safetensors")
    stale = [
        short_run / REPLAY_DIR / "frames_00000.g000099.safetensors",  # named by no checkpoint
        short_run / REPLAY_DIR / ".frames_00000.g000002.safetensors.a1b2c3d4.tmp",
        short_run / ".checkpoint.safetensors.e5f6g7h8.tmp",
        short_run / ".model_002.safetensors.i9j0k1l2.tmp",
    ]
    for p in stale:
        p.write_bytes(b"half a file")
    assert main(["train", "--resume", str(short_run), "--total-steps", "200", "--quiet"]) == 0
    assert not any(p.exists() for p in stale)
    # The save at step 200 wrote the chunk anew (new frames) and deleted the one of step 100.
    assert [p.name for p in (short_run / REPLAY_DIR).iterdir()] == [
        "frames_00000.g000002.safetensors"
    ]
    assert not chunk.exists()


def test_checkpoint_from_another_game_is_refused(short_run: Path, tmp_path: Path, capsys) -> None:
    pong = tmp_path / "pong"
    args = ["train", *TINY, "--total-steps", "100", "--env-id", "PongNoFrameskip-v4"]
    assert main([*args, "--out", str(pong)]) == 0
    (pong / CHECKPOINT_NAME).write_bytes((short_run / CHECKPOINT_NAME).read_bytes())
    _bad(
        ["train", "--resume", str(pong), "--total-steps", "200"],
        "is from BreakoutNoFrameskip-v4, but this run is PongNoFrameskip-v4",
        capsys,
    )


def test_resume_bad_input(short_run: Path, tmp_path: Path, capsys) -> None:
    _bad(["train", "--resume", str(tmp_path / "nothing")], "not a run directory", capsys)
    _bad(["train", "--resume", str(short_run), "--lr", "0.1"], "--lr 0.1 contradicts", capsys)
    _bad(["train", "--resume", str(short_run)], "already at step 100", capsys)
    _bad(
        ["train", "--resume", str(short_run), "--out", str(tmp_path / "x")],
        "--out cannot be combined with --resume",
        capsys,
    )
    (short_run / CHECKPOINT_NAME).unlink()
    _bad(["train", "--resume", str(short_run), "--total-steps", "200"], "no checkpoint", capsys)


@pytest.mark.slow
def test_nan_guard_stops_and_keeps_the_last_good_checkpoint(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    # An absurd learning rate makes the weights overflow within a few updates.
    args = ["train", *TINY, "--warmup-steps", "100", "--lr", "1e30", "--eval-every", "100"]
    code = main([*args, "--total-steps", "400", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1
    assert "training diverged" in err and "Traceback" not in err
    state = read_checkpoint_state(out / CHECKPOINT_NAME)
    assert state["loop"]["step"] == 100  # the checkpoint before the first update
    assert sorted(p.name for p in out.glob("model_[0-9]*")) == ["model_001.safetensors"]


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    atomic_write_text(path, "old\n")

    class Boom(Exception):
        pass

    from atari_dqn.artifacts import atomic_replace

    def failing(tmp: Path) -> None:
        tmp.write_text("half")
        raise Boom

    with pytest.raises(Boom):
        atomic_replace(path, failing)
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]
