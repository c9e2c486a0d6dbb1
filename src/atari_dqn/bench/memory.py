"""``atari-dqn bench memory``: a soak, not a test; RSS must stay flat once the replay is full.

A leak shows as RSS growing after the replay stops growing. The run is an ordinary training run
(:func:`atari_dqn.build.build_training`) with evaluation pushed past its end.
"""

from __future__ import annotations

import time

from atari_dqn.bench.timing import Result, check_positive, rss_bytes
from atari_dqn.build import build_training
from atari_dqn.config import Config, ConfigError, preset_config


def memory_config(preset: str, *, steps: int, buffer_size: int, device: str = "cpu") -> Config:
    """The soak's run: ``preset`` with evaluation off, long enough for the replay to fill."""
    check_positive(steps=steps, buffer_size=buffer_size)
    config = preset_config(preset).replace(
        buffer_size=buffer_size,
        warmup_steps=min(buffer_size, 5_000),
        total_steps=steps,
        eval_every=steps + 1,
        device=device,
    )
    config.validate()
    if steps <= config.buffer_size + config.warmup_steps:
        raise ConfigError(
            f"--steps {steps} must exceed --buffer-size {buffer_size} (and its warm-up)"
            " so the replay fills and the soak can watch RSS after that"
        )
    return config


def memory_soak(config: Config, samples: int = 10) -> Result:
    """Train ``config`` and record RSS at ``samples + 1`` evenly spaced steps once the replay
    is full."""
    training = build_training(config)
    full_at = config.buffer_size + config.buffer_size // 10  # plus episode-final slots
    span = max(1, config.total_steps - full_at)
    marks = [full_at + span * k // samples for k in range(samples + 1)]
    points: list[tuple[int, int]] = []
    start = time.perf_counter()
    for report in training.loop.run():
        while marks and report.step >= marks[0]:
            marks.pop(0)
            points.append((report.step, rss_bytes()))
    seconds = time.perf_counter() - start
    first, last = points[0][1], points[-1][1]
    return {
        "buffer_size": config.buffer_size,
        "steps": config.total_steps,
        "seconds": seconds,
        "replay_full_at": full_at,
        "rss": [{"step": step, "bytes": b} for step, b in points],
        "growth_bytes": last - first,
        "growth_ratio": last / first if first else float("nan"),
        "peak_bytes": max(b for _, b in points),
    }


def memory_table(result: Result) -> str:
    lines = [
        f"bench memory: buffer {result['buffer_size']:,} transitions, {result['steps']:,} steps "
        f"in {result['seconds']:.0f} s; RSS after the replay is full (step "
        f"{result['replay_full_at']:,}):",
        f"{'step':>10}  {'RSS MB':>9}",
    ]
    lines += [f"{p['step']:>10,}  {p['bytes'] / 1e6:>9.1f}" for p in result["rss"]]
    lines.append(
        f"growth after full: {result['growth_bytes'] / 1e6:+.1f} MB "
        f"(x{result['growth_ratio']:.3f}); peak {result['peak_bytes'] / 1e6:.1f} MB"
    )
    return "\n".join(lines)
