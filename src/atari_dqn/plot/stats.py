"""The statistics of ``atari-dqn plot``: confidence intervals and aggregates of the runs' scores."""

from __future__ import annotations

import math

import numpy as np

BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95


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


def interquartile_mean(values: np.ndarray) -> float:
    """Mean of the middle 50%: drop ``floor(n/4)`` values at each end (as rliable's IQM,
    ``scipy.stats.trim_mean(x, 0.25)``). For fewer than 4 values this is the plain mean."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    cut = int(math.floor(0.25 * len(x)))
    return float(x[cut : len(x) - cut].mean())
