"""The statistics of ``atari-dqn plot``, computed by rliable (Agarwal et al., NeurIPS 2021): the
interval of a mean over runs, of the difference of two groups' means, the IQM and the
probability of improvement.

Our case is one task (the game) with several runs: rliable's stratified bootstrap, whose strata
are the tasks, is then a bootstrap over the runs (each resampled with replacement,
:data:`BOOTSTRAP_RESAMPLES` times, percentile intervals). Scores go to rliable as its
``(runs, tasks, ...)`` matrices with one task.

Seeding: rliable 1.2's bootstraps draw their indices from NumPy's global generator
(``np.random.choice``), not from the ``random_state`` they take; each call here seeds that
generator with :data:`BOOTSTRAP_SEED` (and passes the same seed as ``random_state``) and puts its
state back afterwards, so a plot is reproducible and nothing else's draws change. rliable (and
arch, scipy, pandas under it) is imported only when a number is computed.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95

Scores = np.ndarray | Sequence[np.ndarray]  # a matrix, or matrices resampled independently


@contextmanager
def _seeded(seed: int) -> Iterator[np.random.RandomState]:
    """NumPy's global generator seeded with ``seed``, its state put back after."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield np.random.RandomState(seed)
    finally:
        np.random.set_state(state)


def interval_estimates(
    scores: Mapping[str, Scores],
    func: Callable[..., np.ndarray],
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``rliable.library.get_interval_estimates`` (percentile intervals), seeded: the point
    estimates, and the intervals as ``(2, ...)`` arrays (low, high)."""
    from rliable import library

    with _seeded(seed) as random_state, warnings.catch_warnings():
        # arch, under rliable, warns that random_state is deprecated (and rliable ignores it).
        warnings.simplefilter("ignore", FutureWarning)
        points, intervals = library.get_interval_estimates(
            scores,
            func,
            method="percentile",
            reps=resamples,
            confidence_interval_size=confidence,
            random_state=random_state,
        )
    return dict(points), dict(intervals)


def _runs(values: np.ndarray) -> np.ndarray:
    """The runs' scores as rliable's ``(runs, tasks)`` matrix: one task."""
    return np.asarray(values, dtype=np.float64).reshape(-1, 1)


def _mean(scores: np.ndarray) -> Any:
    from rliable import metrics

    return metrics.aggregate_mean(scores)


def mean_intervals(
    columns: Sequence[np.ndarray],
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[np.ndarray, np.ndarray]:
    """The interval of the mean of each column (the runs' values at one step of a curve), each
    column's runs resampled on their own: ``low, high`` arrays.

    Columns of k runs go to rliable together as one ``(k, 1, columns)`` matrix (its stratified
    bootstrap resamples the runs within each column); equal columns get one interval. A column
    of one run has no spread: its interval is its value.
    """
    low = np.empty(len(columns))
    high = np.empty(len(columns))
    unique: dict[tuple[float, ...], list[int]] = {}
    for i, column in enumerate(columns):
        unique.setdefault(tuple(np.asarray(column, dtype=np.float64).tolist()), []).append(i)
    by_runs: dict[int, list[tuple[float, ...]]] = {}
    for values in unique:
        by_runs.setdefault(len(values), []).append(values)
    for k, batch in sorted(by_runs.items()):
        if k == 1:
            bounds = np.array([[v[0] for v in batch]] * 2)
        else:
            matrix = np.array(batch, dtype=np.float64).T[:, None, :]  # (runs, task, columns)
            _, intervals = interval_estimates(
                {"mean": matrix},
                _mean,
                resamples=resamples,
                confidence=confidence,
                seed=seed,
            )
            bounds = intervals["mean"].reshape(2, len(batch))
        for j, values in enumerate(batch):
            low[unique[values]], high[unique[values]] = bounds[0, j], bounds[1, j]
    return low, high


def bootstrap_ci(
    values: np.ndarray,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """The interval of the mean of ``values`` (the runs resampled): rliable's stratified
    bootstrap with one task."""
    low, high = mean_intervals([values], resamples=resamples, confidence=confidence, seed=seed)
    return float(low[0]), float(high[0])


def _mean_difference(scores: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    return np.array([_mean(scores) - _mean(baseline)])


def difference_ci(
    values: np.ndarray,
    baseline: np.ndarray,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float, float]:
    """``mean(values) - mean(baseline)`` and its interval: rliable's interval of a metric of two
    groups (its ``StratifiedIndependentBootstrap``: each group's runs resampled on their own)."""
    points, intervals = interval_estimates(
        {"difference": [_runs(values), _runs(baseline)]},
        _mean_difference,
        resamples=resamples,
        confidence=confidence,
        seed=seed,
    )
    low, high = intervals["difference"].ravel()
    return float(points["difference"][0]), float(low), float(high)


def interquartile_mean(values: np.ndarray) -> float:
    """rliable's IQM (``aggregate_iqm``: ``scipy.stats.trim_mean(x, 0.25)``): the mean of the
    middle 50%, ``floor(n/4)`` values dropped at each end; for fewer than 4 the plain mean."""
    from rliable import metrics

    return float(metrics.aggregate_iqm(_runs(values)))


def probability_of_improvement(values: np.ndarray, baseline: np.ndarray) -> float:
    """rliable's probability of improvement: the chance that a run of ``values`` scores above a
    run of ``baseline``, ties counting half (Mann-Whitney U / (n m)); 0.5 for equal groups."""
    from rliable import metrics

    return float(metrics.probability_of_improvement(_runs(values), _runs(baseline)))
