"""Evaluation videos: the games as played, at the console's resolution, in colour, with the score.

Frames are the ALE screen (210x160 RGB for every game), one per agent step (the last emulator
frame of each 4-frame skip) plus the first frame of each game, so 15 frames a second is real
time. ``.mp4`` (H.264 through the ffmpeg binary that imageio-ffmpeg ships) streams to disk;
``.gif`` (Pillow) keeps the palette-reduced frames in memory until the end, so suits short clips;
its delays count in 10 ms, so a frame lasts 70 ms, and a run of identical frames is stored once.
The file is written under a temporary name and renamed when complete: an interrupted evaluation
leaves no half-written video behind, and an existing file is replaced only when asked
(``overwrite``: ``evaluate --video FILE --force``), in one rename.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from atari_dqn.artifacts import ArtifactError

VIDEO_SUFFIXES = (".mp4", ".gif")
FPS = 15  # agent steps per second: 60 emulator frames / frame skip 4 = real time


class VideoError(ArtifactError):
    """A video path a user gave is not usable; the message is one line."""


def check_video_path(path: Path, *, overwrite: bool = False) -> Path:
    """Refuse (VideoError) an unknown format, an existing file (unless ``overwrite``; never a
    directory), or a missing directory."""
    path = Path(path)
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise VideoError(f"--video {path}: the name must end in .mp4 or .gif")
    if path.is_dir():
        raise VideoError(f"--video {path} is a directory")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise VideoError(f"--video {path} already exists; choose a new file name or pass --force")
    if not path.parent.is_dir():
        raise VideoError(f"--video {path}: directory {path.parent} does not exist")
    return path


def draw_label(rgb: np.ndarray, text: str) -> np.ndarray:
    """A copy of ``rgb`` with ``text`` in white on a black box at the bottom-left corner.

    Pillow's built-in font: no system font is needed.
    """
    from PIL import Image, ImageDraw, ImageFont

    image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x, y = 2, image.height - (bottom - top) - 3
    draw.rectangle((x - 1, y - 1, x + right - left + 1, y + bottom - top + 1), fill=(0, 0, 0))
    draw.text((x - left, y - top), text, fill=(255, 255, 255), font=font)
    return np.asarray(image)


def gif_frame_ms(fps: int) -> int:
    """GIF delays are in hundredths of a second: the nearest to 1/fps (70 ms for 15 fps)."""
    return 10 * max(1, round(100 / fps))


def pad_even(rgb: np.ndarray) -> np.ndarray:
    """Pad with black to even height and width (H.264 in yuv420p needs both even)."""
    h, w = rgb.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return rgb
    return np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)))


class VideoWriter:
    """A ``ScoredFrameSink`` (see evaluate.play) that writes one video of all the games.

    Use as a context manager: on success the video appears at ``path``; on an exception nothing
    does.
    """

    def __init__(self, path: Path, *, fps: int = FPS, overwrite: bool = False) -> None:
        self.path = check_video_path(path, overwrite=overwrite)
        self.overwrite = overwrite
        self.fps = fps
        self.frames = 0
        # Same directory (an atomic rename), same suffix (it picks the format), default mode.
        self._tmp = self.path.with_name(
            f".{self.path.stem}.{os.getpid()}.partial{self.path.suffix}"
        )
        self._mp4: Any = None  # imageio's ffmpeg writer, opened at the first frame
        self._gif: list[Any] = []  # PIL images in palette mode

    def __call__(self, game: int, frame: int, rgb: np.ndarray, score: float) -> None:
        del frame
        image = pad_even(draw_label(rgb, f"game {game + 1}  score {score:.0f}"))
        if self.path.suffix.lower() == ".gif":
            from PIL import Image

            self._gif.append(Image.fromarray(image).quantize(colors=256))
        else:
            if self._mp4 is None:
                import imageio.v2 as imageio

                # macro_block_size=1: keep 210x160 as is (the default 16 would resize to 224).
                self._mp4 = imageio.get_writer(
                    self._tmp,
                    format="FFMPEG",
                    mode="I",
                    fps=self.fps,
                    codec="libx264",
                    pixelformat="yuv420p",
                    macro_block_size=1,
                    ffmpeg_log_level="error",
                )
            self._mp4.append_data(image)
        self.frames += 1

    def close(self) -> None:
        """Finish the file and move it into place."""
        try:
            if self.frames == 0:
                raise VideoError(f"--video {self.path}: no frames were played")
            if self._mp4 is not None:
                self._mp4.close()
                self._mp4 = None
            if self._gif:
                first, *rest = self._gif
                first.save(
                    self._tmp,
                    format="GIF",
                    save_all=True,
                    append_images=rest,
                    duration=gif_frame_ms(self.fps),
                    loop=0,
                )
                self._gif = []
            if self.path.exists() and not self.overwrite:
                raise VideoError(f"--video {self.path} appeared while playing; not overwritten")
            os.replace(self._tmp, self.path)
        finally:
            self.discard()

    def discard(self) -> None:
        """Drop the partial file (after an error)."""
        if self._mp4 is not None:
            try:
                self._mp4.close()
            except Exception:  # noqa: BLE001 - best effort on an error path
                pass
            self._mp4 = None
        self._gif = []
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()
