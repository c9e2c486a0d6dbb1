"""`atari-dqn plot`: grouping by configuration, mean and bootstrap band, the table, bad input."""

from __future__ import annotations

import csv
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from atari_dqn.cli import main
from atari_dqn.config import Config, to_toml
from atari_dqn.plot import Group, bootstrap_ci, interquartile_mean, load_run

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
    config = Config(replay=replay, seed=seed, total_steps=1000 * len(scores) + 7 * seed)
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
    out = capsys.readouterr().out
    assert "replay=uniform" in out and "3.0 ± 1.6" in out and "7.0 ± 2.2" in out


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


def test_bootstrap_band_is_the_percentile_interval_of_resampled_means() -> None:
    values = np.array([0.0, 10.0])
    # Each resample of 2 draws has mean 0 (1/4), 5 (1/2) or 10 (1/4): 2.5% and 97.5% -> 0, 10.
    low, high = bootstrap_ci(values, np.random.default_rng(0))
    assert (low, high) == (0.0, 10.0)
    many = np.arange(20.0)
    low, high = bootstrap_ci(many, np.random.default_rng(0))
    se = many.std() / np.sqrt(len(many))
    assert low == pytest.approx(many.mean() - 1.96 * se, abs=0.5)
    assert high == pytest.approx(many.mean() + 1.96 * se, abs=0.5)


def test_interquartile_mean_by_hand() -> None:
    assert interquartile_mean(np.array([1.0, 2.0, 3.0, 100.0])) == 2.5  # mean of 2, 3
    # 8 values: drop 2 at each end -> mean(3, 4, 5, 6) = 4.5, whatever the extremes.
    assert interquartile_mean(np.array([-50, 1, 3, 4, 5, 6, 7, 90.0])) == 4.5
    assert interquartile_mean(np.array([4.0])) == 4.0


def test_label_by_and_default_label(runs: list[Path], tmp_path: Path) -> None:
    # One group only: labelled by its preset.
    png = tmp_path / "one.png"
    assert main(["plot", *map(str, runs[:3]), "-o", str(png)]) == 0
    assert list(read_csv(tmp_path / "one.csv")) == ["preset=seed"]
    png = tmp_path / "two.png"
    assert main(["plot", *map(str, runs), "-o", str(png), "--label-by", "replay,preset"]) == 0
    assert list(read_csv(tmp_path / "two.csv")) == [
        "replay=uniform, preset=seed",
        "replay=prioritized, preset=seed",
    ]


def test_whole_run_beta_annealing_groups_however_it_was_saved(tmp_path: Path) -> None:
    a = make_run(tmp_path / "a", "prioritized", 1, [1.0])
    b = make_run(tmp_path / "b", "prioritized", 2, [3.0])
    text = (b / "config.toml").read_text().replace("beta_steps = 0", "beta_steps = 1014")
    (b / "config.toml").write_text(text)  # total_steps = 1014: "0 = the whole run", resolved
    assert main(["plot", str(a), str(b), "-o", str(tmp_path / "c.png")]) == 0
    assert read_csv(tmp_path / "c.csv")["preset=seed"]["runs"] == "2"


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
