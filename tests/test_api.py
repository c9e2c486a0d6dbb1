"""The Python API: the same run as `atari-dqn train`, from a Config; scoring a run's model."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest

import atari_dqn
from atari_dqn.cli import main
from tiny import TINY_RUN, tiny_settings


def test_import_is_cheap_and_names_resolve() -> None:
    assert atari_dqn.__version__
    assert set(atari_dqn.__all__) >= {
        "Config", "train", "start_run", "resume_run", "score_model", "load_policy",
    }  # fmt: skip
    with pytest.raises(AttributeError):
        _ = atari_dqn.no_such_name


@pytest.mark.slow
def test_start_run_from_a_config_equals_the_cli_run(tmp_path: Path) -> None:
    config = atari_dqn.preset_config("course").replace(
        total_steps=240, warmup_steps=40, target_update=50, eval_every=120, eval_games=1,
        eval_max_frames=600, buffer_size=500, batch_size=8, eps_decay=100, seed=4,
    )  # fmt: skip
    assert atari_dqn.train(config, str(tmp_path / "api")) == tmp_path / "api"
    assert main(["train", *TINY_RUN, "--seed", "4", "--quiet", "--out", str(tmp_path / "cli")]) == 0
    for name in ("rewards.txt", "config.toml"):
        assert (tmp_path / "api" / name).read_text() == (tmp_path / "cli" / name).read_text()
    score = atari_dqn.score_model(tmp_path / "api", which="best", episodes=1)
    assert score.model.name == "model_best.safetensors" and len(score.scores) == 1
    assert score.env["eval_max_frames"] == 600 and score.notes == []
    with pytest.raises(atari_dqn.UsageError):
        atari_dqn.start_run(config, tmp_path / "api")  # holds a run already


TINY_CONFIG = (
    'atari_dqn.preset_config("double").replace('
    + ", ".join(f"{k}={v!r}" for k, v in tiny_settings(seed=1).items())
    + ")"
)


def readme_python_snippet() -> str:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    [snippet] = [b for b in blocks if "atari_dqn.load_policy" in b]
    return snippet


@pytest.mark.slow
def test_the_readmes_python_snippet_runs(tmp_path: Path, monkeypatch, capsys) -> None:
    """The README's snippet, verbatim but for a tiny run instead of 300k steps."""
    snippet = readme_python_snippet()
    real = 'atari_dqn.preset_config("double").replace(seed=1, total_steps=300_000)'
    assert real in snippet  # the README still says what this test replaces
    monkeypatch.chdir(tmp_path)
    exec(compile(snippet.replace(real, TINY_CONFIG), "README.md", "exec"), {})  # noqa: S102
    first, second = capsys.readouterr().out.splitlines()[-2:]  # after the run's own lines
    run_dir = tmp_path / "runs" / "double-s1"
    best_step = json_step(run_dir / "model_best.safetensors")
    assert first == f"('NOOP', 'FIRE', 'RIGHT', 'LEFT') trained for {best_step} steps"
    scores, lengths = (ast.literal_eval(part) for part in second.replace("] [", "]|[").split("|"))
    assert len(scores) == len(lengths) == 3 and all(0 < n <= 600 // 4 for n in lengths)
    # The policy plays exactly the games `atari-dqn evaluate` plays.
    assert atari_dqn.score_model(run_dir, which="best", episodes=3).scores == scores


def json_step(path: Path) -> str:
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as fh:
        return fh.metadata()["step"]


@pytest.mark.slow
def test_a_policy_acts_on_one_stack_or_a_batch(tmp_path: Path) -> None:
    assert main(["train", *TINY_RUN, "--quiet", "--out", str(tmp_path / "r")]) == 0
    policy = atari_dqn.load_policy(tmp_path / "r")
    assert policy.path.name == "model_002.safetensors"  # the newest evaluation's, as evaluate
    assert policy.env["eval_max_frames"] == 600 and policy.notes == []
    stacks = np.random.default_rng(0).integers(0, 255, (5, 4, 84, 84), dtype=np.uint8)
    batch = policy.act(stacks)
    assert batch.shape == (5,) and all(0 <= a < len(policy.actions) for a in batch)
    assert [int(policy.act(s)) for s in stacks] == batch.tolist()  # greedy: the same actions
    with pytest.raises(ValueError, match="expected frame stacks"):
        policy.act(stacks[:, :, :10])
