"""Learning curves across runs and seeds, from each run directory's rewards.txt, games.csv and
config.toml.

Runs whose configurations are equal once the seed and the run-length-like keys are set aside
(:data:`IGNORED_KEYS`) form a group. A group is drawn as the mean score across its runs, with a
95% confidence band from rliable's stratified bootstrap (one task, so the runs resampled with
replacement, :data:`BOOTSTRAP_RESAMPLES` times, with a fixed seed, so a plot is reproducible:
:mod:`atari_dqn.plot.stats`), and each run as a faint line.

What is a point (``--metric``):

* ``eval`` (the default): each evaluation in rewards.txt, at its agent step.
* ``train``: the mean raw score of the training games (games.csv) that ended in each window of
  ``--window`` agent steps, (0, W], (W, 2W], ..., at x = k·W for each window that holds at least
  one game; a run's last window only once the run is past its end (a game ended at k·W, or
  k·W >= the run's ``total_steps``): a run still training does not show a window it is in.

With ``--until N`` every run is read as it stood at agent step N (:meth:`Run.until`): its
evaluations and games up to N, its ``total_steps`` at most N, so that runs of different
lengths (one seed continued to 1M beside seeds stopped at 300k) compare at one horizon.

A run's "final" score is its last point, its "final step" that point's step (for ``train`` the
window's end k·W), its "best" its highest point; the table gives rliable's IQM of the finals.
With two groups or more, it gives each group's final mean minus the first group's, with
rliable's percentile interval of that difference (each group's runs resampled on their own),
and rliable's probability of improvement: that a run of the group ends above a run of the first
(:func:`compare_to_first`).

The modules, by job: :mod:`~atari_dqn.plot.runs` reads run directories, :mod:`.curves` makes
their points and groups' curves, :mod:`.stats` wraps rliable, :mod:`.tables` writes the table
(text, CSV), :mod:`.draw` the figure (matplotlib); :func:`plot_runs` puts them together.

Where a point is (``--x``):

* ``steps`` (the default): at its agent step. At each step, the runs that have a point there
  count (runs may have different lengths or still be training); for the group's mean and band an
  evaluation counts at the multiple of ``eval_every`` it was due at (:meth:`View.aligned`).
* ``minutes``: at the run's training wall minutes at that step (evaluations excluded), from the
  games.csv clock: ``train_seconds`` linearly interpolated over the (step, train_seconds) rows,
  with (0, 0) prepended; beyond the last row, extrapolated at the run's mean rate up to that row
  (its ``train_seconds / step``), so the last evaluation or window, which ends after the last
  game, keeps its point. Runs then have different x values, so a group's mean and band are
  computed on a common grid of :data:`GRID_POINTS` + 1 minutes, 0, L/100, ..., L (L: the last
  minute of the group's longest run): at each grid minute, each run whose own [first, last]
  point range holds it contributes its last value at or before it; grid minutes no run covers
  are left out.

  With ``--steps-per-second R`` (or ``LABEL=R`` for one group) the minutes are not the runs' own
  clocks but ``step / R / 60``: the minutes the run would have taken at a rate measured apart,
  e.g. by ``atari-dqn bench train`` on a quiet machine, for runs that shared the machine. This
  applies to the table's minutes as well.

Thresholds (``--threshold T``): for each run, the first point at which it reaches T. For
``eval``, the first evaluation with score >= T, its minutes from the games.csv clock at that step
(none for a run without games.csv: a group with such a run among those that reached T reports no
minutes, ``-``). For ``train``, the first game at whose end the mean score of
the games that ended in the last ``--window`` agent steps, (step - W, step], is >= T (from the
first game on: early on the window holds only the games so far); its step is that game's step
and its minutes its ``train_seconds`` / 60. A group reports how many runs reached T (``k/n``)
and the median, min and max of the steps and minutes of the runs that reached it. In the printed
table these read ``median [min-max]`` when all runs reached T, ``not reached by j/n; k did:
median [min-max]`` when only k did, and ``not reached`` when none did; the CSV's median, min and
max columns are always over the runs that reached T (empty when none did), to be read with its
``reached_T`` column.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from atari_dqn.artifacts import atomic_write_bytes, atomic_write_text
from atari_dqn.plot.curves import (
    DEFAULT_WINDOW,
    EVAL_STEPS,
    GRID_POINTS,
    IGNORED_KEYS,
    METRICS,
    X_AXES,
    Group,
    Rates,
    View,
    group_runs,
    parse_rates,
    rate_runs,
)
from atari_dqn.plot.draw import DEFAULT_SIZE, check_size, draw, parse_size
from atari_dqn.plot.runs import (
    Games,
    GamesNeed,
    PlotError,
    Run,
    load_run,
    read_games,
    read_hosts,
    read_rewards,
)
from atari_dqn.plot.stats import (
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    CONFIDENCE,
    bootstrap_ci,
    difference_ci,
    interquartile_mean,
    interval_estimates,
    mean_intervals,
    probability_of_improvement,
)
from atari_dqn.plot.tables import (
    DIFF_COLUMNS,
    TABLE_COLUMNS,
    compare_to_first,
    diff_text,
    hosts_note,
    improvement_text,
    parse_thresholds,
    reach_summary,
    reach_text,
    summary_row,
    table_columns,
    table_csv,
    table_text,
    threshold_columns,
    threshold_name,
)

__all__ = [
    "BOOTSTRAP_RESAMPLES", "BOOTSTRAP_SEED", "CONFIDENCE", "DEFAULT_SIZE", "DEFAULT_WINDOW",
    "DIFF_COLUMNS", "EVAL_STEPS", "GRID_POINTS", "Games", "GamesNeed", "Group", "IGNORED_KEYS",
    "METRICS", "PlotError", "Rates", "Run", "TABLE_COLUMNS", "View", "X_AXES", "bootstrap_ci",
    "check_size", "compare_to_first", "diff_text", "difference_ci", "draw", "group_runs",
    "hosts_note", "improvement_text", "interquartile_mean", "interval_estimates", "load_run",
    "mean_intervals", "output_paths", "parse_rates", "parse_size", "parse_thresholds", "plot_runs",
    "probability_of_improvement", "rate_runs", "reach_summary", "reach_text", "read_games",
    "read_hosts", "read_rewards", "summary_row", "table_columns", "table_csv", "table_text",
    "threshold_columns", "threshold_name",
]  # fmt: skip


def output_paths(png: Path, force: bool) -> tuple[Path, Path]:
    """The PNG and its CSV (same stem); refuses to overwrite either unless ``force``."""
    png = Path(png)
    if png.suffix.lower() != ".png":
        raise PlotError(f"-o {png}: the output must be a .png file")
    if not png.parent.is_dir():
        raise PlotError(f"-o {png}: directory {png.parent} does not exist")
    csv_path = png.with_suffix(".csv")
    for path in (png, csv_path):
        if path.exists() and not force:
            raise PlotError(f"{path} already exists; pass --force to replace it")
    return png, csv_path


def plot_runs(
    run_dirs: Sequence[Path],
    out: Path,
    *,
    label_by: Sequence[str] = (),
    size: tuple[int, int] = DEFAULT_SIZE,
    force: bool = False,
    metric: str = "eval",
    x: str = "steps",
    window: int = DEFAULT_WINDOW,
    thresholds: Sequence[float] = (),
    rates: Rates = (None, {}),
    until: int | None = None,
) -> tuple[list[Group], str, list[tuple[Path, str]]]:
    """Read the runs, write ``out`` (PNG) and its CSV.

    Returns the groups, the table as text, and the runs left out for having no point yet, each
    with why. Every check comes before anything is written. ``rates``: minutes at measured
    steps/s (:func:`parse_rates`) instead of the runs' clocks. ``until``: each run read as it
    stood at that agent step (:meth:`Run.until`), to compare runs of different lengths at one
    horizon.
    """
    rated = rates[0] is not None or bool(rates[1])
    view = View(metric, x, window, rated)
    if until is not None and (isinstance(until, bool) or not isinstance(until, int) or until <= 0):
        raise PlotError(f"--until {until}: expected a positive number of agent steps")
    thresholds = parse_thresholds([repr(float(t)) for t in thresholds])
    png, csv_path = output_paths(out, force)
    check_size(*size)
    need = view.needs_games
    games: GamesNeed = "required" if need else ("optional" if thresholds else "no")
    unique = dict.fromkeys(Path(p).resolve() for p in run_dirs)
    runs = [load_run(p, rewards=metric == "eval", games=games, why=need) for p in unique]
    if until is not None:
        runs = [r.until(until) for r in runs]
    if rated:
        runs = rate_runs(runs, group_runs(runs, label_by), rates)
    by = f" by step {until}" if until is not None else ""
    skipped = [(r.path, _why_empty(r, view) + by) for r in runs if not len(view.points(r)[0])]
    runs = [r for r in runs if len(view.points(r)[0])]
    if not runs:
        what = "a training game in its games.csv" if need else "an evaluation in its rewards.txt"
        raise PlotError(f"nothing to plot: no run has {what}{by or ' yet'}")
    groups = group_runs(runs, label_by)
    rows = [summary_row(g, view, thresholds) for g in groups]
    compare_to_first(groups, rows, view)
    envs = sorted({str(r.config.get("env_id", "?")) for r in runs})
    title = f"{', '.join(envs)}: mean over seeds, {CONFIDENCE:.0%} bootstrap CI"
    atomic_write_bytes(png, draw(groups, size, title, view))
    atomic_write_text(csv_path, table_csv(rows, thresholds))
    table = table_text(rows, thresholds)
    if rated:
        given = ", ".join(f"{g.label}: {g.runs[0].rate:g}" for g in groups)
        table += f"\nminutes = agent steps / steps per second ({given}), not the runs' clocks"
    elif x == "minutes" or thresholds:
        table += hosts_note(runs)
    return groups, table, skipped


def _why_empty(run: Run, view: View) -> str:
    if view.metric == "eval" and not len(run.steps):
        return "no evaluation in its rewards.txt yet"
    if view.metric == "train":
        return "no training game in its games.csv yet"
    return "no training game in its games.csv yet, so no clock for --x minutes"
