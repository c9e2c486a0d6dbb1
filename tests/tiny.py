"""The tiny training run the end-to-end tests share (seconds on 2 cores, two evaluations), and
how they compare two runs' results."""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file

# The tiny run's settings; every end-to-end test's run is these with a few changed (tiny()).
TINY_SETTINGS: dict[str, int | str] = {
    "total_steps": 240,
    "warmup_steps": 40,
    "update_every": 4,
    "target_update": 50,
    "eval_every": 120,
    "eval_games": 1,
    "eval_max_frames": 600,
    "buffer_size": 500,
    "batch_size": 8,
    "eps_decay": 100,
}


def tiny_settings(**changes: int | str | None) -> dict[str, int | str]:
    """TINY_SETTINGS with ``changes`` (None: left at the preset's value)."""
    merged = {**TINY_SETTINGS, **changes}
    return {k: v for k, v in merged.items() if v is not None}


def tiny(**changes: int | str | None) -> list[str]:
    """The tiny run's flags with ``changes`` (``eval_every=100``; None drops a flag)."""
    flags = []
    for key, value in tiny_settings(**changes).items():
        flags += ["--" + key.replace("_", "-"), str(value)]
    return flags


TINY_RUN = tiny()

# The tiny PQN run: 16-step rollouts (with 1 env, 4 minibatches of 4), evaluations every 64 steps.
TINY_PQN = [
    "--algo", "pqn",
    "--rollout-steps", "16",
    "--minibatches", "4",
    "--eval-every", "64",
    "--eval-games", "1",
    "--eval-max-frames", "400",
    "--eps-decay", "100",
    "--quiet",
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
