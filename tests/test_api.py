"""The Python API: the same run as `atari-dqn train`, from a Config; scoring a run's model."""

from __future__ import annotations

from pathlib import Path

import pytest

import atari_dqn
from atari_dqn.cli import main
from tiny import TINY_RUN


def test_import_is_cheap_and_names_resolve() -> None:
    assert atari_dqn.__version__
    assert set(atari_dqn.__all__) >= {"Config", "start_run", "resume_run", "score_model"}
    with pytest.raises(AttributeError):
        _ = atari_dqn.no_such_name


def test_start_run_from_a_config_equals_the_cli_run(tmp_path: Path) -> None:
    config = atari_dqn.preset_config("seed").replace(
        total_steps=240, warmup_steps=40, target_update=50, eval_every=120, eval_games=1,
        eval_max_frames=600, buffer_size=500, batch_size=8, eps_decay=100, seed=4,
    )  # fmt: skip
    assert atari_dqn.start_run(config, str(tmp_path / "api"), quiet=True) == 0
    assert main(["train", *TINY_RUN, "--seed", "4", "--quiet", "--out", str(tmp_path / "cli")]) == 0
    for name in ("rewards.txt", "config.toml"):
        assert (tmp_path / "api" / name).read_text() == (tmp_path / "cli" / name).read_text()
    score = atari_dqn.score_model(tmp_path / "api", which="best", episodes=1)
    assert score.model.name == "model_best.safetensors" and len(score.scores) == 1
    assert score.env["eval_max_frames"] == 600 and score.notes == []
    with pytest.raises(atari_dqn.UsageError):
        atari_dqn.start_run(config, tmp_path / "api")  # holds a run already
