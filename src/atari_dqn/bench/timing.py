"""What every benchmark shares: the timer, process set-up, input checks and output.

Times are ``time.perf_counter`` medians over repetitions that follow a warm-up. Bad input is a
one-line :class:`~atari_dqn.config.ConfigError` (a UsageError: exit 2 from the CLI).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from atari_dqn.config import ConfigError
from atari_dqn.host import host_info, host_line

Result = dict[str, Any]  # a benchmark's figures, JSON-able
REP_SECONDS = 1e-3  # one repetition: short, so that few are cut by the OS scheduler


def median_us(
    fn: Callable[[], object], *, inner: int | None = None, reps: int = 15, warmup: int = 1
) -> float:
    """Median over ``reps`` repetitions of the mean µs per call of ``inner`` calls of ``fn``.

    ``inner=None``: as many calls as fill about 1 ms, measured after a warm-up; a busy machine
    (other processes on the same cores) then spoils few repetitions and the median skips them.
    """
    if inner is None:
        fn()
        start = time.perf_counter()
        fn()
        inner = max(1, min(10_000, int(REP_SECONDS / max(time.perf_counter() - start, 1e-7))))
    for _ in range(warmup * inner):
        fn()
    per_call = []
    for _ in range(reps):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        per_call.append((time.perf_counter() - start) / inner)
    return statistics.median(per_call) * 1e6


def warm_allocator() -> None:
    """Put glibc's allocator in the state a training process reaches within its first updates.

    A freed large block raises glibc's dynamic mmap and trim thresholds. Until that happens, the
    two ~0.9 MB stacks a 32-batch gather allocates are returned to the OS on every free and
    page-faulted back on every call (measured: gather 1.5 ms instead of 0.13 ms); torch's
    temporaries do it within the first updates of a real run. Without this, the first ring
    measured in the process would pay that and the others not.
    """
    block = np.ones(16 << 20, dtype=np.uint8)
    del block


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def check_positive(**values: int | None) -> None:
    """A one-line ConfigError for the first value <= 0 (None: not given, nothing to check)."""
    for name, value in values.items():
        if value is not None and value <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {value}")


def parse_ints(text: str, flag: str) -> list[int]:
    """Comma-separated positive integers of ``flag`` (``1,8,16``); one-line ConfigError if not."""
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{flag} expects integers like 1,8,16, got {text!r}") from None
    if not values:
        raise ConfigError(f"{flag} needs at least one value")
    for v in values:
        if v <= 0:
            raise ConfigError(f"{flag} values must be positive, got {v}")
    return values


def print_result(
    result: Result, table: Callable[[Result], str], as_json: bool, *, indent: int | None = None
) -> None:
    """Stdout gets one JSON object (``--json``) or the human table, nothing else. Both end with
    the host (``host_info``): the same command runs 2.5x faster on one of this project's CPU
    machines than on another, so a figure without its host cannot be compared."""
    result = {**result, "host": host_info()}
    text = (
        json.dumps(result, indent=indent)
        if as_json
        else f"{table(result)}\n{host_line(result['host'])}"
    )
    print(text, flush=True)
