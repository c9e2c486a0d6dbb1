"""One gradient update alone, each way this machine can run it: ``atari-dqn bench update``.

The update is most of a CPU run's time, so its settings are chosen by measurement: for each
torch thread count, each variant's agent does the same update on the same fixed batch, the
variants take turns (``inner`` updates each, ``rounds`` times) so a slow spell of a shared
machine hits all alike, and the median ms per update is reported. Each variant's first loss and
TD errors are compared with the plain path's on that batch, so a variant that changes what is
learned (bf16) shows by how much. The process is set up as a training process
(:func:`atari_dqn.perf.tune_allocator`).

``parts=True`` times the parts of Rainbow instead, each with the default kernels: DQN (the
``nature`` preset), + the distributional head, + noisy nets, + both, ``rainbow-lite`` and
``rainbow``; the speed-up column is then DQN's ms over the row's (the losses differ by design).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np
import torch

from atari_dqn.agent import DQNAgent
from atari_dqn.bench.timing import Result, check_positive
from atari_dqn.build import build_agent, build_online, resolve_device
from atari_dqn.config import Config, preset_config
from atari_dqn.replay.storage import Batch


@dataclass(frozen=True)
class Variant:
    """How an update runs: optimiser kernel, memory layout, precision, compiled or not."""

    fused: bool
    channels_last: bool
    bf16: bool = False
    compile: bool = False
    preset: str | None = None  # None: the benchmark's preset
    changes: tuple[tuple[str, bool], ...] = ()  # config fields set on top of the preset


def _part(preset: str, *changes: str) -> Variant:
    return Variant(True, True, preset=preset, changes=tuple((c, True) for c in changes))


PLAIN = "per-tensor Adam, NCHW (the course project's)"
VARIANTS = {
    PLAIN: Variant(fused=False, channels_last=False),
    "fused Adam, NCHW": Variant(fused=True, channels_last=False),
    "fused Adam, channels-last (default)": Variant(fused=True, channels_last=True),
    "default + --bf16": Variant(fused=True, channels_last=True, bf16=True),
}
# With a preset that has Double DQN (laptop-v1, double, dueling, rainbow...): the online net at s
# and s' in one pass (--one-pass-double), against the default's two.
ONE_PASS = "default + --one-pass-double"
COMPILED = "default + --compile"
DQN = "dqn (preset nature)"
PARTS = {
    DQN: _part("nature"),
    "+ distributional (51 atoms)": _part("nature", "distributional"),
    "+ noisy": _part("nature", "noisy"),
    "+ distributional + noisy": _part("nature", "distributional", "noisy"),
    "rainbow-lite (double, dueling)": _part("rainbow-lite"),
    "rainbow (all six parts)": _part("rainbow"),
}


def fixed_batch(num_actions: int, batch_size: int, seed: int = 0) -> Batch:
    """A random batch of uint8 stacks, the same for every variant timed on it."""
    rng = np.random.default_rng(seed)
    return Batch(
        obs=rng.integers(0, 255, (batch_size, 4, 84, 84), dtype=np.uint8),
        actions=rng.integers(0, num_actions, batch_size),
        returns=rng.normal(size=batch_size).astype(np.float32),
        discounts=np.full(batch_size, 0.99, np.float32),
        next_obs=rng.integers(0, 255, (batch_size, 4, 84, 84), dtype=np.uint8),
        indices=np.arange(batch_size),
        weights=np.ones(batch_size, np.float32),
    )


def variant_agent(v: Variant, config: Config, num_actions: int, device: torch.device) -> DQNAgent:
    """The agent a training run of ``config`` builds (:mod:`atari_dqn.build`), with the
    variant's update settings; every variant starts from the same weights."""
    if v.preset is not None:
        config = preset_config(v.preset)
    config = config.replace(
        **dict(v.changes),
        fused_adam=v.fused,
        channels_last=v.channels_last,
        bf16=v.bf16,
        compile=v.compile,
    )
    online = build_online(config, num_actions, device, generator=torch.Generator().manual_seed(0))
    return build_agent(config, num_actions, device, online=online)


def update_benchmark(
    *,
    preset: str = "course",
    threads: list[int] | None = None,
    batch_size: int = 32,
    rounds: int = 7,
    inner: int = 5,
    compile: bool = False,
    device: str = "cpu",
    parts: bool = False,
) -> Result:
    """ms per update of each variant at each thread count; see the module docstring."""
    from atari_dqn.envs import resolve_actions
    from atari_dqn.perf import tune_allocator

    check_positive(batch=batch_size, rounds=rounds, inner=inner)
    for t in threads or []:
        check_positive(threads=t)
    config = preset_config("nature" if parts else preset)
    dev = resolve_device(device)  # UsageError where CUDA is asked for and missing
    tune_allocator()
    num_actions = len(resolve_actions(config.env_id, config.actions))
    batch = fixed_batch(num_actions, batch_size)
    variants = dict(PARTS if parts else VARIANTS)
    baseline = DQN if parts else PLAIN
    if compile:
        variants[COMPILED] = Variant(fused=True, channels_last=True, compile=True)
    if config.double and not parts:
        variants[ONE_PASS] = Variant(True, True, changes=(("one_pass_double", True),))
    previous = torch.get_num_threads()
    rows = []
    try:
        for t in threads or [previous]:
            torch.set_num_threads(t)
            agents: dict[str, DQNAgent] = {}
            first: dict[str, tuple[float, np.ndarray]] = {}
            warm_s: dict[str, float] = {}
            for name, v in variants.items():
                start = time.perf_counter()
                agents[name] = variant_agent(v, config, num_actions, dev)
                r = agents[name].update(batch)  # compiles, if it compiles
                first[name] = (float(r.loss), r.priority.float().cpu().numpy())
                for _ in range(2):
                    agents[name].update(batch)
                warm_s[name] = time.perf_counter() - start
            times: dict[str, list[float]] = {name: [] for name in variants}
            for _ in range(rounds):
                for name in variants:
                    start = time.perf_counter()
                    for _ in range(inner):
                        agents[name].update(batch)
                    if dev.type == "cuda":
                        torch.cuda.synchronize()
                    times[name].append((time.perf_counter() - start) / inner * 1e3)
            loss0, td0 = first[baseline]
            plain_ms = statistics.median(times[baseline])
            for name in variants:
                ms = statistics.median(times[name])
                loss, td = first[name]
                same = not parts or name == baseline  # parts: other losses, nothing to compare
                rows.append({
                    "threads": t, "variant": name, "ms": ms, "vs_plain": plain_ms / ms,
                    "loss_rel_diff": abs(loss - loss0) / max(abs(loss0), 1e-12) if same else None,
                    "td_max_abs_diff": float(np.max(np.abs(td - td0))) if same else None,
                    "first_update_s": warm_s[name], "runs_ms": times[name],
                })  # fmt: skip
    finally:
        torch.set_num_threads(previous)
    return {
        "settings": {
            "preset": preset,
            "batch_size": batch_size,
            "rounds": rounds,
            "inner": inner,
            "device": device,
            "compile": compile,
            "parts": parts,
        },  # fmt: skip
        "rows": rows,
    }


def update_table(result: Result) -> str:
    s = result["settings"]
    parts = s.get("parts", False)
    what = "Rainbow's parts" if parts else f"preset {s['preset']}"
    lines = [
        f"bench update: one batch-{s['batch_size']} update of {what} on "
        f"{s['device']}, median of {s['rounds']} rounds x {s['inner']} updates, variants in turn",
        f"{'threads':>7}  {'variant':<38}{'ms':>7}{'speed-up':>10}{'loss vs plain':>15}"
        f"{'max |dtd|':>11}",
    ]

    def num(x: float | None) -> str:
        return "-" if x is None else f"{x:.1e}"

    for r in result["rows"]:
        lines.append(
            f"{r['threads']:>7}  {r['variant']:<38}{r['ms']:>7.2f}{r['vs_plain']:>9.2f}x"
            f"{num(r['loss_rel_diff']):>15}{num(r['td_max_abs_diff']):>11}"
        )
    if parts:
        lines.append("speed-up: DQN's ms over the row's (below 1: the row costs more), same "
                     "thread count; all rows with fused Adam and channels-last")  # fmt: skip
    else:
        lines.append("speed-up: the plain path's ms over the row's, same thread count; "
                     "loss vs plain: relative difference of the first update's loss")  # fmt: skip
    return "\n".join(lines)
