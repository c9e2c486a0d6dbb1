"""TensorBoard scalars of a run, read back with TensorBoard's own reader."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from atari_dqn.cli import main
from atari_dqn.metrics import MetricsWriter
from tiny import TINY_RUN

# tests/test_cli.py's tiny run, with the progress bar on (TINY there ends with --quiet).
TINY = TINY_RUN
# Reports every 100 steps, at each evaluation (120, 240) and at the end (240).
REPORTS = [100, 120, 200, 240]
BASE_TAGS = {
    "charts/epsilon",
    "charts/SPS",
    "charts/episodic_return",
    "charts/episodic_length",
    "losses/td_loss",
    "losses/q_values",
    "eval/episodic_return",
}


def scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def steps(events: list[tuple[int, float]]) -> list[int]:
    return [step for step, _ in events]


def train_captured(args: list[str]) -> tuple[str, str]:
    """Run ``atari-dqn train ARGS``; its stdout and stderr (where tqdm draws)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert main(["train", *TINY, *args]) == 0
    return out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def uniform_run(tmp_path_factory) -> tuple[Path, str, str]:
    out = tmp_path_factory.mktemp("tb") / "uniform"
    stdout, stderr = train_captured(["--seed", "1", "--out", str(out)])
    return out, stdout, stderr


@pytest.fixture(scope="module")
def prioritized_run(tmp_path_factory) -> tuple[Path, str, str]:
    out = tmp_path_factory.mktemp("tb") / "prioritized"
    args = ["--quiet", "--replay", "prioritized", "--beta0", "0.4", "--seed", "1"]
    stdout, stderr = train_captured([*args, "--out", str(out)])
    return out, stdout, stderr


@pytest.mark.slow
def test_training_writes_cleanrl_tags_against_agent_steps(uniform_run) -> None:
    out = uniform_run[0]
    got = scalars(out)
    assert set(got) == BASE_TAGS  # no replay/* tags with uniform replay
    for tag in ("charts/epsilon", "losses/td_loss", "losses/q_values"):
        assert steps(got[tag]) == REPORTS, tag
    # Epsilon: 1 -> 0.1 linearly over 100 steps after the 40 of warm-up.
    assert [v for _, v in got["charts/epsilon"]] == pytest.approx([0.46, 0.28, 0.1, 0.1])
    # SPS is not measured over an interval that holds an evaluation.
    assert steps(got["charts/SPS"]) == [100, 200]
    assert all(v > 0 for _, v in got["charts/SPS"])
    # The evaluation tag holds exactly what rewards.txt holds.
    rewards = [line.split() for line in (out / "rewards.txt").read_text().splitlines()]
    assert got["eval/episodic_return"] == [(int(s), pytest.approx(float(v))) for _, s, v in rewards]
    # Finished training games are reported at the report that follows them.
    assert steps(got["charts/episodic_return"]) == steps(got["charts/episodic_length"])
    assert set(steps(got["charts/episodic_return"])) <= set(REPORTS)
    assert all(v >= 0 for _, v in got["charts/episodic_return"])
    assert all(0 < v <= 240 for _, v in got["charts/episodic_length"])


def test_progress_bar_shows_rate_eta_and_one_line_per_evaluation(uniform_run) -> None:
    _, stdout, err = uniform_run
    assert re.search(r"240/240 \[\d\d:\d\d<\d\d:\d\d, +[\d.]+(step/s|s/step)", err), err[-500:]
    assert "eps=" in err and "loss=" in err and "eval=" in err
    # tqdm.write: above the bar in a terminal, on stdout.
    assert len(re.findall(r"^eval +\d+ at step \d+: score", stdout, flags=re.M)) == 2


@pytest.mark.slow
def test_prioritized_replay_adds_beta_and_max_priority(prioritized_run) -> None:
    got = scalars(prioritized_run[0])
    assert set(got) == BASE_TAGS | {"replay/beta", "replay/max_priority"}
    # beta anneals linearly from 0.4 to 1 over the whole run (240 steps).
    expected = [0.4 + 0.6 * s / 240 for s in REPORTS]
    assert got["replay/beta"] == [
        (s, pytest.approx(b)) for s, b in zip(REPORTS, expected, strict=True)
    ]
    assert steps(got["replay/max_priority"]) == REPORTS
    assert all(v >= 1.0 for _, v in got["replay/max_priority"])  # starts at 1, never falls


def test_quiet_has_no_progress_bar_but_still_one_line_per_evaluation(prioritized_run) -> None:
    _, stdout, stderr = prioritized_run
    assert "step/s" not in stdout + stderr and "240/240" not in stdout + stderr
    assert len(re.findall(r"^eval +\d+ at step \d+: score", stdout, flags=re.M)) == 2


# ---------------------------------------------------------------------- MetricsWriter alone
def test_each_tag_is_written_once_per_step_and_only_forward(tmp_path: Path) -> None:
    with MetricsWriter(tmp_path) as writer:
        writer.scalars(100, {"a": 1.0, "b": None})
        writer.scalars(100, {"a": 2.0})  # same step again: ignored
        writer.scalars(50, {"a": 3.0})  # backwards: ignored
        writer.scalars(200, {"a": 4.0, "b": 5.0})
    got = scalars(tmp_path)
    assert got == {"a": [(100, 1.0), (200, 4.0)], "b": [(200, 5.0)]}


def test_resumed_writer_leaves_no_gap_and_no_duplicate(tmp_path: Path) -> None:
    # A run checkpoints at step 300, writes 400 and 500, and is killed.
    with MetricsWriter(tmp_path) as first:
        for step in (100, 200, 300, 400, 500):
            first.scalars(step, {"x": float(step)})
    # Resumed from the checkpoint: steps up to 300 are kept, 400 and 500 are written anew.
    with MetricsWriter(tmp_path, start_step=300) as resumed:
        for step in (200, 300, 400, 500, 600):
            resumed.scalars(step, {"x": -float(step)})
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 2
    assert scalars(tmp_path)["x"] == [
        (100, 100.0), (200, 200.0), (300, 300.0), (400, -400.0), (500, -500.0), (600, -600.0)
    ]  # fmt: skip


@pytest.mark.slow
def test_force_replaces_the_event_files(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["train", *TINY, "--quiet", "--total-steps", "120", "--out", str(out)]
    assert main(args) == 0
    assert main([*args, "--force"]) == 0
    assert len(list(out.glob("events.out.tfevents.*"))) == 1
    assert steps(scalars(out)["charts/epsilon"]) == [100, 120]
