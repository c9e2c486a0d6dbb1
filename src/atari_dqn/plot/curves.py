"""From runs to curves: what a point is (:class:`View`), runs grouped by configuration
(:func:`group_runs`), a group's mean curve with its confidence band (:meth:`Group.curve`), and
minutes at a given rate (:func:`parse_rates`, :func:`rate_runs`). See :mod:`atari_dqn.plot`
for what each flag means.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from atari_dqn.config import RUN_NEUTRAL, used_by
from atari_dqn.plot.runs import _EMPTY, _EMPTY_STEPS, PlotError, Run
from atari_dqn.plot.stats import mean_intervals

# Keys that do not change what a run is, only how long it ran or where: not used for grouping.
IGNORED_KEYS = ("seed", *RUN_NEUTRAL)
METRICS = ("eval", "train")
X_AXES = ("steps", "minutes")
DEFAULT_WINDOW = 25_000  # agent steps
GRID_POINTS = 100  # intervals of the common minutes grid of --x minutes


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
        # has passed its end (a game ended there, or --until cut it later) or the window holds
        # the run's end.
        total = int(run.config.get("total_steps", 0))
        if max(int(games.steps[-1]), run.passed) < ends[-1] < total:
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
        # Bands: each step's (or grid minute's) runs resampled; at the grid, the same runs' same
        # values at many minutes get one band, not a flicker.
        mean = np.array([values.mean() for values in columns], dtype=np.float64)
        low, high = mean_intervals(columns)
        return xs, mean, low, high

    def finals(self, view: View = EVAL_STEPS) -> np.ndarray:
        """Each run's final score: its last point."""
        return np.array([view.values(r)[1][-1] for r in self.runs], dtype=np.float64)

    def final_steps(self, view: View = EVAL_STEPS) -> set[int]:
        """The steps of the runs' last points, each at the step it was due at (aligned)."""
        return {int(view.aligned(r, view.values(r)[0][-1:])[0]) for r in self.runs}


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


# ---------------------------------------------------------------------- grouping
def _used(config: dict[str, Any], key: str) -> bool:
    """Whether the run gives ``key`` a meaning (a PQN run has no target period, a uniform-replay
    run no priority exponent)."""
    return used_by(key, str(config.get("algo", "dqn")), str(config.get("replay", "uniform")))


def _key(config: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(
        sorted(
            (k, repr(v)) for k, v in config.items() if k not in IGNORED_KEYS and _used(config, k)
        )
    )


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
    differ = [k for k in all_keys if len({repr(c.get(k)) for c in configs if _used(c, k)}) > 1]
    if label_by:
        known = {k for c in configs for k in c}
        for key in label_by:
            if key not in known:
                raise PlotError(f"--label-by {key}: no such key in the runs' config.toml")
        keys = list(label_by)
    else:
        keys = differ or ["preset"]
    # A setting the run's algorithm ignores names nothing, even when asked for (a PQN run's n_step)
    labels = [
        ", ".join(f"{k}={c.get(k, '-')}" for k in keys if _used(c, k))
        or f"algo={c.get('algo', 'dqn')}"
        for c in configs
    ]
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
