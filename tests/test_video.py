"""`atari-dqn evaluate --video`: colour, native size, one frame per agent step, score overlay."""

from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio
import imageio.v3 as iio
import numpy as np
import pytest

from atari_dqn.artifacts import save_model
from atari_dqn.cli import main
from atari_dqn.networks import QNetwork
from atari_dqn.video import draw_label, pad_even

# 200 emulator frames = at most 50 agent steps a game: a few dozen frames per video.
SHORT = ["--episodes", "2", "--max-frames", "200"]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """An untrained network is enough to play (and film) a game."""
    import torch

    path = tmp_path_factory.mktemp("model") / "model_001.safetensors"
    network = QNetwork(3, generator=torch.Generator().manual_seed(0))
    save_model(path, network, {"env_id": "BreakoutNoFrameskip-v4", "actions": "NOOP,RIGHT,LEFT"})
    return path


def frames_of(path: Path) -> np.ndarray:
    if path.suffix == ".gif":
        return iio.imread(path, index=None, mode="RGB")
    with imageio.get_reader(path, format="FFMPEG") as reader:
        return np.stack([frame for frame in reader.iter_data()])


def gif_milliseconds(path: Path) -> int:
    from PIL import Image, ImageSequence

    with Image.open(path) as image:
        return sum(frame.info["duration"] for frame in ImageSequence.Iterator(image))


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_video_has_one_frame_per_png_at_native_size(
    model: Path, tmp_path: Path, suffix: str, capsys
) -> None:
    video, pngs = tmp_path / f"game{suffix}", tmp_path / "frames"
    args = ["evaluate", str(model), *SHORT, "--video", str(video), "--frames", str(pngs)]
    assert main(args) == 0
    # The same games as --frames: the reset frame, then one per agent step.
    expected = sorted(pngs.glob("game_*/*.png"))
    assert 2 * 2 <= len(expected) <= 2 * 51
    frames = frames_of(video)
    if suffix == ".mp4":
        assert frames.shape == (len(expected), 210, 160, 3)
    else:  # a GIF stores a run of identical frames once, with their durations added up
        assert frames.shape[1:] == (210, 160, 3) and len(frames) <= len(expected)
        assert gif_milliseconds(video) == len(expected) * 70  # 1/15 s in GIF's 10 ms units
    # Colour, and the picture is the game's (up to compression) away from the overlay.
    last = iio.imread(expected[-1])
    assert np.abs(frames[-1, :150].astype(int) - last[:150]).mean() < 8
    assert (np.ptp(frames[-1, :150].reshape(-1, 3), axis=0) > 0).all()
    assert f"video written to {video} ({len(expected)} frames)" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left


def test_overlay_draws_the_score_in_the_bottom_left_corner() -> None:
    rgb = np.zeros((210, 160, 3), np.uint8)
    labelled = draw_label(rgb, "game 1  score 42")
    assert labelled.shape == rgb.shape and labelled.dtype == np.uint8
    changed = np.argwhere(np.any(labelled != rgb, axis=2))
    assert len(changed) > 20
    assert changed[:, 0].min() > 180 and changed[:, 1].max() < 120  # rows near the bottom, left
    assert draw_label(rgb, "game 1  score 42").tobytes() == labelled.tobytes()  # deterministic
    assert not np.array_equal(draw_label(rgb, "game 1  score 43"), labelled)


def test_odd_frames_are_padded_to_even_for_h264() -> None:
    assert pad_even(np.ones((211, 161, 3), np.uint8)).shape == (212, 162, 3)
    even = np.ones((210, 160, 3), np.uint8)
    assert pad_even(even) is even


def bad(args: list[str], message: str, capsys) -> None:
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2
    assert message in err, err
    assert len(err.strip().splitlines()) == 1, err


def test_bad_video_paths(model: Path, tmp_path: Path, capsys) -> None:
    existing = tmp_path / "old.mp4"
    existing.write_bytes(b"keep me")
    bad(["evaluate", str(model), *SHORT, "--video", str(existing)], "already exists", capsys)
    assert existing.read_bytes() == b"keep me"
    bad(["evaluate", str(model), "--video", str(tmp_path / "v.avi")], "must end in .mp4", capsys)
    missing = tmp_path / "no" / "v.mp4"
    bad(["evaluate", str(model), "--video", str(missing)], "does not exist", capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.mp4"]
    bad(["evaluate", str(model), *SHORT, "--force"], "there is no --video", capsys)
    (tmp_path / "dir.mp4").mkdir()
    bad(
        ["evaluate", str(model), "--video", str(tmp_path / "dir.mp4"), "--force"],
        "is a directory",
        capsys,
    )


def test_force_replaces_an_existing_video_in_one_rename(model: Path, tmp_path: Path) -> None:
    existing = tmp_path / "old.mp4"
    existing.write_bytes(b"replace me")
    assert main(["evaluate", str(model), *SHORT, "--video", str(existing), "--force"]) == 0
    assert len(frames_of(existing)) > 2  # a real video now
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.mp4"]  # no partial file left
