"""What a run reports beyond its files: evaluation videos, W&B (offline, read back), the
TensorBoard hyperparameters panel; the device a run picks."""

from __future__ import annotations

import glob
import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from atari_dqn.build import make_replay, resolve_device
from atari_dqn.cli import main
from atari_dqn.reporting import Reporting
from tiny import TINY_RUN

SRC = Path(__file__).resolve().parents[1] / "src"


def scores_of(run: Path) -> list[float]:
    return [float(line.split()[2]) for line in (run / "rewards.txt").read_text().splitlines()]


def model_of(path: Path) -> tuple[dict[str, str], dict[str, bytes]]:
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as fh:
        return fh.metadata(), {k: fh.get_tensor(k).tobytes() for k in fh.keys()}


@pytest.mark.slow
def test_capture_video_films_the_first_game_of_every_kth_evaluation(tmp_path: Path, capsys) -> None:
    plain, filmed = tmp_path / "plain", tmp_path / "filmed"
    assert main(["train", *TINY_RUN, "--seed", "2", "--quiet", "--out", str(plain)]) == 0
    capsys.readouterr()
    args = ["--capture-video", "--video-every", "2"]
    assert main(["train", *TINY_RUN, *args, "--seed", "2", "--quiet", "--out", str(filmed)]) == 0
    log = capsys.readouterr().out
    # Evaluations 1 and 2 (steps 120, 240): only the 2nd is filmed.
    assert sorted(p.name for p in (filmed / "videos").iterdir()) == ["eval_002.mp4"]
    with imageio.get_reader(filmed / "videos" / "eval_002.mp4", format="FFMPEG") as reader:
        frames = np.stack(list(reader.iter_data()))
    assert frames.shape[1:] == (210, 160, 3)
    # The film is that evaluation's first game: its score (one game per evaluation here).
    match = re.search(r"video of evaluation 2's first game \(score (\S+), (\d+) steps\)", log)
    assert match, log
    assert float(match[1]) == scores_of(filmed)[1]
    assert len(frames) == int(match[2]) + 1  # the first frame, then one per agent step
    # Filming plays outside training: the run learns exactly what it does without it.
    assert (filmed / "rewards.txt").read_text() == (plain / "rewards.txt").read_text()
    assert model_of(filmed / "model_latest.safetensors") == model_of(
        plain / "model_latest.safetensors"
    )


def test_tensorboard_gets_the_config_as_a_hyperparameters_panel(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["train", *TINY_RUN, "--lr", "0.0002", "--quiet", "--out", str(run)]) == 0
    acc = EventAccumulator(str(run), size_guidance={"tensors": 0})
    acc.Reload()
    [event] = acc.Tensors("hyperparameters/text_summary")
    table = event.tensor_proto.string_val[0].decode()
    assert table.startswith("|param|value|\n|-|-|\n")
    assert "|lr|0.0002|" in table.splitlines() and "|seed|0|" in table.splitlines()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--video-every", "2"], "--video-every needs --capture-video"),
        (["--capture-video", "--video-every", "0"], "--video-every must be >= 1"),
        (["--wandb-project", "p"], "--wandb-project needs --track"),
        (["--wandb-entity", "me"], "--wandb-entity needs --track"),
    ],
)
def test_reporting_flags_bad_input(tmp_path: Path, capsys, flags: list[str], message: str) -> None:
    out = tmp_path / "run"
    assert main(["train", *TINY_RUN, *flags, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_track_without_wandb_installed_is_refused(monkeypatch) -> None:
    import importlib.util

    from atari_dqn.config import UsageError

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a)
    )
    with pytest.raises(UsageError, match=r"--track needs Weights & Biases: pip install"):
        Reporting(track=True).check()


# ---------------------------------------------------------------------- W&B, offline
def wandb_records(path: Path):
    """The records of a W&B run file (``run-ID.wandb``): a 7-byte header, then LevelDB's log
    format (32 KiB blocks of records, each a CRC, a length, a type: full, first, middle, last)
    of protobuf ``Record`` messages."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", data[:7]
    pos, block, pending = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:
            pos += left
            continue
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # full, or the last piece
            record = pb.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def read_wandb_run(wandb_dir: Path, run_id: str) -> tuple[str, dict[str, str], list[dict]]:
    """(project, config, history rows) of the offline runs with id ``run_id``."""
    files = sorted(glob.glob(str(wandb_dir / "wandb" / f"offline-run-*-{run_id}" / "*.wandb")))
    assert files, list(wandb_dir.rglob("*"))
    project, config, history = "", {}, []
    for file in files:
        for record in wandb_records(Path(file)):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                project = record.run.project
                config.update({i.key: i.value_json for i in record.run.config.update})
            elif kind == "history":
                history.append({i.key or "/".join(i.nested_key): i.value_json
                                for i in record.history.item})  # fmt: skip
    return project, config, history


@pytest.mark.slow
def test_track_logs_config_scalars_and_videos_to_wandb_offline(tmp_path: Path) -> None:
    pytest.importorskip("wandb")
    env = {
        **os.environ,
        "WANDB_MODE": "offline",
        "WANDB_DIR": str(tmp_path),
        "WANDB_SILENT": "true",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(SRC),
    }
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "atari_dqn", "train", *TINY_RUN, "--quiet", "--track"]
    flags = ["--wandb-project", "tiny-proj", "--capture-video", "--out", str(run)]
    done = subprocess.run([*cmd, *flags], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    run_id = (run / "wandb_id").read_text().strip()
    project, config, history = read_wandb_run(tmp_path, run_id)
    assert project == "tiny-proj"
    assert json.loads(config["total_steps"]) == 240 and json.loads(config["eval_games"]) == 1
    evals = [json.loads(row["eval/episodic_return"]) for row in history
             if "eval/episodic_return" in row]  # fmt: skip
    assert evals == scores_of(run)  # TensorBoard's scalars, synced
    videos = [json.loads(row["videos/eval/_type"]) for row in history if "videos/eval/_type" in row]
    assert videos == ["video-file", "video-file"]  # evaluations 1 and 2, uploaded
    # --resume continues the same W&B run.
    more = [sys.executable, "-m", "atari_dqn", "train", "--resume", str(run), "--quiet"]
    done = subprocess.run(
        [*more, "--total-steps", "360", "--track"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert (run / "wandb_id").read_text().strip() == run_id
    _, _, history = read_wandb_run(tmp_path, run_id)
    steps = [json.loads(row["global_step"]) for row in history if "eval/episodic_return" in row]
    assert steps == [120, 240, 360]


# ---------------------------------------------------------------------- devices
def test_auto_device_is_cuda_then_mps_then_cpu(monkeypatch) -> None:
    for cuda, mps, expected in (
        (True, True, "cuda"),
        (False, True, "mps"),
        (False, False, "cpu"),
    ):
        monkeypatch.setattr(torch.cuda, "is_available", lambda c=cuda: c)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda m=mps: m)
        assert resolve_device("auto").type == expected


@pytest.mark.parametrize("kind", ["uniform", "prioritized"])
def test_batches_hold_no_float64_for_mps(kind: str) -> None:
    """MPS has no float64: what an update moves to the device is float32, int64 or uint8."""
    replay = make_replay(kind, 64, np.random.default_rng(0), n_step=3, gamma=0.99)
    replay.begin(0, np.zeros((84, 84), np.uint8))
    for t in range(40):
        replay.append(0, t % 4, 1.0, np.full((84, 84), t, np.uint8), t == 39, False)
    batch = replay.sample(8, beta=0.4)
    arrays = {k: v for k, v in vars(batch).items() if isinstance(v, np.ndarray)}
    assert {k: v.dtype for k, v in arrays.items() if k != "indices"} == {
        "obs": np.uint8,
        "next_obs": np.uint8,
        "actions": np.int64,
        "returns": np.float32,
        "discounts": np.float32,
        "weights": np.float32,
    }


@pytest.mark.skipif(not torch.backends.mps.is_available(), reason="no Apple MPS on this machine")
def test_a_tiny_run_trains_on_mps(tmp_path: Path) -> None:
    assert main(["train", *TINY_RUN, "--device", "mps", "--quiet", "--out", str(tmp_path)]) == 0
