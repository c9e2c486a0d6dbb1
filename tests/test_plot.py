"""`atari-dqn plot`: grouping by configuration, mean and bootstrap band, the table, bad input."""

from __future__ import annotations

import csv
import dataclasses
import itertools
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from rliable import library as rly
from rliable import metrics as rly_metrics

from atari_dqn.artifacts import GAMES_HEADER, RunDir
from atari_dqn.cli import main
from atari_dqn.config import Config, to_toml
from atari_dqn.host import session_record
from atari_dqn.plot import (
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    TABLE_COLUMNS,
    Group,
    PlotError,
    View,
    bootstrap_ci,
    difference_ci,
    interquartile_mean,
    load_run,
    mean_intervals,
    parse_thresholds,
    plot_runs,
    probability_of_improvement,
    summary_row,
    threshold_columns,
    threshold_name,
)

# Two configurations (uniform vs prioritized replay) x three seeds, of different lengths (and so
# different total_steps, which does not split a group). Scores are per evaluation, every 1000.
RUNS = {
    ("uniform", 1): [0.0, 2.0, 3.0],
    ("uniform", 2): [1.0, 4.0, 6.0, 5.0],
    ("uniform", 3): [0.0, 1.0],  # still running
    ("prioritized", 1): [1.0, 3.0, 8.0],
    ("prioritized", 2): [0.0, 2.0, 4.0],
    ("prioritized", 3): [2.0, 2.0, 9.0],
}


def make_run(path: Path, replay: str, seed: int, scores: list[float]) -> Path:
    path.mkdir(parents=True)
    # A little under the last evaluation's step: these runs are complete (see the train metric's
    # trailing window).
    config = Config(
        replay=replay, seed=seed, total_steps=1000 * len(scores) - 7 * seed, eval_every=1000
    )
    (path / "config.toml").write_text(to_toml(config))
    lines = [f"{i:3d} {1000 * i:8d} {s:.1f}\n" for i, s in enumerate(scores, start=1)]
    (path / "rewards.txt").write_text("".join(lines))
    return path


@pytest.fixture
def runs(tmp_path: Path) -> list[Path]:
    return [
        make_run(tmp_path / "runs" / f"{replay}-s{seed}", replay, seed, scores)
        for (replay, seed), scores in RUNS.items()
    ]


def read_csv(path: Path) -> dict[str, dict[str, str]]:
    with path.open() as fh:
        return {row["group"]: row for row in csv.DictReader(fh)}


def test_plot_writes_png_of_the_size_and_csv_of_hand_computed_numbers(
    runs: list[Path], tmp_path: Path, capsys
) -> None:
    png = tmp_path / "curves.png"
    assert main(["plot", *map(str, runs), "-o", str(png), "--size", "640x480"]) == 0
    image = iio.imread(png)
    assert image.shape[:2] == (480, 640)
    assert image.std() > 0  # something is drawn
    table = read_csv(tmp_path / "curves.csv")
    assert list(table) == ["replay=uniform", "replay=prioritized"]
    # uniform finals: 3 (s1), 5 (s2, last of 4), 1 (s3, last of 2); best 6 (s2 at step 3000).
    u = table["replay=uniform"]
    assert (u["runs"], u["seeds"]) == ("3", "1 2 3")
    assert (u["final_step_min"], u["final_step_max"]) == ("2000", "4000")
    finals = [3.0, 5.0, 1.0]
    mean = sum(finals) / 3  # 3.0
    std = (sum((x - mean) ** 2 for x in finals) / 3) ** 0.5  # population std: sqrt(8/3)
    assert float(u["final_mean"]) == pytest.approx(3.0)
    assert float(u["final_std"]) == pytest.approx(std, abs=1e-4)
    assert float(u["final_std"]) == pytest.approx(1.6330, abs=1e-4)
    assert float(u["best"]) == 6.0
    assert float(u["iqm"]) == pytest.approx(3.0)  # 3 seeds: floor(3/4) = 0 cut, the mean
    p = table["replay=prioritized"]
    assert float(p["final_mean"]) == pytest.approx(7.0)  # (8 + 4 + 9) / 3
    assert float(p["final_std"]) == pytest.approx((14 / 3) ** 0.5, abs=1e-4)
    assert float(p["best"]) == 9.0
    # The uniform runs end at 2000, 3000 and 4000: finals at other steps are not compared.
    assert p["final_diff"] == p["final_diff_low"] == p["final_diff_high"] == ""
    assert u["final_diff"] == u["final_diff_low"] == u["final_diff_high"] == ""
    assert p["final_p_improvement"] == u["final_p_improvement"] == ""
    out = capsys.readouterr().out
    assert "replay=uniform" in out and "3.0 ± 1.6" in out and "7.0 ± 2.2" in out
    assert "final - replay=uniform [95% CI]" in out
    prioritized = next(line for line in out.splitlines() if line.startswith("replay=prior"))
    assert prioritized.rstrip().endswith("not compared: finals at 2000, 3000, 4000")


def test_difference_of_finals_at_one_step_against_the_exact_bootstrap(
    tmp_path: Path, capsys
) -> None:
    finals = {"uniform": [3.0, 5.0, 1.0], "prioritized": [8.0, 4.0, 9.0]}
    paths = [
        make_run(tmp_path / f"{replay}-s{seed}", replay, seed, [0.0, 2.0, final])
        for replay, scores in finals.items()
        for seed, final in enumerate(scores, start=1)
    ]
    png = tmp_path / "diff.png"
    assert main(["plot", *map(str, paths), "-o", str(png)]) == 0
    table = read_csv(tmp_path / "diff.csv")
    u, p = table["replay=uniform"], table["replay=prioritized"]
    # Prioritized minus uniform, the first group: 7 - 3; the first group's own cells empty.
    assert float(p["final_diff"]) == pytest.approx(4.0)
    assert u["final_diff"] == u["final_diff_low"] == u["final_diff_high"] == ""
    # Its interval against the exact bootstrap distribution, enumerated: every resample of 3
    # of each group's finals, equally likely (27 x 27 pairs): [1, 7]. 1000 resamples land within
    # 0.5 of it; resampling one group only would give [1.9, 5.8] or [2.4, 5.6].
    a = [sum(x) / 3 for x in itertools.product(finals["prioritized"], repeat=3)]
    b = [sum(x) / 3 for x in itertools.product(finals["uniform"], repeat=3)]
    exact = np.percentile([x - y for x in a for y in b], [2.5, 97.5])
    assert float(p["final_diff_low"]) == pytest.approx(exact[0], abs=0.5)
    assert float(p["final_diff_high"]) == pytest.approx(exact[1], abs=0.5)
    # rliable's probability of improvement: a prioritized final beats a uniform one in 8 of the
    # 9 pairs (see test_probability_of_improvement_by_hand).
    assert float(p["final_p_improvement"]) == pytest.approx(8 / 9, abs=1e-4)
    assert u["final_p_improvement"] == ""
    out = capsys.readouterr().out
    assert "P(final > replay=uniform)" in out
    prioritized = next(ln for ln in out.splitlines() if "prior" in ln)
    assert "+4.0 [" in prioritized and "  0.89  " in prioritized


def test_curve_is_the_mean_of_the_runs_that_reached_each_step(runs: list[Path]) -> None:
    group = Group("u", tuple(load_run(p) for p in runs[:3]))
    steps, mean, low, high = group.curve()
    assert steps.tolist() == [1000, 2000, 3000, 4000]
    # 1000: (0+1+0)/3; 2000: (2+4+1)/3; 3000: seeds 1 and 2 only; 4000: seed 2 only.
    assert mean == pytest.approx([1 / 3, 7 / 3, 4.5, 5.0])
    assert np.all(low <= mean) and np.all(mean <= high)
    assert (low[-1], high[-1]) == (5.0, 5.0)  # one run: no spread
    assert (low[2], high[2]) == pytest.approx((3.0, 6.0))  # {3, 6}: the band spans the seeds
    again = group.curve()
    assert all(np.array_equal(a, b) for a, b in zip(again, (steps, mean, low, high), strict=True))


def test_evaluations_a_few_steps_late_meet_at_the_step_they_were_due(tmp_path: Path) -> None:
    # With 8 envs the evaluation due at 1000 comes at the first step >= 1000: 1004 in one run,
    # 1007 in another. The group's mean is at 1000 and 2000, over both runs; each run's own
    # points (and the table's final steps) stay where they were.
    paths = [make_run(tmp_path / f"s{seed}", "uniform", seed, [0.0, 0.0]) for seed in (1, 2)]
    (paths[0] / "rewards.txt").write_text("  1 1004 2.0\n  2 2004 6.0\n")
    (paths[1] / "rewards.txt").write_text("  1 1007 4.0\n  2 2007 8.0\n")
    group = Group("u", tuple(load_run(p) for p in paths))
    steps, mean, low, high = group.curve()
    assert steps.tolist() == [1000, 2000]
    assert mean == pytest.approx([3.0, 7.0])  # (2 + 4) / 2, (6 + 8) / 2
    assert (low[0], high[0]) == pytest.approx((2.0, 4.0))  # the band spans the two seeds
    assert View().points(group.runs[0])[0].tolist() == [1004, 2004]
    row = summary_row(group)
    assert (row["final_step_min"], row["final_step_max"]) == (2004, 2007)


def rliable_interval(scores: Any, func: Any, seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """rliable called directly, as its README does: percentile intervals, 1000 reps. rliable 1.2
    draws from NumPy's global generator whatever its random_state, so that is what is seeded."""
    np.random.seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # arch: random_state is deprecated
        _, intervals = rly.get_interval_estimates(
            {"x": scores}, func, reps=BOOTSTRAP_RESAMPLES, random_state=np.random.RandomState(seed)
        )
    return intervals["x"]


def test_bootstrap_band_is_rliables_interval_of_the_mean() -> None:
    values = np.array([0.0, 10.0])
    # Each resample of 2 draws has mean 0 (1/4), 5 (1/2) or 10 (1/4): 2.5% and 97.5% -> 0, 10.
    low, high = bootstrap_ci(values)
    assert (low, high) == (0.0, 10.0)
    many = np.arange(20.0)
    low, high = bootstrap_ci(many)
    se = many.std() / np.sqrt(len(many))
    assert low == pytest.approx(many.mean() - 1.96 * se, abs=0.5)
    assert high == pytest.approx(many.mean() + 1.96 * se, abs=0.5)
    # Exactly rliable's stratified bootstrap of the runs (one task), same seed and reps.
    direct = rliable_interval(
        many.reshape(-1, 1), lambda x: np.array([rly_metrics.aggregate_mean(x)])
    )
    assert (low, high) == (direct[0, 0], direct[1, 0])
    assert bootstrap_ci(many) == (low, high)  # reproducible: a fixed seed
    assert bootstrap_ci(many, seed=1) != (low, high)
    # ... and the caller's global generator is as it was.
    np.random.seed(7)
    expected = np.random.random()
    np.random.seed(7)
    bootstrap_ci(many)
    assert np.random.random() == expected
    assert bootstrap_ci(np.array([4.0])) == (4.0, 4.0)  # one run: no spread


def test_curve_bands_go_to_rliable_a_matrix_per_number_of_runs() -> None:
    # Columns of 3 runs as one (runs, 1, columns) matrix: each column's runs resampled on their
    # own; equal columns get one band; a column of one run is its value.
    columns = [np.array([1.0, 5, 2]), np.array([0.0, 9, 4]), np.array([7.0]), np.array([1.0, 5, 2])]
    low, high = mean_intervals(columns)
    matrix = np.array([[1.0, 0.0], [5, 9], [2, 4]])[:, None, :]
    direct = rliable_interval(matrix, rly_metrics.aggregate_mean)
    assert low.tolist() == [direct[0, 0], direct[0, 1], 7.0, direct[0, 0]]
    assert high.tolist() == [direct[1, 0], direct[1, 1], 7.0, direct[1, 0]]


def test_difference_interval_by_hand() -> None:
    # [4, 4] minus [0, 2]: the baseline's resample means are 0, 1, 2 (1/4, 1/2, 1/4), so the
    # differences 4, 3, 2: the 2.5% and 97.5% points are 2 and 4.
    assert difference_ci(np.array([4.0, 4.0]), np.array([0.0, 2.0])) == (3.0, 2.0, 4.0)
    # One run each: no spread to resample.
    assert difference_ci(np.array([5.0]), np.array([2.0])) == (3.0, 3.0, 3.0)
    # Two groups of the same values: 0, and an interval around it that holds it.
    diff, low, high = difference_ci(np.array([1.0, 2, 3]), np.array([1.0, 2, 3]))
    assert diff == 0.0 and low < 0 < high
    # Exactly rliable's interval of a metric of two groups (each resampled on its own).
    a, b = np.array([8.0, 4.0, 9.0, 6.5]), np.array([3.0, 5.0, 1.0])
    direct = rliable_interval(
        [a.reshape(-1, 1), b.reshape(-1, 1)],
        lambda x, y: np.array([rly_metrics.aggregate_mean(x) - rly_metrics.aggregate_mean(y)]),
    )
    assert difference_ci(a, b) == (pytest.approx(a.mean() - b.mean()), direct[0, 0], direct[1, 0])


def test_probability_of_improvement_by_hand() -> None:
    # The share of (run of a, run of b) pairs where a's is higher, ties counting half.
    # 8 beats 3, 5, 1; 4 beats 3, 1; 9 beats all three: 8 of 9 pairs.
    a, b = np.array([8.0, 4.0, 9.0]), np.array([3.0, 5.0, 1.0])
    assert probability_of_improvement(a, b) == pytest.approx(8 / 9)
    assert probability_of_improvement(b, a) == pytest.approx(1 / 9)
    assert (
        probability_of_improvement(np.array([2.0, 3]), np.array([2.0, 1])) == 3.5 / 4
    )  # (2, 2) a tie
    assert probability_of_improvement(b, b) == 0.5
    expected = rly_metrics.probability_of_improvement(a.reshape(-1, 1), b.reshape(-1, 1))
    assert probability_of_improvement(a, b) == expected


def test_one_group_has_no_difference_column(runs: list[Path], tmp_path: Path, capsys) -> None:
    assert main(["plot", *map(str, runs[:3]), "-o", str(tmp_path / "u.png")]) == 0
    out = capsys.readouterr().out
    assert "CI]" not in out and "P(final" not in out
    [row] = read_csv(tmp_path / "u.csv").values()
    assert row["final_diff"] == row["final_diff_low"] == row["final_diff_high"] == ""
    assert row["final_p_improvement"] == ""


def test_interquartile_mean_by_hand() -> None:
    assert interquartile_mean(np.array([1.0, 2.0, 3.0, 100.0])) == 2.5  # mean of 2, 3
    # 8 values: drop 2 at each end -> mean(3, 4, 5, 6) = 4.5, whatever the extremes.
    eight = np.array([-50, 1, 3, 4, 5, 6, 7, 90.0])
    assert interquartile_mean(eight) == 4.5
    assert interquartile_mean(np.random.default_rng(0).permutation(eight)) == 4.5
    assert interquartile_mean(np.array([4.0])) == 4.0
    assert interquartile_mean(np.array([3.0, 5.0, 1.0])) == 3.0  # fewer than 4: the mean
    assert interquartile_mean(eight) == rly_metrics.aggregate_iqm(eight.reshape(-1, 1))


def test_label_by_and_default_label(runs: list[Path], tmp_path: Path) -> None:
    # One group only: labelled by its preset.
    png = tmp_path / "one.png"
    assert main(["plot", *map(str, runs[:3]), "-o", str(png)]) == 0
    assert list(read_csv(tmp_path / "one.csv")) == ["preset=course"]
    png = tmp_path / "two.png"
    assert main(["plot", *map(str, runs), "-o", str(png), "--label-by", "replay,preset"]) == 0
    assert list(read_csv(tmp_path / "two.csv")) == [
        "replay=uniform, preset=course",
        "replay=prioritized, preset=course",
    ]


def test_whole_run_beta_annealing_groups_however_it_was_saved(tmp_path: Path) -> None:
    a = make_run(tmp_path / "a", "prioritized", 1, [1.0])
    b = make_run(tmp_path / "b", "prioritized", 2, [3.0])
    text = (b / "config.toml").read_text().replace("beta_steps = 0", "beta_steps = 986")
    (b / "config.toml").write_text(text)  # total_steps = 986: "0 = the whole run", resolved
    assert main(["plot", str(a), str(b), "-o", str(tmp_path / "c.png")]) == 0
    assert read_csv(tmp_path / "c.csv")["preset=course"]["runs"] == "2"


def test_a_uniform_replay_run_extended_past_its_first_length_groups_with_its_seeds(
    tmp_path: Path,
) -> None:
    # Run b was started for 150k steps and continued: its config keeps beta_steps = 150000,
    # which uniform replay never reads; with prioritized replay it is a real difference.
    for replay, groups in [("uniform", 1), ("prioritized", 2)]:
        a = make_run(tmp_path / replay / "a", replay, 1, [1.0])
        b = make_run(tmp_path / replay / "b", replay, 2, [3.0])
        text = (b / "config.toml").read_text().replace("beta_steps = 0", "beta_steps = 150000")
        (b / "config.toml").write_text(text)
        png = tmp_path / replay / "c.png"
        assert main(["plot", str(a), str(b), "-o", str(png), "--label-by", "replay"]) == (
            0 if groups == 1 else 2
        )
        if groups == 1:
            assert read_csv(png.with_suffix(".csv"))["replay=uniform"]["runs"] == "2"


def test_groups_and_labels_leave_out_what_a_runs_algorithm_does_not_use(tmp_path: Path) -> None:
    pqn = Config(algo="pqn", layer_norm=True, total_steps=2000, eval_every=1000)
    runs = []
    for name, config in [
        ("dqn", Config(total_steps=2000, eval_every=1000)),
        # beta_steps (prioritized replay's) differs: not a PQN setting, one group
        ("pqn-a", pqn.replace(seed=1, beta_steps=2000)),
        ("pqn-b", pqn.replace(seed=2)),
    ]:
        run = tmp_path / name
        run.mkdir()
        (run / "config.toml").write_text(to_toml(config))
        (run / "rewards.txt").write_text("  1     1000 1.0\n  2     2000 2.0\n")
        runs.append(str(run))
    assert main(["plot", *runs, "-o", str(tmp_path / "c.png")]) == 0
    groups = read_csv(tmp_path / "c.csv")
    dqn, pqn_label = list(groups)
    assert groups[pqn_label]["runs"] == "2"
    assert "rollout_steps" not in dqn and "epochs" not in dqn  # PQN's alone
    assert "target_update" not in pqn_label and "beta_steps" not in pqn_label  # DQN's alone
    assert (dqn, pqn_label) == ("algo=dqn, layer_norm=False", "algo=pqn, layer_norm=True")
    # asked for by name, a DQN-only setting still labels only the runs that use it
    argv = ["plot", *runs, "--label-by", "algo,n_step", "-o", str(tmp_path / "d.png")]
    assert main(argv) == 0
    assert list(read_csv(tmp_path / "d.csv")) == ["algo=dqn, n_step=1", "algo=pqn"]


def test_an_apex_run_is_not_grouped_with_a_single_process_run(tmp_path: Path) -> None:
    a = make_run(tmp_path / "a", "uniform", 1, [1.0])
    b = make_run(tmp_path / "b", "uniform", 2, [3.0])
    with (b / "config.toml").open("a") as fh:  # as to_toml writes an --actors run's
        fh.write("\n[apex]\nactors = 2\nenvs_per_actor = 1\n")
    assert main(["plot", str(a), str(b), "-o", str(tmp_path / "c.png")]) == 0
    assert len(read_csv(tmp_path / "c.csv")) == 2


def test_runs_still_running_are_read_up_to_their_last_whole_line(tmp_path: Path) -> None:
    run = make_run(tmp_path / "r", "uniform", 1, [1.0, 2.0])
    with (run / "rewards.txt").open("a") as fh:
        fh.write("  3     30")  # being written right now
    loaded = load_run(run)
    assert loaded.steps.tolist() == [1000, 2000] and loaded.scores.tolist() == [1.0, 2.0]
    # A run with no evaluation yet is left out, with a note; the others are plotted.
    empty = make_run(tmp_path / "e", "uniform", 2, [])
    assert main(["plot", str(run), str(empty), "-o", str(tmp_path / "c.png")]) == 0


def test_existing_output_is_kept_unless_force(runs: list[Path], tmp_path: Path, capsys) -> None:
    png = tmp_path / "c.png"
    png.write_bytes(b"mine")
    bad(["plot", *map(str, runs), "-o", str(png)], "already exists; pass --force", capsys)
    assert png.read_bytes() == b"mine" and not (tmp_path / "c.csv").exists()
    (tmp_path / "d.csv").write_text("mine")
    bad(["plot", *map(str, runs), "-o", str(tmp_path / "d.png")], "d.csv already exists", capsys)
    assert main(["plot", *map(str, runs), "-o", str(png), "--force"]) == 0
    assert iio.imread(png).shape[:2] == (600, 1000)  # the default size


# ---------------------------------------------------------------------- bad input
def bad(args: list[str], message: str, capsys) -> None:
    code = main(args)
    captured = capsys.readouterr()
    assert code == 2
    assert message in captured.err, captured.err
    assert len(captured.err.strip().splitlines()) == 1, captured.err
    assert "Traceback" not in captured.err


def test_bad_plot_input(runs: list[Path], tmp_path: Path, capsys) -> None:
    out = ["-o", str(tmp_path / "x.png")]
    not_run = tmp_path / "notes"
    not_run.mkdir()
    no_rewards = tmp_path / "fresh"
    no_rewards.mkdir()
    (no_rewards / "config.toml").write_text(to_toml(Config()))
    empty = make_run(tmp_path / "empty", "uniform", 1, [])
    broken = make_run(tmp_path / "broken", "uniform", 1, [1.0])
    (broken / "rewards.txt").write_text("  1     1000 1.0\nnonsense\n")
    cases = [
        ([str(tmp_path / "missing")], "is not a run directory"),
        ([str(not_run)], "not a run directory (no config.toml)"),
        ([str(no_rewards)], "has no rewards.txt"),
        ([str(empty)], "nothing to plot"),
        ([str(broken)], "rewards.txt:2: not an 'index step score' line"),
        ([str(runs[0]), "--size", "big"], "expected WIDTHxHEIGHT"),
        ([str(runs[0]), "--size", "50x600"], "width 50 px is out of range"),
        ([str(runs[0]), "--label-by", "colour"], "--label-by colour: no such key"),
        ([*map(str, runs), "--label-by", "preset"], "does not tell the groups apart"),
    ]
    for args, message in cases:
        bad(["plot", *args, *out], message, capsys)
    bad(["plot", str(runs[0]), "-o", str(tmp_path / "x.svg")], "must be a .png file", capsys)
    bad(["plot", str(runs[0]), "-o", str(tmp_path / "no" / "x.png")], "does not exist", capsys)
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "x.csv").exists()


# ---------------------------------------------------------------------- games.csv: --metric, --x,
# --threshold. Training games (step, score, train_seconds) and evaluations by hand, window 1000.
GAMES = {
    # 1 minute per 1000 steps. Windows (0,1000]: {1,3} -> 2; (1000,2000]: {10,20} -> 15;
    # (2000,3000]: {30} -> 30. Trailing mean over (step-1000, step] at each game: 1, 2,
    # {3,10} 6.5, {10,20} 15 -> reaches 15 at step 1900, 114 s = 1.9 min.
    ("uniform", 1): [(300, 1, 18), (800, 3, 48), (1500, 10, 90), (1900, 20, 114), (2600, 30, 156)],
    # 2 minutes per 1000 steps. Windows: {0,10} -> 5 at 1000; {20} -> 20 at 2000. Trailing: 0,
    # {0,10} 5, then (400,1400] = {10,20} 15 (the game at 400 is out: the window is open on the
    # left) -> 15 at step 1400, 168 s = 2.8 min. Its games.csv also has an unterminated line.
    ("uniform", 2): [(400, 0, 48), (900, 10, 108), (1400, 20, 168)],
    # A game ending at 1000 is in (0,1000]: window 15 at 1000, 5 at 3000. Trailing {15} = 15 >= 15
    # at its first game: step 1000, 30 s = 0.5 min.
    ("uniform", 3): [(1000, 15, 30), (2500, 5, 75)],
    # Windows 16, 4; trailing {16} at 600 (36 s = 0.6 min).
    ("prioritized", 1): [(600, 16, 36), (1700, 4, 102)],
    # Windows 10, 25; trailing 10, then (200,1200] = {10,25} 17.5 at 1200 (72 s = 1.2 min).
    ("prioritized", 2): [(500, 10, 30), (1200, 25, 72)],
    # Windows 2, 14; trailing 2, (600,1600] = {2,14} 8: never reaches 15.
    ("prioritized", 3): [(800, 2, 48), (1600, 14, 96)],
}
# Evaluations at 1000, 2000, ...; first >= 5 (the clock: rows interpolated, (0, 0) first, beyond
# the last row the run's mean rate):
EVALS = {
    ("uniform", 1): [1.0, 6.0, 8.0],  # 2000: 114 + 100 * 42/700 = 120 s = 2.0 min
    ("uniform", 2): [2.0, 5.0],  # 2000 > 1400: 2000 * 168/1400 = 240 s = 4.0 min
    ("uniform", 3): [0.0, 0.0, 9.0],  # 3000 > 2500: 3000 * 75/2500 = 90 s = 1.5 min
    ("prioritized", 1): [0.0],  # never
    ("prioritized", 2): [7.0],  # 1000: 30 + 500 * 42/700 = 60 s = 1.0 min
    ("prioritized", 3): [3.0, 6.0],  # 2000 (no clock in the eval test: its games.csv removed)
}


def write_games(run: Path, rows: Sequence[tuple[int, float, float]], tail: str = "") -> None:
    lines = "".join(f"{step},{score:g},100,{seconds:.3f}\n" for step, score, seconds in rows)
    (run / "games.csv").write_text(GAMES_HEADER + lines + tail)


@pytest.fixture
def trained(tmp_path: Path) -> list[Path]:
    paths = []
    for (replay, seed), rows in GAMES.items():
        run = make_run(tmp_path / "t" / f"{replay}-s{seed}", replay, seed, EVALS[replay, seed])
        # uniform-s2: a game being written right now; read, it would put 99 in (1000, 2000].
        write_games(run, rows, tail="1800,99,100,2" if (replay, seed) == ("uniform", 2) else "")
        paths.append(run)
    return paths


def test_games_csv_is_read_up_to_its_last_whole_line_and_tells_minutes(trained) -> None:
    games = load_run(trained[1]).games
    assert games is not None
    assert games.steps.tolist() == [400, 900, 1400]  # not the unterminated 1800
    assert games.scores.tolist() == [0.0, 10.0, 20.0]
    assert games.seconds.tolist() == [48.0, 108.0, 168.0]
    # (0, 0) first: 200 -> 24 s; 650 -> 48 + 250 * 60/500 = 78 s; 1400 -> 168 s; beyond: the mean
    # rate 168/1400 s per step: 2100 -> 252 s.
    minutes = games.minutes(np.array([0, 200, 650, 1400, 2100]))
    assert minutes == pytest.approx([0.0, 0.4, 1.3, 2.8, 4.2])
    assert load_run(trained[1], games="no").games is None


def test_train_metric_points_are_window_means_at_the_window_ends(trained) -> None:
    u1, u2, u3 = (load_run(p) for p in trained[:3])
    view = View("train", "steps", 1000)
    steps, values = view.values(u1)
    assert steps.tolist() == [1000, 2000, 3000] and values.tolist() == [2.0, 15.0, 30.0]
    assert view.values(u3)[0].tolist() == [1000, 3000]  # (2000, 3000] only: no empty window
    assert view.values(u3)[1].tolist() == [15.0, 5.0]
    assert View("train", "steps", 2000).values(u1)[1].tolist() == [(1 + 3 + 10 + 20) / 4, 30.0]
    # x = minutes: 1000 -> 48 + 200 * 42/700 = 60 s; 2000 -> 120 s; 3000 > 2600: 3000 * 0.06 s.
    x, y = View("train", "minutes", 1000).points(u1)
    assert x == pytest.approx([1.0, 2.0, 3.0]) and y.tolist() == [2.0, 15.0, 30.0]
    # The group curve at the shared window ends: 1000: (2+5+15)/3; 2000: (15+20)/2; 3000: (30+5)/2.
    xs, mean, _, _ = Group("u", (u1, u2, u3)).curve(view)
    assert xs.tolist() == [1000, 2000, 3000] and mean == pytest.approx([22 / 3, 17.5, 17.5])
    assert "training-game" in view.ylabel and "1000" in view.ylabel
    assert "evaluation" in View().ylabel and "minutes" in View(x="minutes").xlabel
    # First reach of 15 (step, minutes): see GAMES.
    assert view.first_reach(u1, 15) == (1900, pytest.approx(1.9))
    assert view.first_reach(u2, 15) == (1400, pytest.approx(2.8))
    assert view.first_reach(u3, 15) == (1000, pytest.approx(0.5))
    assert view.first_reach(u3, 15.5) is None


def test_plot_train_metric_with_thresholds_end_to_end(trained, tmp_path: Path, capsys) -> None:
    png = tmp_path / "train.png"
    args = ["plot", *map(str, trained), "--metric", "train", "--window", "1000"]
    assert main([*args, "-o", str(png), "--threshold", "15", "--threshold", "100,15"]) == 0
    assert iio.imread(png).std() > 0
    with (tmp_path / "train.csv").open() as fh:
        header = next(csv.reader(fh))
    assert header == [*TABLE_COLUMNS, *threshold_columns(15), *threshold_columns(100)]
    assert threshold_columns(15)[:2] == ("reached_15", "steps_to_15_median")
    table = read_csv(tmp_path / "train.csv")
    u, p = table["replay=uniform"], table["replay=prioritized"]
    # Finals: the last window of each run: 30 (3000), 20 (2000), 5 (3000); best 30.
    assert float(u["final_mean"]) == pytest.approx(55 / 3, abs=1e-4)
    assert float(u["final_std"]) == pytest.approx(np.std([30.0, 20.0, 5.0]), abs=1e-4)
    assert (u["final_step_min"], u["final_step_max"], float(u["best"])) == ("2000", "3000", 30.0)
    assert (
        float(p["final_mean"]) == pytest.approx((4 + 25 + 14) / 3, abs=1e-4)
        and float(p["best"]) == 25
    )
    # 15 reached by all uniform runs at steps 1900, 1400, 1000 and minutes 1.9, 2.8, 0.5.
    assert u["reached_15"] == "3/3"
    assert (u["steps_to_15_median"], u["steps_to_15_min"], u["steps_to_15_max"]) == (
        "1400", "1000", "1900",
    )  # fmt: skip
    minutes = [float(u[f"minutes_to_15_{s}"]) for s in ("median", "min", "max")]
    assert minutes == pytest.approx([1.9, 0.5, 2.8])
    # Prioritized: 2 of 3 (steps 600 and 1200, 0.6 and 1.2 min); the median is of those two.
    assert p["reached_15"] == "2/3"
    assert (p["steps_to_15_median"], p["steps_to_15_min"], p["steps_to_15_max"]) == (
        "900", "600", "1200",
    )  # fmt: skip
    assert float(p["minutes_to_15_median"]) == pytest.approx(0.9)
    assert u["reached_100"] == "0/3" and u["steps_to_100_median"] == u["minutes_to_100_max"] == ""
    out = capsys.readouterr().out
    assert "1400 [1000-1900]" in out and "1.9 [0.5-2.8]" in out
    assert "not reached by 1/3; 2 did: 900 [600-1200]" in out
    assert "not reached by 1/3; 2 did: 0.9 [0.6-1.2]" in out
    assert "reached 100" in out and "not reached" in out
    # The table does not depend on the x axis.
    minutes_png = tmp_path / "train-minutes.png"
    assert main([*args, "-o", str(minutes_png), "--x", "minutes", "--threshold", "15"]) == 0
    again = read_csv(tmp_path / "train-minutes.csv")
    assert [again[g][c] for g in again for c in TABLE_COLUMNS] == [
        table[g][c] for g in table for c in TABLE_COLUMNS
    ]
    assert again["replay=prioritized"]["steps_to_15_median"] == "900"


def test_eval_threshold_steps_and_clock_minutes(trained, tmp_path: Path, capsys) -> None:
    (trained[5] / "games.csv").unlink()  # prioritized-s3: a run from before games.csv
    png = tmp_path / "eval.png"
    assert main(["plot", *map(str, trained), "-o", str(png), "--threshold", "5"]) == 0
    table = read_csv(tmp_path / "eval.csv")
    u, p = table["replay=uniform"], table["replay=prioritized"]
    # Uniform: first evaluation >= 5 at 2000, 2000, 3000; minutes 2.0, 4.0, 1.5 (see EVALS).
    assert (u["reached_5"], u["steps_to_5_median"], u["steps_to_5_min"]) == ("3/3", "2000", "2000")
    assert u["steps_to_5_max"] == "3000"
    minutes = [float(u[f"minutes_to_5_{s}"]) for s in ("median", "min", "max")]
    assert minutes == pytest.approx([2.0, 1.5, 4.0])
    # Prioritized: s1 never; s2 at 1000, s3 at 2000 but s3 has no clock: no minutes.
    assert (p["reached_5"], p["steps_to_5_median"]) == ("2/3", "1500")
    assert p["minutes_to_5_median"] == p["minutes_to_5_min"] == p["minutes_to_5_max"] == ""
    assert float(p["final_mean"]) == pytest.approx(
        (0 + 7 + 6) / 3, abs=1e-4
    )  # eval finals, as before
    out = capsys.readouterr().out
    assert "2000 [2000-3000]" in out and "2.0 [1.5-4.0]" in out
    assert "not reached by 1/3; 2 did: 1500 [1000-2000]" in out
    prioritized_line = next(line for line in out.splitlines() if "prioritized" in line)
    assert prioritized_line.rstrip().endswith(" -")
    # Without --threshold the CSV has exactly the columns it always had.
    assert main(["plot", *map(str, trained), "-o", str(tmp_path / "plain.png")]) == 0
    with (tmp_path / "plain.csv").open() as fh:
        assert next(csv.reader(fh)) == list(TABLE_COLUMNS)


def test_minutes_axis_averages_on_a_common_grid(tmp_path: Path) -> None:
    # a: 1 min per 1000 steps, evaluations 10, 20 at 1.0 and 2.0 min; b: 2 min per 1000 steps,
    # 30, 50 at 2.0 and 4.0 min. Grid: 0, 0.04, ..., 4.0 (b's last minute). Before 1.0 no run
    # covers it; [1, 2): a's 10; at 2.0: a's 20 and b's 30; (2, 4): b's 30; at 4.0: b's 50.
    a = make_run(tmp_path / "a", "uniform", 1, [10.0, 20.0])
    write_games(a, [(1000, 0, 60), (2000, 0, 120)])
    b = make_run(tmp_path / "b", "uniform", 2, [30.0, 50.0])
    write_games(b, [(1000, 0, 120), (2000, 0, 240)])
    group = Group("g", (load_run(a), load_run(b)))
    xs, mean, low, high = group.curve(View(x="minutes"))
    assert len(xs) == 76 and xs == pytest.approx(4 * np.arange(25, 101) / 100)
    expect = np.where(xs < 2, 10.0, np.where(xs < 4, 30.0, 50.0))
    expect[xs == 2.0] = 25.0
    assert mean == pytest.approx(expect)
    single = xs != 2.0
    assert np.array_equal(low[single], mean[single]) and np.array_equal(high[single], mean[single])
    assert (low[xs == 2.0][0], high[xs == 2.0][0]) == pytest.approx((20.0, 30.0))
    png = tmp_path / "m.png"
    assert main(["plot", str(a), str(b), "-o", str(png), "--x", "minutes"]) == 0
    assert iio.imread(png).shape[:2] == (600, 1000)


def usage_error(args: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_bad_games_and_flags(trained, runs: list[Path], tmp_path: Path, capsys) -> None:
    out = ["-o", str(tmp_path / "x.png")]
    header_only = make_run(tmp_path / "h", "uniform", 1, [1.0])
    write_games(header_only, [])
    broken = make_run(tmp_path / "broken", "uniform", 1, [1.0])
    write_games(broken, [(100, 1, 1)], tail="200;1;100;2\n")
    backwards = make_run(tmp_path / "backwards", "uniform", 1, [1.0])
    write_games(backwards, [(100, 1, 1), (50, 1, 2)])
    one = [str(trained[0])]
    cases = [
        ([*one, "--threshold", "abc"], "--threshold 'abc': not a number"),
        ([*one, "--threshold", "30,"], "--threshold '': not a number"),
        ([*one, "--threshold", "nan"], "--threshold 'nan': not a finite number"),
        ([*one, "--window", "0"], "--window 0: expected a positive number"),
        ([*one, "--window", "-5", "--metric", "train"], "--window -5: expected a positive"),
        ([str(runs[0]), "--metric", "train"], "has no games.csv"),
        ([str(runs[0]), "--metric", "train"], "--metric train needs it"),
        ([str(runs[0]), "--x", "minutes"], "--x minutes needs it"),
        ([str(header_only), "--metric", "train"], "nothing to plot: no run has a training game"),
        ([str(broken), "--metric", "train"], "games.csv:3: not a 'step,score,length,train_"),
        ([str(backwards), "--x", "minutes"], "games.csv:3: step 50 comes before step 100"),
    ]
    for args, message in cases:
        bad(["plot", *args, *out], message, capsys)
    usage_error(["plot", *one, *out, "--metric", "best"], "invalid choice: 'best'", capsys)
    usage_error(["plot", *one, *out, "--x", "hours"], "invalid choice: 'hours'", capsys)
    usage_error(["plot", *one, *out, "--window", "2.5"], "invalid int value: '2.5'", capsys)
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "x.csv").exists()
    # The same checks through the module.
    flags: list[dict[str, Any]] = [
        {"metric": "best"}, {"x": "hours"}, {"window": 0}, {"thresholds": [math.inf]},
    ]  # fmt: skip
    for kwargs in flags:
        with pytest.raises(PlotError):
            plot_runs([Path(one[0])], tmp_path / "x.png", **kwargs)
    assert parse_thresholds(["30", "12.5,30", " -1 "]) == (30.0, 12.5, -1.0)
    assert [threshold_name(t) for t in (30.0, 12.5, -1.0)] == ["30", "12.5", "-1"]
    assert not (tmp_path / "x.png").exists()
    # A run with games.csv is plotted as before when no flag needs it, even a broken one.
    assert main(["plot", str(broken), "-o", str(tmp_path / "ok.png")]) == 0


def test_minutes_at_a_given_rate_instead_of_the_runs_clocks(
    trained, runs: list[Path], tmp_path: Path, capsys
) -> None:
    # Uniform at 10 steps/s, prioritized at 20: minutes = step / rate / 60.
    rates = ["--steps-per-second", "10", "--steps-per-second", "replay=prioritized=20"]
    png = tmp_path / "eval.png"
    assert main(["plot", *map(str, trained), "-o", str(png), "--threshold", "5", *rates]) == 0
    table = read_csv(tmp_path / "eval.csv")
    u, p = table["replay=uniform"], table["replay=prioritized"]
    # Uniform first reaches 5 at 2000, 2000, 3000 (EVALS): 3.33, 3.33 and 5.0 minutes at 10/s.
    minutes = [float(u[f"minutes_to_5_{s}"]) for s in ("median", "min", "max")]
    assert minutes == pytest.approx([2000 / 600, 2000 / 600, 5.0], abs=1e-4)
    # Prioritized at 1000 and 2000 (s3 now has a clock too, the rate's): 0.83 and 1.67 at 20/s.
    minutes = [float(p[f"minutes_to_5_{s}"]) for s in ("median", "min", "max")]
    assert minutes == pytest.approx([1.25, 1000 / 1200, 2000 / 1200], abs=1e-4)
    out = capsys.readouterr().out
    footer = "minutes = agent steps / steps per second (replay=uniform: 10, replay=prioritized: 20)"
    assert footer + ", not the runs' clocks" in out
    # --metric train: uniform reaches 15 at steps 1900, 1400, 1000 (GAMES): 3.17, 2.33, 1.67 min.
    args = ["plot", *map(str, trained), "--metric", "train", "--window", "1000", *rates]
    assert main([*args, "-o", str(tmp_path / "t.png"), "--threshold", "15"]) == 0
    u = read_csv(tmp_path / "t.csv")["replay=uniform"]
    minutes = [float(u[f"minutes_to_15_{s}"]) for s in ("median", "min", "max")]
    assert minutes == pytest.approx([1400 / 600, 1000 / 600, 1900 / 600], abs=1e-4)
    # Runs without games.csv get a minutes axis from the rate alone: 1000 steps at 50/3 steps/s
    # is one minute.
    run = load_run(runs[0])
    assert run.games is None and not run.has_clock
    x, y = View(x="minutes", rated=True).points(dataclasses.replace(run, rate=50 / 3))
    assert x == pytest.approx([1.0, 2.0, 3.0]) and y.tolist() == [0.0, 2.0, 3.0]
    assert "not the runs' clocks" in View(x="minutes", rated=True).xlabel
    png = tmp_path / "m.png"
    assert main(["plot", *map(str, runs), "-o", str(png), "--x", "minutes", *rates]) == 0
    assert iio.imread(png).shape[:2] == (600, 1000)


def test_bad_rates(trained, tmp_path: Path, capsys) -> None:
    plot = ["plot", *map(str, trained), "-o", str(tmp_path / "x.png"), "--steps-per-second"]
    cases = [
        (["0"], "--steps-per-second '0': expected a positive number of agent steps per second"),
        (["fast"], "--steps-per-second 'fast': expected a positive number"),
        (["replay=uniform=nan"], "--steps-per-second 'replay=uniform=nan': expected a positive"),
        (["replay=nope=5"], "no group is labelled 'replay=nope'; the groups are: replay=uniform"),
        (["replay=uniform=5"], "no rate for the group 'replay=prioritized'"),
    ]
    for args, message in cases:
        bad([*plot, *args], message, capsys)
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "x.csv").exists()


def test_until_reads_each_run_as_it_stood_at_that_step(trained, tmp_path: Path, capsys) -> None:
    whole = load_run(trained[0])
    u1 = whole.until(1500)
    assert u1.steps.tolist() == [1000] and u1.scores.tolist() == [1.0]
    assert u1.games is not None and u1.games.steps.tolist() == [300, 800, 1500]
    assert u1.games.seconds.tolist() == [18.0, 48.0, 90.0]
    assert u1.config["total_steps"] == 1500 and whole.config["total_steps"] == 2993
    view = View("train", "steps", 1000)
    # Its last window, (1000, 2000], ends at 1500 as for a run that stopped there: {10}.
    assert view.values(u1)[0].tolist() == [1000, 2000] and view.values(u1)[1].tolist() == [2, 10]
    assert view.first_reach(whole, 15) == (1900, pytest.approx(1.9))
    assert view.first_reach(u1, 15) is None  # trailing 1, 2, 6.5 by step 1500
    assert whole.until(10_000).config["total_steps"] == 2993  # a shorter run keeps its length
    # An evaluation a few steps late (8 envs) counts at the step it was due at.
    late = dataclasses.replace(whole, steps=np.array([1000, 2003, 3005]))
    assert late.until(2000).steps.tolist() == [1000, 2003]
    assert late.until(1999).steps.tolist() == [1000]
    # A run known to be past a window's end shows that window even with no game after its end.
    p3 = load_run(trained[5])
    assert view.values(p3.until(1500))[0].tolist() == [1000] and p3.until(1500).passed == 1500
    # Cut before the run got there: as if it had stopped at 900, (0, 1000] its last window.
    assert view.values(p3.until(900))[1].tolist() == [2.0]
    # A run still training (at its game of 1600, of 5000 steps), cut beyond where it is: its
    # window (1000, 2000] is not shown, as without --until.
    running = dataclasses.replace(p3, config={**p3.config, "total_steps": 5000}).until(3000)
    assert running.passed == 0 and view.values(running)[0].tolist() == [1000]
    png = tmp_path / "until.png"
    args = ["plot", *map(str, trained), "--metric", "train", "--window", "1000", "-o", str(png)]
    assert main([*args, "--threshold", "15", "--until", "1500"]) == 0
    assert capsys.readouterr().err == ""  # prioritized-s3's window (0, 1000] ended: it was past it
    u = read_csv(tmp_path / "until.csv")["replay=uniform"]
    # uniform-s1 no longer reaches 15; s2 at 1400 and s3 at 1000 still do.
    assert u["reached_15"] == "2/3" and u["steps_to_15_median"] == "1200"
    # Finals: the windows ending at 2000 ({10}, {20}) and 1000 ({15}); best 20.
    assert u["final_step_max"] == "2000" and float(u["best"]) == 20
    bad([*args, "--force", "--until", "0"], "--until 0: expected a positive number", capsys)
    message = "nothing to plot: no run has a training game in its games.csv by step 200"
    bad([*args, "--force", "--until", "200"], message, capsys)


def test_a_run_still_training_shows_no_window_it_is_in(tmp_path: Path) -> None:
    run = make_run(tmp_path / "r", "uniform", 1, [1.0])
    write_games(run, [(400, 2, 10), (900, 4, 20), (1300, 6, 30)])
    view = View("train", "steps", 1000)

    def points(total_steps: int, games: list[tuple[int, float, float]] | None = None):
        if games is not None:
            write_games(run, games)
        config = Config(replay="uniform", seed=1, total_steps=total_steps)
        (run / "config.toml").write_text(to_toml(config))
        steps, values = view.values(load_run(run))
        return steps.tolist(), values.tolist()

    # (0, 1000]: {2, 4}; (1000, 2000]: {6}, but at 1300 of 5000 steps the run is still in it.
    assert points(5000) == ([1000], [3.0])
    assert points(1500) == ([1000, 2000], [3.0, 6.0])  # the run ended at 1500: a last window
    assert points(2000) == ([1000, 2000], [3.0, 6.0])
    # A game that ends at 2000 shows the run got there.
    assert points(5000, [(400, 2, 10), (900, 4, 20), (2000, 6, 30)]) == ([1000, 2000], [3.0, 6.0])


def test_minutes_from_clocks_on_different_hosts_get_a_note(trained, tmp_path: Path, capsys) -> None:
    def on(run: Path, *hosts: str) -> None:
        for step, cpu in enumerate(hosts):
            RunDir(run).append_session({**session_record(step, torch.device("cpu")), "cpu": cpu})

    on(trained[0], "CPU A")
    on(trained[1], "CPU A", "CPU B")  # resumed on another machine
    on(trained[2], "CPU A")
    threads = torch.get_num_threads()

    def table(*flags: str) -> str:
        png = tmp_path / f"p{len(list(tmp_path.iterdir()))}.png"
        assert main(["plot", *map(str, trained[:3]), "-o", str(png), *flags]) == 0
        return capsys.readouterr().out

    note = (
        f"note: these minutes come from clocks on 2 hosts (CPU A, {threads} threads: uniform-s1, "
        f"uniform-s2, uniform-s3; CPU B, {threads} threads: uniform-s2); --steps-per-second puts "
        "every run on one rate"
    )
    assert note in table("--metric", "train", "--x", "minutes")
    assert note in table("--threshold", "5")  # the table's minutes columns
    assert "note:" not in table()  # no minutes
    assert "note:" not in table("--threshold", "5", "--steps-per-second", "100")
    (trained[1] / "sessions.csv").write_bytes(b"\xff\xfe not csv")
    assert "note:" not in table("--threshold", "5")  # one host, and a run that cannot say
