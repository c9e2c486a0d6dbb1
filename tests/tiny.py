"""The tiny training run the end-to-end tests share (seconds on 2 cores, two evaluations), and
how they compare two runs' results."""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file

TINY_RUN = [
    "--total-steps", "240",
    "--warmup-steps", "40",
    "--update-every", "4",
    "--target-update", "50",
    "--eval-every", "120",
    "--eval-games", "1",
    "--eval-max-frames", "600",
    "--buffer-size", "500",
    "--batch-size", "8",
    "--eps-decay", "100",
]  # fmt: skip


def weights(path: Path) -> dict[str, bytes]:
    """A model file's tensors as bytes: equal only if bit-identical."""
    return {k: v.numpy().tobytes() for k, v in load_file(path).items()}


def same_run(a: Path, b: Path) -> None:
    """The same rewards.txt and the same weights in every model file."""
    assert (a / "rewards.txt").read_text() == (b / "rewards.txt").read_text()
    models = sorted(p.name for p in a.glob("model_*"))
    assert models == sorted(p.name for p in b.glob("model_*"))
    for name in models:
        assert weights(a / name) == weights(b / name), name
