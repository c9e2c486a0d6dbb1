"""Learning curves across runs and seeds, from each run directory's rewards.txt, games.csv and
config.toml.

Runs whose configurations are equal once the seed and the run-length-like keys are set aside
(:data:`IGNORED_KEYS`) form a group. A group is drawn as the mean score across its runs, with a
95% bootstrap confidence band (the runs resampled with replacement, :data:`BOOTSTRAP_RESAMPLES`
times, from a generator with a fixed seed, so a plot is reproducible), and each run as a faint
line.

What is a point (``--metric``):

* ``eval`` (the default): each evaluation in rewards.txt, at its agent step.
* ``train``: the mean raw score of the training games (games.csv) that ended in each window of
  ``--window`` agent steps, (0, W], (W, 2W], ..., at x = k·W for each window that holds at least
  one game; a run's last window only once the run is past its end (a game ended at k·W, or
  k·W >= the run's ``total_steps``): a run still training does not show a window it is in.

A run's "final" score is its last point, its "final step" that point's step (for ``train`` the
window's end k·W), its "best" its highest point. With two groups or more, the table gives each
group's final mean minus the first group's, with a percentile bootstrap interval of that
difference (:func:`compare_to_first`).

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

import csv
import dataclasses
import io
import math
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from atari_dqn.artifacts import (
    GAMES_HEADER,
    REWARD_LINE,
    ArtifactError,
    RunDir,
    atomic_write_bytes,
    atomic_write_text,
    read_utf8,
)
from atari_dqn.config import Config

# Keys that do not change what a run is, only how long it ran or where: not used for grouping.
IGNORED_KEYS = (
    "seed",
    "total_steps",
    "device",
    "checkpoint_replay",
    "checkpoint_chunk",
    "checkpoint_every",
)
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95
DEFAULT_SIZE = (1000, 600)  # pixels
METRICS = ("eval", "train")
X_AXES = ("steps", "minutes")
DEFAULT_WINDOW = 25_000  # agent steps
GRID_POINTS = 100  # intervals of the common minutes grid of --x minutes
_DPI = 100
_MIN_SIDE, _MAX_SIDE = 100, 10_000


class PlotError(ArtifactError):
    """Bad input to ``atari-dqn plot``; the message is one line."""


@dataclass(frozen=True)
class Games:
    """games.csv: one row per finished training game, in the order they ended."""

    steps: np.ndarray  # (m,) int64, agent step at which each game ended, non-decreasing
    scores: np.ndarray  # (m,) float64, raw full-game score
    lengths: np.ndarray  # (m,) int64, agent steps
    seconds: np.ndarray  # (m,) float64, training wall seconds at its end, non-decreasing

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def has_clock(self) -> bool:
        return len(self.steps) > 0 and int(self.steps[-1]) > 0

    def minutes(self, steps: np.ndarray) -> np.ndarray:
        """Training minutes at ``steps``: interpolated over the rows with (0, 0) prepended,
        beyond the last row extrapolated at the mean rate up to it."""
        if not self.has_clock:
            raise PlotError("games.csv has no game yet: no clock to tell minutes")
        xp = np.concatenate([[0], self.steps]).astype(np.float64)
        fp = np.concatenate([[0.0], self.seconds])
        last = np.append(xp[1:] != xp[:-1], True)  # one row per step: its last
        xp, fp = xp[last], fp[last]
        at = np.asarray(steps, dtype=np.float64)
        seconds = np.where(at > xp[-1], at * (fp[-1] / xp[-1]), np.interp(at, xp, fp))
        return np.asarray(seconds / 60.0, dtype=np.float64)


@dataclass(frozen=True)
class Run:
    path: Path
    config: dict[str, Any]  # config.toml as read
    steps: np.ndarray  # (n,) int64, agent steps of each evaluation, increasing
    scores: np.ndarray  # (n,) float64, mean raw score of each evaluation
    games: Games | None = None  # games.csv, where the run has one (and it was read)
    rate: float | None = None  # agent steps/s for minutes instead of games.csv's clock
    hosts: tuple[str, ...] = ()  # where its clock ran (sessions.csv): CPU and torch threads

    @property
    def seed(self) -> Any:
        return self.config.get("seed", "?")

    @property
    def has_clock(self) -> bool:
        return self.rate is not None or (self.games is not None and self.games.has_clock)

    def minutes(self, steps: np.ndarray) -> np.ndarray:
        """Training minutes at ``steps``: at the given rate, else games.csv's clock."""
        if self.rate is not None:
            return np.asarray(steps, dtype=np.float64) / self.rate / 60.0
        if self.games is None:
            raise PlotError(f"{self.path} has no games.csv: no clock to tell minutes")
        return self.games.minutes(steps)


_EMPTY_STEPS = np.zeros(0, dtype=np.int64)
_EMPTY = np.zeros(0, dtype=np.float64)


@dataclass(frozen=True)
class View:
    """What a point is (``metric``, with ``window`` for ``train``) and where (``x``)."""

    metric: str = "eval"
    x: str = "steps"
    window: int = DEFAULT_WINDOW
    rated: bool = False  # minutes come from --steps-per-second, not games.csv's clock

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise PlotError(f"--metric {self.metric}: expected one of {', '.join(METRICS)}")
        if self.x not in X_AXES:
            raise PlotError(f"--x {self.x}: expected one of {', '.join(X_AXES)}")
        window = self.window
        if isinstance(window, bool) or not isinstance(window, int) or window <= 0:
            raise PlotError(f"--window {window}: expected a positive number of agent steps")

    @property
    def needs_games(self) -> str:
        """The flag that needs games.csv, or ``""``."""
        if self.metric == "train":
            return "--metric train"
        return "--x minutes" if self.x == "minutes" and not self.rated else ""

    def values(self, run: Run) -> tuple[np.ndarray, np.ndarray]:
        """The agent steps (int64) and values of the run's points."""
        if self.metric == "eval":
            return run.steps, run.scores
        games = run.games
        if games is None or not len(games):
            return _EMPTY_STEPS, _EMPTY
        k = np.maximum((games.steps + self.window - 1) // self.window, 1)  # (W(k-1), Wk]
        ks, inverse = np.unique(k, return_inverse=True)
        means = np.bincount(inverse, weights=games.scores) / np.bincount(inverse)
        ends = (ks * self.window).astype(np.int64)
        # A run still training is inside its last window: leave that window out until the run
        # has passed its end (a game ended there) or the window holds the run's end.
        total = int(run.config.get("total_steps", 0))
        if games.steps[-1] < ends[-1] < total:
            return ends[:-1], means[:-1].astype(np.float64)
        return ends, means.astype(np.float64)

    def points(self, run: Run) -> tuple[np.ndarray, np.ndarray]:
        """The x (steps or minutes) and y of the run's points; none without a clock for
        minutes."""
        steps, values = self.values(run)
        if self.x == "steps":
            return steps, values
        if not run.has_clock:
            return _EMPTY, _EMPTY
        return run.minutes(steps), values

    def aligned(self, run: Run, steps: np.ndarray) -> np.ndarray:
        """Where the run's points count in its group's mean and band at ``--x steps``: each
        evaluation at the multiple of the run's ``eval_every`` it was due at. With N envs (or
        Ape-X) an evaluation comes a few agent steps after that multiple, at a step of its own
        in each run (100,004 and 100,007); without this the seeds would never meet. Windows are
        at their ends already."""
        every = int(run.config.get("eval_every", 0) or 0)
        if self.metric != "eval" or every <= 0:
            return steps
        return np.asarray(steps // every * every, dtype=np.int64)

    def first_reach(self, run: Run, threshold: float) -> tuple[int, float | None] | None:
        """``(step, minutes)`` at which the run first reaches ``threshold`` (minutes None
        without a clock), or None if it never does."""
        games = run.games
        if self.metric == "eval":
            hits = np.flatnonzero(run.scores >= threshold)
            if not len(hits):
                return None
            step = int(run.steps[hits[0]])
            minutes = float(run.minutes(np.array([step]))[0]) if run.has_clock else None
            return step, minutes
        if games is None or not len(games):
            return None
        # The games that ended in (step - W, step], at each game's end; compare sums, not means.
        sums = np.concatenate([[0.0], np.cumsum(games.scores)])
        hi = np.searchsorted(games.steps, games.steps, side="right")
        lo = np.searchsorted(games.steps, games.steps - self.window, side="right")
        hits = np.flatnonzero(sums[hi] - sums[lo] >= threshold * (hi - lo))
        if not len(hits):
            return None
        i = int(hits[0])
        step = int(games.steps[i])
        if run.rate is not None:
            return step, float(run.minutes(np.array([step]))[0])
        return step, float(games.seconds[i]) / 60.0

    @property
    def xlabel(self) -> str:
        if self.x == "minutes" and self.rated:
            return "minutes at the given agent steps/s (--steps-per-second), not the runs' clocks"
        if self.x == "minutes":
            return "training wall minutes (evaluations excluded)"
        return "env steps (agent steps; 1 step = 4 emulator frames)"

    @property
    def ylabel(self) -> str:
        if self.metric == "train":
            return f"training-game score (mean per {self.window}-step window, full game, raw)"
        return "evaluation score (full game, raw)"


EVAL_STEPS = View()


@dataclass(frozen=True)
class Group:
    label: str
    runs: tuple[Run, ...]

    def curve(
        self, view: View = EVAL_STEPS
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``x, mean, low, high``: for ``--x steps`` at every step any run has, over the runs
        that have it; for ``--x minutes`` on the common grid (see the module's docstring)."""
        series = [
            (view.aligned(run, x) if view.x == "steps" else x, y)
            for run, (x, y) in ((r, view.points(r)) for r in self.runs)
            if len(x)
        ]
        if not series:
            return _EMPTY, _EMPTY, _EMPTY, _EMPTY
        columns: list[np.ndarray] = []
        if view.x == "steps":
            xs = np.unique(np.concatenate([x for x, _ in series]))
            for v in xs:
                columns.append(np.array([y[x == v][0] for x, y in series if v in x]))
        else:
            last = max(float(x[-1]) for x, _ in series)
            grid = last * np.arange(GRID_POINTS + 1) / GRID_POINTS
            grid[-1] = last  # exactly, whatever the rounding: the longest run's last point
            kept = []
            for g in grid:
                covering = [
                    y[np.searchsorted(x, g, side="right") - 1]
                    for x, y in series
                    if x[0] <= g <= x[-1]
                ]
                if covering:
                    kept.append(g)
                    columns.append(np.array(covering, dtype=np.float64))
            xs = np.array(kept, dtype=np.float64)
        rng = np.random.default_rng(BOOTSTRAP_SEED)
        mean, low, high = (np.empty(len(xs)) for _ in range(3))
        bands: dict[tuple[float, ...], tuple[float, float]] = {}
        for i, values in enumerate(columns):
            mean[i] = values.mean()
            if view.x == "steps":
                low[i], high[i] = bootstrap_ci(values, rng)
            else:  # the same runs' same values at many grid minutes: one band, not a flicker
                key = tuple(values.tolist())
                if key not in bands:
                    bands[key] = bootstrap_ci(values, rng)
                low[i], high[i] = bands[key]
        return xs, mean, low, high

    def finals(self, view: View = EVAL_STEPS) -> np.ndarray:
        """Each run's final score: its last point."""
        return np.array([view.values(r)[1][-1] for r in self.runs], dtype=np.float64)

    def final_steps(self, view: View = EVAL_STEPS) -> set[int]:
        """The steps of the runs' last points, each at the step it was due at (aligned)."""
        return {int(view.aligned(r, view.values(r)[0][-1:])[0]) for r in self.runs}

    def summary(self, view: View = EVAL_STEPS, thresholds: Sequence[float] = ()) -> dict[str, Any]:
        points = [view.values(r) for r in self.runs]
        final = self.finals(view)
        final_steps = [int(s[-1]) for s, _ in points]
        row: dict[str, Any] = {
            "group": self.label,
            "runs": len(self.runs),
            "seeds": " ".join(str(r.seed) for r in self.runs),
            "final_step_min": min(final_steps),
            "final_step_max": max(final_steps),
            "final_mean": float(final.mean()),
            "final_std": float(final.std()),
            "best": float(max(y.max() for _, y in points)),
            "iqm": interquartile_mean(final),
        }
        for threshold in thresholds:
            row.update(
                reach_summary(threshold, [view.first_reach(r, threshold) for r in self.runs])
            )
        return row


def reach_summary(
    threshold: float, reaches: Sequence[tuple[int, float | None] | None]
) -> dict[str, Any]:
    """The table's cells for one threshold: ``reached_T`` (``k/n``) and the median, min and max
    of the steps and of the minutes of the runs that reached it (None when none did, and for
    minutes when one of them has no clock)."""
    name = threshold_name(threshold)
    done = [r for r in reaches if r is not None]
    row: dict[str, Any] = {f"reached_{name}": f"{len(done)}/{len(reaches)}"}
    steps = [s for s, _ in done]
    minutes = [m for _, m in done if m is not None]
    for kind, values in (("steps", steps), ("minutes", minutes)):
        have = bool(done) and len(values) == len(done)
        median = float(np.median(values)) if have else None
        if kind == "steps" and median is not None and median.is_integer():
            median = int(median)
        row[f"{kind}_to_{name}_median"] = median
        row[f"{kind}_to_{name}_min"] = min(values) if have else None
        row[f"{kind}_to_{name}_max"] = max(values) if have else None
    return row


def threshold_name(threshold: float) -> str:
    """``30`` for 30.0, ``12.5`` for 12.5: how a threshold is written in column names."""
    return str(int(threshold)) if float(threshold).is_integer() else repr(float(threshold))


Rates = tuple[float | None, dict[str, float]]  # every group's, and by group label


def parse_rates(texts: Sequence[str]) -> Rates:
    """``--steps-per-second R`` (every group without its own) or ``LABEL=R`` (the group whose
    label is LABEL, e.g. ``replay=uniform=67.9``), repeatable."""
    default: float | None = None
    by_label: dict[str, float] = {}
    for text in texts:
        label, _, number = text.rpartition("=")
        try:
            rate = float(number)
        except ValueError:
            rate = math.nan
        if not (math.isfinite(rate) and rate > 0):
            raise PlotError(
                f"--steps-per-second {text!r}: expected a positive number of agent steps per "
                "second, or LABEL=NUMBER for one group"
            )
        if label:
            by_label[label.strip()] = rate
        else:
            default = rate
    return default, by_label


def rate_runs(runs: Sequence[Run], groups: Sequence[Group], rates: Rates) -> list[Run]:
    """The runs, each with its group's rate (``rates``: see :func:`parse_rates`)."""
    default, by_label = rates
    labels = [g.label for g in groups]
    for label in by_label:
        if label not in labels:
            raise PlotError(
                f"--steps-per-second {label}=...: no group is labelled {label!r}; the groups "
                f"are: {'; '.join(labels)}"
            )
    rate_of: dict[Path, float] = {}
    for group in groups:
        rate = by_label.get(group.label, default)
        if rate is None:
            raise PlotError(
                f"--steps-per-second: no rate for the group {group.label!r}; give it one, or a "
                "plain number for every group"
            )
        rate_of |= {r.path: rate for r in group.runs}
    return [dataclasses.replace(r, rate=rate_of[r.path]) for r in runs]


def parse_thresholds(texts: Sequence[str]) -> tuple[float, ...]:
    """``--threshold T[,T2,...]`` (the flag may be repeated): the numbers, in order, once each."""
    found: list[float] = []
    for text in texts:
        for piece in text.split(","):
            try:
                value = float(piece)
            except ValueError:
                raise PlotError(f"--threshold {piece.strip()!r}: not a number") from None
            if not math.isfinite(value):
                raise PlotError(f"--threshold {piece.strip()!r}: not a finite number")
            if value not in found:
                found.append(value)
    return tuple(found)


def bootstrap_ci(
    values: np.ndarray,
    rng: np.random.Generator,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    confidence: float = CONFIDENCE,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (the seeds resampled)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 1:
        return float(values[0]), float(values[0])
    return _percentiles(_resampled_means(values, rng, resamples), confidence)


def _resampled_means(values: np.ndarray, rng: np.random.Generator, resamples: int) -> np.ndarray:
    """The means of ``resamples`` resamples of ``values``, with replacement."""
    return values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)


def _percentiles(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    """The central ``confidence`` interval of ``samples``."""
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def difference_ci(
    values: np.ndarray,
    baseline: np.ndarray,
    rng: np.random.Generator,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    confidence: float = CONFIDENCE,
) -> tuple[float, float, float]:
    """``mean(values) - mean(baseline)`` and its percentile bootstrap interval, the runs of
    each group resampled independently, with replacement."""
    a = np.asarray(values, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64)
    diffs = _resampled_means(a, rng, resamples) - _resampled_means(b, rng, resamples)
    low, high = _percentiles(diffs, confidence)
    return float(a.mean() - b.mean()), low, high


def compare_to_first(groups: Sequence[Group], rows: Sequence[dict[str, Any]], view: View) -> None:
    """Add to each row but the first ``final_diff`` (its final mean minus the first group's)
    and the 95% bootstrap interval of that difference, ``final_diff_low``/``_high`` (None for
    the first group). An interval that holds 0 is no difference detected at that confidence.

    Only finals at one step are compared: where a run of either group ends at another step
    (one still training, a shorter run), or where the groups play different games (their
    scores do not subtract), the three are None and ``final_diff_why`` says why."""
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    base, base_steps = groups[0].finals(view), groups[0].final_steps(view)
    base_games = _games_of(groups[0])
    for i, (group, row) in enumerate(zip(groups, rows, strict=True)):
        diff: tuple[float | None, ...] = (None, None, None)
        steps = group.final_steps(view)
        games = _games_of(group)
        if i and games | base_games != base_games:  # scores of two games do not subtract
            listed = ", ".join(sorted(games | base_games))
            row["final_diff_why"] = f"not compared: games {listed}"
        elif i and len(steps | base_steps) > 1:
            listed = ", ".join(str(s) for s in sorted(steps | base_steps))
            row["final_diff_why"] = f"not compared: finals at {listed}"
        elif i:
            diff = difference_ci(group.finals(view), base, rng)
        row.update(zip(("final_diff", "final_diff_low", "final_diff_high"), diff, strict=True))


def _games_of(group: Group) -> set[str]:
    return {str(run.config.get("env_id", "?")) for run in group.runs}


def interquartile_mean(values: np.ndarray) -> float:
    """Mean of the middle 50%: drop ``floor(n/4)`` values at each end (as rliable's IQM,
    ``scipy.stats.trim_mean(x, 0.25)``). For fewer than 4 values this is the plain mean."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    cut = int(math.floor(0.25 * len(x)))
    return float(x[cut : len(x) - cut].mean())


# ---------------------------------------------------------------------- reading runs


def read_rewards(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Steps and scores of rewards.txt (``index step score`` per line, the seed's format)."""
    steps: list[int] = []
    scores: list[float] = []
    lines = read_utf8(path, PlotError).splitlines(keepends=True)
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        match = REWARD_LINE.match(line)
        if match is None:
            if number == len(lines) and not line.endswith("\n"):
                break  # a line being written right now by a running training
            raise PlotError(f"{path}:{number}: not an 'index step score' line: {line.strip()!r}")
        step = int(match.group(2))
        if steps and step <= steps[-1]:
            raise PlotError(f"{path}:{number}: step {step} does not follow step {steps[-1]}")
        steps.append(step)
        scores.append(float(match.group(3)))
    return np.array(steps, dtype=np.int64), np.array(scores, dtype=np.float64)


def read_games(path: Path) -> Games:
    """games.csv: its header, then ``step,score,length,train_seconds`` lines. An unterminated
    last line (being written right now by a running training) is left out."""
    lines = read_utf8(path, PlotError).splitlines(keepends=True)
    if lines and lines[0].strip() != GAMES_HEADER.strip():
        raise PlotError(f"{path}:1: expected the header {GAMES_HEADER.strip()!r}")
    rows: list[tuple[int, float, int, float]] = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.endswith("\n"):
            break  # the last line, unterminated: a game being written right now
        if not line.strip():
            continue
        parts = line.split(",")
        try:
            if len(parts) != 4:
                raise ValueError(line)
            row = (int(parts[0]), float(parts[1]), int(parts[2]), float(parts[3]))
        except ValueError:
            raise PlotError(
                f"{path}:{number}: not a 'step,score,length,train_seconds' line: {line.strip()!r}"
            ) from None
        before = rows[-1] if rows else (0, 0.0, 0, 0.0)
        if row[0] < before[0]:
            raise PlotError(f"{path}:{number}: step {row[0]} comes before step {before[0]}")
        if row[3] < before[3]:
            raise PlotError(f"{path}:{number}: train_seconds {row[3]:g} comes before {before[3]:g}")
        rows.append(row)
    columns = list(zip(*rows, strict=True)) if rows else [(), (), (), ()]
    return Games(
        np.array(columns[0], dtype=np.int64),
        np.array(columns[1], dtype=np.float64),
        np.array(columns[2], dtype=np.int64),
        np.array(columns[3], dtype=np.float64),
    )


GamesNeed = Literal["no", "optional", "required"]


def load_run(
    path: Path, *, rewards: bool = True, games: GamesNeed = "optional", why: str = ""
) -> Run:
    """The run directory's config.toml, rewards.txt (unless not ``rewards``: then none is read)
    and games.csv (read where there is one, unless ``games="no"``; ``"required"``: a run without
    one is an error, naming ``why``, the flag that needs it)."""
    path = Path(path)
    if not path.is_dir():
        raise PlotError(f"{path} is not a run directory")
    config_path, rewards_path = path / "config.toml", path / "rewards.txt"
    games_path = path / "games.csv"
    if not config_path.is_file():
        raise PlotError(f"{path} is not a run directory (no config.toml)")
    if rewards and not rewards_path.is_file():
        raise PlotError(f"{path} has no rewards.txt (no evaluation yet?)")
    if games == "required" and not games_path.is_file():
        raise PlotError(
            f"{path} has no games.csv (a run from before games.csv?); {why or 'this'} needs it"
        )
    try:
        config = tomllib.loads(config_path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PlotError(f"{config_path} is not valid TOML: {exc}") from None
    # Keys a run's version did not have yet take today's defaults, so old and new runs group.
    config = {**dataclasses.asdict(Config()), **config}
    if config.get("beta_steps") == config.get("total_steps"):
        config["beta_steps"] = 0  # "anneal over the whole run", however the run saved it
    steps, scores = read_rewards(rewards_path) if rewards else (_EMPTY_STEPS, _EMPTY)
    played = read_games(games_path) if games != "no" and games_path.is_file() else None
    return Run(path, config, steps, scores, played, hosts=read_hosts(RunDir(path)))


def read_hosts(run: RunDir) -> tuple[str, ...]:
    """The distinct hosts (CPU, torch threads) of a run's sessions.csv, in order; none where it
    has no such file or one that cannot be read (it only feeds a note)."""
    try:
        sessions = run.sessions()
    except (OSError, UnicodeDecodeError, csv.Error):
        return ()
    hosts = (f"{s.get('cpu') or '?'}, {s.get('torch_threads') or '?'} threads" for s in sessions)
    return tuple(dict.fromkeys(hosts))


def hosts_note(runs: Sequence[Run]) -> str:
    """A line for the table where the runs' clocks ran on more than one host (sessions.csv;
    runs from before it have none): their minutes are not comparable as they stand."""
    hosts: dict[str, list[str]] = {}
    for run in runs:
        for host in run.hosts:
            hosts.setdefault(host, []).append(run.path.name)
    if len(hosts) < 2:
        return ""
    listed = "; ".join(f"{host}: {', '.join(names)}" for host, names in hosts.items())
    return (
        f"\nnote: these minutes come from clocks on {len(hosts)} hosts ({listed}); "
        "--steps-per-second puts every run on one rate"
    )


# ---------------------------------------------------------------------- grouping
def _key(config: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, repr(v)) for k, v in config.items() if k not in IGNORED_KEYS))


def group_runs(runs: Sequence[Run], label_by: Sequence[str] = ()) -> list[Group]:
    """Runs grouped by configuration (seed and run length aside), in order of first appearance.

    A group's label names the ``label_by`` keys, or else the keys whose values differ between
    groups (``preset`` when there is a single group).
    """
    buckets: dict[tuple[tuple[str, str], ...], list[Run]] = {}
    for run in runs:
        buckets.setdefault(_key(run.config), []).append(run)
    members = [tuple(sorted(b, key=_seed_order)) for b in buckets.values()]
    configs = [m[0].config for m in members]
    all_keys = sorted({k for c in configs for k in c} - set(IGNORED_KEYS))
    differ = [k for k in all_keys if len({repr(c.get(k)) for c in configs}) > 1]
    if label_by:
        known = {k for c in configs for k in c}
        for key in label_by:
            if key not in known:
                raise PlotError(f"--label-by {key}: no such key in the runs' config.toml")
        keys = list(label_by)
    else:
        keys = differ or ["preset"]
    labels = [", ".join(f"{k}={c.get(k, '-')}" for k in keys) for c in configs]
    if len(set(labels)) < len(labels):
        raise PlotError(
            f"--label-by {','.join(keys)} does not tell the groups apart; "
            f"they differ in: {', '.join(differ)}"
        )
    return [Group(label, m) for label, m in zip(labels, members, strict=True)]


def _seed_order(run: Run) -> tuple[bool, int, str]:
    seed = run.seed
    number = isinstance(seed, int) and not isinstance(seed, bool)
    return (not number, seed if number else 0, str(seed))


# ---------------------------------------------------------------------- output
def parse_size(text: str) -> tuple[int, int]:
    """``"WxH"`` in pixels."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if match is None:
        raise PlotError(f"--size {text!r}: expected WIDTHxHEIGHT in pixels, e.g. 1000x600")
    return check_size(int(match.group(1)), int(match.group(2)))


def check_size(width: int, height: int) -> tuple[int, int]:
    for name, value in (("width", width), ("height", height)):
        if not _MIN_SIDE <= value <= _MAX_SIDE:
            raise PlotError(f"plot {name} {value} px is out of range [{_MIN_SIDE}, {_MAX_SIDE}]")
    return width, height


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


TABLE_COLUMNS = (
    "group", "runs", "seeds", "final_step_min", "final_step_max",
    "final_mean", "final_std", "best", "iqm",
    "final_diff", "final_diff_low", "final_diff_high",
)  # fmt: skip


def threshold_columns(threshold: float) -> tuple[str, ...]:
    """The CSV columns one ``--threshold`` adds."""
    name = threshold_name(threshold)
    return (f"reached_{name}",) + tuple(
        f"{kind}_to_{name}_{stat}"
        for kind in ("steps", "minutes")
        for stat in ("median", "min", "max")
    )


def table_columns(thresholds: Sequence[float] = ()) -> tuple[str, ...]:
    return TABLE_COLUMNS + tuple(c for t in thresholds for c in threshold_columns(t))


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    return f"{value:.4f}" if isinstance(value, float) else value


def table_csv(rows: Sequence[dict[str, Any]], thresholds: Sequence[float] = ()) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=table_columns(thresholds), lineterminator="\n")
    writer.writeheader()
    for row in rows:  # (a row's other keys, such as final_diff_why, are for the text table)
        writer.writerow({k: _csv_cell(row[k]) for k in writer.fieldnames if k in row})
    return out.getvalue()


def reach_text(row: dict[str, Any], threshold: float, kind: str) -> str:
    """A printed cell for steps or minutes to ``threshold``: ``median [min-max]`` (just the
    value when min = max), ``not reached by j/n; k did: ...``, ``not reached``, or ``-`` (no
    clock to tell minutes)."""
    name = threshold_name(threshold)
    k, n = (int(v) for v in row[f"reached_{name}"].split("/"))
    if k == 0:
        return "not reached"
    median, low, high = (row[f"{kind}_to_{name}_{s}"] for s in ("median", "min", "max"))
    if median is None:
        return "-"
    fmt = "{:.0f}" if kind == "steps" else "{:.1f}"
    text = fmt.format(median)
    if fmt.format(low) != fmt.format(high):
        text += f" [{fmt.format(low)}-{fmt.format(high)}]"
    return text if k == n else f"not reached by {n - k}/{n}; {k} did: {text}"


def diff_text(row: dict[str, Any]) -> str:
    """The printed cell of a group's final mean minus the first group's, with its interval."""
    if row.get("final_diff") is None:
        return str(row.get("final_diff_why", "-"))
    return f"{row['final_diff']:+.1f} [{row['final_diff_low']:+.1f}, {row['final_diff_high']:+.1f}]"


def table_text(rows: Sequence[dict[str, Any]], thresholds: Sequence[float] = ()) -> str:
    compare = len(rows) > 1  # a column of each group's final mean minus the first group's
    header: tuple[str, ...] = ("group", "runs", "final step", "final mean ± std", "best", "IQM")
    if compare:
        header += (f"final - {rows[0]['group']} [{CONFIDENCE:.0%} CI]",)
    for t in thresholds:
        name = threshold_name(t)
        header += (f"reached {name}", f"steps to {name}", f"minutes to {name}")
    body = [
        (
            r["group"],
            str(r["runs"]),
            str(r["final_step_min"])
            if r["final_step_min"] == r["final_step_max"]
            else f"{r['final_step_min']}-{r['final_step_max']}",
            f"{r['final_mean']:.1f} ± {r['final_std']:.1f}",
            f"{r['best']:.1f}",
            f"{r['iqm']:.1f}",
        )
        + ((diff_text(r),) if compare else ())
        + tuple(
            cell
            for t in thresholds
            for cell in (
                r[f"reached_{threshold_name(t)}"],
                reach_text(r, t, "steps"),
                reach_text(r, t, "minutes"),
            )
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in (header, *body)) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in (header, *body)
    ]
    return "\n".join(line.rstrip() for line in lines)


def draw(
    groups: Sequence[Group], size: tuple[int, int], title: str, view: View = EVAL_STEPS
) -> bytes:
    """The figure as PNG bytes of exactly ``size`` pixels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width, height = size
    fig, ax = plt.subplots(figsize=(width / _DPI, height / _DPI), dpi=_DPI, layout="constrained")
    try:
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for i, group in enumerate(groups):
            color = colors[i % len(colors)]
            style = "default" if view.x == "steps" else "steps-post"
            for run in group.runs:
                x, y = view.points(run)
                ax.plot(x, y, color=color, alpha=0.25, linewidth=0.8, drawstyle=style)
            xs, mean, low, high = group.curve(view)
            label = f"{group.label} (n={len(group.runs)})"
            if view.x == "steps":
                ax.plot(xs, mean, color=color, linewidth=2, marker="o", markersize=3, label=label)
                ax.fill_between(xs, low, high, color=color, alpha=0.2, linewidth=0)
            else:  # the grid: each run's last value carried forward, so drawn as steps
                ax.plot(xs, mean, color=color, linewidth=2, drawstyle="steps-post", label=label)
                ax.fill_between(xs, low, high, color=color, alpha=0.2, linewidth=0, step="post")
        ax.set_xlabel(view.xlabel)
        ax.set_ylabel(view.ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize="small")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=_DPI)
    finally:
        plt.close(fig)
    return buf.getvalue()


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
) -> tuple[list[Group], str, list[tuple[Path, str]]]:
    """Read the runs, write ``out`` (PNG) and its CSV.

    Returns the groups, the table as text, and the runs left out for having no point yet, each
    with why. Every check comes before anything is written. ``rates``: minutes at measured
    steps/s (:func:`parse_rates`) instead of the runs' clocks.
    """
    rated = rates[0] is not None or bool(rates[1])
    view = View(metric, x, window, rated)
    thresholds = parse_thresholds([repr(float(t)) for t in thresholds])
    png, csv_path = output_paths(out, force)
    check_size(*size)
    need = view.needs_games
    games: GamesNeed = "required" if need else ("optional" if thresholds else "no")
    unique = dict.fromkeys(Path(p).resolve() for p in run_dirs)
    runs = [load_run(p, rewards=metric == "eval", games=games, why=need) for p in unique]
    if rated:
        runs = rate_runs(runs, group_runs(runs, label_by), rates)
    skipped = [(r.path, _why_empty(r, view)) for r in runs if not len(view.points(r)[0])]
    runs = [r for r in runs if len(view.points(r)[0])]
    if not runs:
        what = "a training game in its games.csv" if need else "an evaluation in its rewards.txt"
        raise PlotError(f"nothing to plot: no run has {what} yet")
    groups = group_runs(runs, label_by)
    rows = [g.summary(view, thresholds) for g in groups]
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
