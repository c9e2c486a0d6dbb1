"""Side-by-side throughput and memory benchmarks: ``atari-dqn bench replay|train``.

Benchmarks are commands, not tests: every figure is measured in one process, next to its
baseline, and reported as a ratio. Times are ``time.perf_counter`` medians over repetitions that
follow a warm-up (numba kernels compiled, caches and allocators warm).

* ``bench replay``: µs per add, sample and priority update of uniform and prioritized replay at
  two capacities, bytes per stored transition, and the seed's Fenwick sampler on the same
  operations (sample 32 + update 32), so the speed-up over the seed is one number.
* ``bench train``: env steps per second while learning, for each row of a table. A row is a
  name and its run cut into segments (:class:`Row`): the seed's single-file loop, atari-dqn at
  each preset, replay kind and env count. Rows take turns, one segment each, and each runs in
  a process of its own, set up as it would be when run for real.

This module does not import ``cli``: the CLI passes in the function that builds a training run.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from atari_dqn.config import Config, ConfigError, preset_config

REPLAY_KINDS = ("uniform", "prioritized")
ATARI_FRAME = (84, 84)
# Frames stored at capacities above this are tiny synthetic ones: 1M frames of 84x84 would need
# 7 GB of RAM, and neither the index draw nor the priority update depends on the frame size.
FULL_FRAMES_UP_TO = 100_000
SMALL_FRAME = (8, 8)
SMALL_CAPACITY = 100_000
SEED_LEAVES = 2048  # priorities set in the seed's Fenwick tree before it is timed


# ====================================================================== timing
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


def _check_positive(**values: int | None) -> None:
    """A one-line ConfigError for the first value <= 0 (None: not given, nothing to check)."""
    for name, value in values.items():
        if value is not None and value <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {value}")


# ====================================================================== bench replay
class EpisodeWriter:
    """Writes synthetic episodes (random lengths, random uint8 frames) into a replay, step by step.

    One :meth:`add` is one env step: ``append()``, plus ``begin()`` when an episode starts.
    """

    def __init__(self, replay: Any, frame_shape: tuple[int, int], rng: np.random.Generator) -> None:
        self.replay = replay
        self.rng = rng
        self.frames = rng.integers(0, 256, size=(256, *frame_shape), dtype=np.uint8)
        self._lengths = iter(())  # episode lengths, drawn in blocks
        self._left = 0  # steps left in the open episode; 0: none open
        self._k = 0

    def _next_length(self) -> int:
        try:
            return next(self._lengths)
        except StopIteration:
            # Breakout-like: a life lasts tens to hundreds of agent steps.
            self._lengths = iter(self.rng.integers(20, 400, size=1024).tolist())
            return next(self._lengths)

    def add(self) -> None:
        k = self._k = (self._k + 1) & 255
        if self._left == 0:
            self._left = self._next_length()
            self.replay.begin(0, self.frames[k])
            k = self._k = (k + 1) & 255
        self._left -= 1
        self.replay.append(0, k & 3, float(k & 1), self.frames[k], self._left == 0, False)


def _build_replay(kind: str, capacity: int, frame_shape: tuple[int, int], seed: int) -> Any:
    from atari_dqn.replay.prioritized import PrioritizedReplay
    from atari_dqn.replay.storage import FrameStorage
    from atari_dqn.replay.uniform import UniformReplay

    storage = FrameStorage(capacity, frame_shape=frame_shape)
    rng = np.random.default_rng(seed)
    if kind == "prioritized":
        return PrioritizedReplay(storage, rng, alpha=0.6, priority_eps=1e-6)
    return UniformReplay(storage, rng)


def _index_draw(replay: Any, batch: int, beta: float) -> Callable[[], np.ndarray]:
    """The part of ``sample()`` before the gather: indices (and IS weights if prioritized)."""
    tree = getattr(replay, "tree", None)
    if tree is None:
        return lambda: replay.sample_indices(batch)

    def draw() -> np.ndarray:
        idx = tree.sample_stratified(batch, replay.rng)
        replay.importance_weights(idx, beta)
        return idx

    return draw


def bytes_per_transition(kind: str, capacity: int) -> float:
    """Measured from array ``nbytes`` at 84x84 frames (allocated, never touched)."""
    from atari_dqn.replay.storage import FrameStorage
    from atari_dqn.replay.sum_tree import SumTree

    total = FrameStorage(capacity, frame_shape=ATARI_FRAME).bytes_per_transition
    if kind == "prioritized":
        total += SumTree(capacity).nbytes / capacity
    return total


def bench_replay_kind(kind: str, capacity: int, batch: int, *, reps: int, seed: int = 0) -> dict:
    """Fill a ring past its capacity with synthetic episodes, then time each operation."""
    frame_shape = ATARI_FRAME if capacity <= FULL_FRAMES_UP_TO else SMALL_FRAME
    replay = _build_replay(kind, capacity, frame_shape, seed)
    rng = np.random.default_rng(seed + 1)
    writer = EpisodeWriter(replay, frame_shape, rng)
    start = time.perf_counter()
    for _ in range(capacity + capacity // 10):  # wrap: the steady state of a long run
        writer.add()
    fill_s = time.perf_counter() - start
    ready = np.flatnonzero(replay.storage.ready)
    # Varied priorities, as after many updates (a no-op for uniform replay).
    replay.update_priorities(ready, rng.exponential(1.0, size=len(ready)))

    beta = 0.4
    draw = _index_draw(replay, batch, beta)
    pool = [(draw(), rng.exponential(1.0, size=batch)) for _ in range(64)]
    cursor = iter(())

    def next_pair() -> tuple[np.ndarray, np.ndarray]:
        nonlocal cursor
        try:
            return next(cursor)
        except StopIteration:
            cursor = iter(pool)
            return next(cursor)

    def update() -> None:
        idx, td = next_pair()
        replay.update_priorities(idx, td)

    def draw_update() -> None:
        replay.update_priorities(draw(), rng.exponential(1.0, size=batch))

    tree = getattr(replay, "tree", None)
    tree_draw_update_us = None
    if tree is not None:

        def tree_draw_update() -> None:
            tree.update(tree.sample_stratified(batch, replay.rng), rng.random(batch) + 0.5)

        tree_draw_update_us = median_us(tree_draw_update, reps=reps)

    row = {
        "replay": kind,
        "capacity": capacity,
        "frame_shape": list(frame_shape),
        "add_us": median_us(writer.add, reps=reps),
        "draw_us": median_us(draw, reps=reps),
        "gather_us": median_us(lambda: replay.storage.gather(next_pair()[0]), reps=reps),
        "sample_us": median_us(lambda: replay.sample(batch, beta), reps=reps),
        "update_us": median_us(update, reps=reps),
        "draw_update_us": median_us(draw_update, reps=reps),
        "tree_draw_update_us": tree_draw_update_us,
        "bytes_per_transition": bytes_per_transition(kind, capacity),
        "fill_s": fill_s,
    }
    if tree is not None:
        tree.check_valid()
    return row


def bench_seed_fenwick(capacity: int, batch: int, *, reps: int, seed: int = 0) -> dict:
    """The seed's Fenwick sampler: ``batch`` draws, then ``batch`` priority changes."""
    from atari_dqn.replay.fenwick_seed import SeedFenwickSampler

    rng = np.random.default_rng(seed)
    tree = SeedFenwickSampler(capacity)
    # Filling 1M leaves one seed `add` at a time would take minutes. Its search and change
    # walk a fixed log2(N) path whatever the values, so a few thousand non-zero leaves give
    # the same cost per call.
    locs = rng.integers(1, capacity + 1, size=SEED_LEAVES).tolist()
    for loc, p in zip(locs, rng.random(SEED_LEAVES).tolist(), strict=True):
        tree.add(loc, p)
    pool = [(tree.sample(batch, rng), rng.exponential(1.0, size=batch)) for _ in range(4)]
    it = iter(pool * (reps + 2) * 2)

    def update() -> None:
        idx, td = next(it)
        tree.update(idx, td)

    def draw_update() -> None:
        tree.update(tree.sample(batch, rng), rng.exponential(1.0, size=batch))

    return {
        "replay": "seed Fenwick",
        "capacity": capacity,
        "draw_us": median_us(lambda: tree.sample(batch, rng), inner=1, reps=reps),
        "update_us": median_us(update, inner=1, reps=reps),
        "draw_update_us": median_us(draw_update, inner=1, reps=reps),
        "seed_nonzero_leaves": SEED_LEAVES,
    }


def replay_benchmark(capacity: int, batch: int, *, reps: int = 15) -> dict:
    """All figures of ``bench replay`` as one JSON-able dict."""
    _check_positive(capacity=capacity, batch=batch)
    if capacity < 64 or batch > capacity // 4:
        raise ConfigError(f"--capacity {capacity} is too small for --batch {batch}")
    capacities = sorted({min(SMALL_CAPACITY, capacity), capacity})
    warm_allocator()
    rows, seed_rows, speedup, tree_speedup = [], [], {}, {}
    for cap in capacities:
        ours = None
        for kind in REPLAY_KINDS:
            row = bench_replay_kind(kind, cap, batch, reps=reps)
            rows.append(row)
            ours = row
            gc.collect()  # the 700 MB of 84x84 frames go before the next ring is filled
        seed_row = bench_seed_fenwick(cap, batch, reps=max(3, reps // 2))
        seed_rows.append(seed_row)
        assert ours is not None and ours["replay"] == "prioritized"
        speedup[str(cap)] = seed_row["draw_update_us"] / ours["draw_update_us"]
        tree_speedup[str(cap)] = seed_row["draw_update_us"] / ours["tree_draw_update_us"]
    return {
        "batch": batch,
        "reps": reps,
        "rows": rows,
        "seed_fenwick": seed_rows,
        "speedup_vs_seed": speedup,
        "tree_speedup_vs_seed": tree_speedup,
        "goals": {"draw_update_us_max": 20.0, "speedup_min": 300.0},
    }


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def replay_table(result: dict) -> str:
    b = result["batch"]
    lines = [
        f"bench replay: batch {b}, median of {result['reps']} repetitions after a warm-up; "
        "µs per call",
        f"{'replay':<13}{'capacity':>10}  {'frames':<7}{'add':>7}{'draw':>8}{'gather':>9}"
        f"{'sample':>9}{'update':>9}{'draw+upd':>10}{'B/transition':>14}",
    ]
    for r in result["rows"]:
        shape = "x".join(map(str, r["frame_shape"])) + ("" if r["frame_shape"] == [84, 84] else "*")
        lines.append(
            f"{r['replay']:<13}{r['capacity']:>10,}  {shape:<7}{r['add_us']:>7.1f}"
            f"{r['draw_us']:>8.1f}{r['gather_us']:>9.1f}{r['sample_us']:>9.1f}"
            f"{r['update_us']:>9.1f}{r['draw_update_us']:>10.1f}"
            f"{r['bytes_per_transition']:>14,.1f}"
        )
    for r in result["seed_fenwick"]:
        lines.append(
            f"{r['replay']:<13}{r['capacity']:>10,}  {'-':<7}{'-':>7}{r['draw_us']:>8.0f}"
            f"{'-':>9}{'-':>9}{r['update_us']:>9.0f}{r['draw_update_us']:>10.0f}{'-':>14}"
        )
    lines.append("")
    prio = {r["capacity"]: r for r in result["rows"] if r["replay"] == "prioritized"}
    seed = {r["capacity"]: r for r in result["seed_fenwick"]}
    goals = result["goals"]
    max_us, min_x = goals["draw_update_us_max"], goals["speedup_min"]
    lines.append(
        f"sample {b} + update {b} (draw+upd) vs the seed's Fenwick sampler "
        f"(goals: <= {max_us:.0f} µs, >= {min_x:.0f}x):"
    )
    for cap, ratio in result["speedup_vs_seed"].items():
        c = int(cap)
        ours, theirs = prio[c]["draw_update_us"], seed[c]["draw_update_us"]
        tree_us, tree_ratio = prio[c]["tree_draw_update_us"], result["tree_speedup_vs_seed"][cap]
        lines.append(
            f"  at {c:,}: PrioritizedReplay {ours:.1f} µs ({_verdict(ours <= max_us)}), "
            f"{ratio:,.0f}x faster ({_verdict(ratio >= min_x)}); SumTree alone {tree_us:.1f} µs, "
            f"{tree_ratio:,.0f}x; seed Fenwick {theirs:,.0f} µs"
        )
    lines += [
        "",
        "add: one env step into a full ring (append(), and begin() at episode starts; "
        "prioritized: plus its tree writes)",
        "draw: the index draw of sample() (uniform: rejection draw of ready slots; prioritized: "
        "stratified sum-tree descent + IS weights)",
        f"gather: building the batch from indices ({b} x 2 stacks of 4 frames); "
        "sample = sample() end to end = draw + gather",
        f"update: update_priorities({b} TD errors) (a no-op for uniform); "
        "draw+upd: draw then update, timed together (the seed: sample() + update(), no gather)",
        "SumTree alone: sample_stratified + update, without IS weights, α and the ready check",
        "B/transition: storage array nbytes / capacity at 84x84 frames "
        "(+ sum tree nbytes / capacity for prioritized)",
        f"* frames {'x'.join(map(str, SMALL_FRAME))}: rings above {FULL_FRAMES_UP_TO:,} hold "
        "tiny synthetic frames (84x84 would need 7 GB), so add and gather there leave out the "
        "7 KB frame copies; draw and update do not depend on the frame size",
        "seed Fenwick: the seed's treearray (fenwick_seed.py), 2,048 non-zero leaves: its search "
        "and change walk a fixed log2(N) path whatever the values",
    ]
    return "\n".join(lines)


# ====================================================================== bench train
@dataclass(frozen=True)
class Row:
    """One line of ``bench train``: a name and the run it measures, in segments.

    ``segments()`` returns an iterator; each ``next()`` runs the row a little further (about
    100 env steps for a training loop) and returns how many env steps of that call count
    (0 while warming up). The runner times each call and advances all rows in turn, one
    segment each, so a slow spell of a shared machine hits every row alike. A row that cannot
    pause (a subprocess, say) may do all its work in one segment.
    """

    name: str
    segments: Callable[[], Iterator[int]]
    note: str = ""


@dataclass
class RowResult:
    name: str
    steps_per_s: float  # median over repeats
    repeats: list[float] = field(default_factory=list)  # env steps/s of each repeat
    note: str = ""


@dataclass(frozen=True)
class TrainBenchSettings:
    """How each training row is run: warm-up, then a 100-step ramp, then ``steps`` measured."""

    steps: int
    warmup: int
    preset: str = "seed"
    device: str = "cpu"
    buffer_size: int | None = None  # None: the preset's
    threads: int | None = None  # torch CPU threads; None: torch's default
    ramp: int = 100  # learning steps after warm-up before the clock starts (first updates)

    def config(
        self, replay: str, preset: str | None = None, num_envs: int = 1, bf16: bool = False
    ) -> Config:
        """The run a row measures: the preset, with evaluation pushed past the end."""
        base = preset_config(preset or self.preset)
        start = self.measure_from()
        total = start + self.steps
        changes: dict[str, Any] = {
            "bf16": bf16,
            "num_envs": num_envs,
            "device": self.device,
            "warmup_steps": self.warmup,
            "total_steps": total,
            "eval_every": total + 1,  # no evaluation inside the measured run
            "eval_games": 1,
            # ε at its final value, so acting runs the network as in most of a real run.
            "eps_decay": 1,
        }
        if self.buffer_size is not None:
            changes["buffer_size"] = self.buffer_size
        if replay != "preset":  # "preset": the preset's own replay
            changes["replay"] = replay
        config = base.replace(**changes)
        config.validate()
        return config

    def measure_from(self) -> int:
        """The step whose progress report starts the clock (reports come every 100 steps)."""
        return -(-(self.warmup + self.ramp) // 100) * 100


def loop_segments(build: Callable[[], Any], measure_from: int) -> Iterator[int]:
    """A training run as segments: one per progress report (100 steps); steps count once the
    report at ``measure_from`` has passed. ``build()`` runs inside the first, unmeasured one."""
    training = build()
    prev = None
    for report in training.loop.run():
        yield report.step - prev if prev is not None and prev >= measure_from else 0
        prev = report.step


def config_segments(build: Callable[[Config], Any], config: Config, measure_from: int):
    """:func:`loop_segments` of ``build(config)``, from arguments a child process can receive."""
    return loop_segments(lambda: build(config), measure_from)


def _segment_server(conn: Any, factory: Callable, kwargs: dict, threads: int | None) -> None:
    """Child side of :func:`child_segments`: one segment per request, its count sent back."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    segments = None
    while conn.recv():
        try:
            if segments is None:
                segments = iter(factory(**kwargs))
            value = next(segments)
        except StopIteration:
            conn.send(("done", None))
            return
        except BaseException as exc:  # reported by the parent, which owns the terminal
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
            return
        conn.send(("segment", value))


def child_segments(factory: Callable, kwargs: dict, threads: int | None = None) -> Iterator[Any]:
    """``factory(**kwargs)``'s segments, each run in a fresh process of the row's own.

    Each row lives in a process as it would when run for real: its allocator, threads and
    warm caches are its own (a training process tunes its allocator, the seed's script does
    not), and no row inherits another's state. The parent asks for one segment at a time and
    waits, so only one row runs at any moment. ``factory`` and ``kwargs`` must be picklable.
    """
    import multiprocessing as mp

    # Forked from a clean server (no fork of a process that holds torch's threads), which has
    # imported what every row needs, so a row starts in a fraction of a second.
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "atari_dqn.cli", "atari_dqn.bench"])
    parent, child = ctx.Pipe()
    process = ctx.Process(target=_segment_server, args=(child, factory, kwargs, threads))
    process.daemon = True
    process.start()
    child.close()
    try:
        while True:
            parent.send(True)
            try:
                kind, value = parent.recv()
            except EOFError:
                process.join(timeout=5)
                msg = f"bench row process died (exit code {process.exitcode})"
                raise RuntimeError(msg) from None
            if kind == "done":
                return
            if kind == "error":
                raise RuntimeError(f"bench row failed in its process: {value}")
            yield value
    finally:
        try:
            parent.send(False)
        except OSError:
            pass
        process.join(timeout=30)
        if process.is_alive():
            process.kill()
            process.join()
        parent.close()


def config_rows(
    settings: TrainBenchSettings,
    build: Callable,
    *,
    presets: list[str],
    kinds: list[str],
    num_envs: list[int],
    bf16: tuple[bool, ...] = (False,),
) -> list[Row]:
    """One row per (preset, replay kind, env count, precision); names show what varies. Each row
    runs in its own process (:func:`child_segments`); ``build`` must be a module function."""
    start = settings.measure_from()
    rows = []
    for preset in presets:
        for kind in kinds:
            for n in num_envs:
                for half in bf16:
                    parts = [preset] if len(presets) > 1 else []
                    parts += [kind] if len(kinds) > 1 else []
                    parts += [f"N={n}"] if len(num_envs) > 1 else []
                    name = " ".join(parts) or f"atari-dqn {kind} N={n}"
                    if len(presets) == 1 and len(kinds) == 1 and len(num_envs) > 1:
                        name = f"atari-dqn N={n}"
                    name += " --bf16" if half else ""
                    config = settings.config(kind, preset, n, bf16=half)
                    kwargs = {"build": build, "config": config, "measure_from": start}

                    def segments(kwargs=kwargs) -> Iterator[int]:
                        return child_segments(config_segments, kwargs, settings.threads)

                    note = f"preset={preset} replay={kind} envs={n} bf16={half}"
                    rows.append(Row(name, segments, note=note))
    return rows


def seed_loop_row(settings: TrainBenchSettings, env_id: str) -> Row:
    """The baseline: the seed's single-file loop, at the same warm-up, ε and length, in a
    process of its own with the defaults a plain ``python main.py`` gets."""
    start = settings.measure_from()
    total = start + settings.steps
    kwargs = {"env_id": env_id, "warmup": settings.warmup, "measure_from": start, "total": total,
              "epsilon": 0.1}  # fmt: skip
    return Row(
        "seed loop",
        lambda: child_segments(seed_loop_segments, kwargs, settings.threads),
        note="single-file transcription of the seed's main.py (bench.seed_loop_segments)",
    )


def run_rows(rows: list[Row], repeats: int = 1) -> list[RowResult]:
    """Run all rows side by side, one segment each in turn, ``repeats`` times; env steps/s.

    Only the time inside a row's own segments counts toward its figure.
    """
    results = [RowResult(r.name, 0.0, [], r.note) for r in rows]
    for _ in range(repeats):
        running = {i: iter(r.segments()) for i, r in enumerate(rows)}
        steps = [0] * len(rows)
        seconds = [0.0] * len(rows)
        while running:
            for i, it in list(running.items()):
                start = time.perf_counter()
                try:
                    counted = next(it)
                except StopIteration:
                    del running[i]
                    continue
                if counted:
                    seconds[i] += time.perf_counter() - start
                    steps[i] += counted
        for i, res in enumerate(results):
            if steps[i] == 0:
                raise RuntimeError(f"row {res.name!r} ended before its measurement began")
            res.repeats.append(steps[i] / seconds[i])
        gc.collect()
    for res in results:
        res.steps_per_s = statistics.median(res.repeats)
    return results


def train_result(settings: TrainBenchSettings, results: list[RowResult]) -> dict:
    by_name = {r.name: r.steps_per_s for r in results}
    ratios = {f"{r.name}/{results[0].name}": r.steps_per_s / results[0].steps_per_s
              for r in results[1:]}  # fmt: skip
    if "prioritized" in by_name and "uniform" in by_name:
        ratios["prioritized/uniform"] = by_name["prioritized"] / by_name["uniform"]
    return {
        "settings": {**asdict(settings), "measure_from": settings.measure_from()},
        "rows": [asdict(r) for r in results],
        "ratios": ratios,
        "goals": {"prioritized/uniform_min": 0.9},
    }


def train_table(result: dict) -> str:
    s = result["settings"]
    first = result["rows"][0]
    vs = "vs " + first["name"]
    name_w = max(28, 2 + max(len(r["name"]) for r in result["rows"]))
    ratio_w = max(16, len(vs))
    lines = [
        f"bench train: preset {s['preset']}, device {s['device']} "
        f"({s['threads'] or 'default'} torch threads), warm-up {s['warmup']} steps, "
        f"clock from step {s['measure_from']}, {s['steps']} learning steps measured per run; "
        "rows run side by side, 100 steps at a time, each in its own process",
        f"{'row':<{name_w}}{'env steps/s':>12}  {vs:>16}   runs (steps/s)",
    ]
    for r in result["rows"]:
        runs = " ".join(f"{x:.1f}" for x in r["repeats"])
        ratio = r["steps_per_s"] / first["steps_per_s"]
        lines.append(
            f"{r['name']:<{name_w}}{r['steps_per_s']:>12.1f}  {ratio:>{ratio_w}.3f}   {runs}"
        )
    if "prioritized/uniform" in result["ratios"]:
        ratio = result["ratios"]["prioritized/uniform"]
        goal = result["goals"]["prioritized/uniform_min"]
        lines.append(
            f"prioritized/uniform = {ratio:.3f} (goal >= {goal}: "
            f"{'met' if ratio >= goal else 'NOT met'})"
        )
    return "\n".join(lines)


# ====================================================================== the seed's loop
def seed_loop_segments(
    *, env_id: str, warmup: int, measure_from: int, total: int, epsilon: float, seed: int = 0
) -> Iterator[int]:
    """A faithful single-file transcription of the seed's training loop, as bench segments.

    As the seed's ``main.py``: one env, a deque of the last 5 frames, batch-1 acting from a float
    tensor stack, a replay of 5-frame uint8 stacks pushed every step (``make_folded_state``),
    ``torch.randint`` sampling, an update every 4 steps with batch 32 (policy and target
    forwards, smooth L1, backward, ``clamp_(-1, 1)``, per-tensor Adam 6.25e-5), ``loss.item()``,
    target sync every 10,000 steps. Preprocessing is atari-dqn's env with a stack of 1, so the
    emulator cost is the same on both sides and the difference is the loop. ε is held at
    ``epsilon`` (the seed decays it) so the acting cost is that of the bulk of a run.
    Yields every 100 steps, like a training row: the steps that count once ``measure_from``
    has passed.
    """
    import random
    from collections import deque

    import torch
    import torch.nn.functional as F

    from atari_dqn.envs import make_env, resolve_actions
    from atari_dqn.networks import QNetwork

    actions = resolve_actions(env_id, "seed")
    env = make_env(env_id, training=True, actions=actions, frame_stack=1)
    device = torch.device("cpu")
    capacity = total + 1
    g = torch.Generator().manual_seed(seed)
    policy, target = QNetwork(len(actions), generator=g), QNetwork(len(actions))
    target.load_state_dict(policy.state_dict())
    optimizer = torch.optim.Adam(policy.parameters(), lr=6.25e-5, eps=1.5e-4)
    m_states = torch.zeros((capacity, 5, 84, 84), dtype=torch.uint8)
    m_actions = torch.zeros((capacity, 1), dtype=torch.long)
    m_rewards = torch.zeros((capacity, 1), dtype=torch.int8)
    m_dones = torch.zeros((capacity, 1), dtype=torch.bool)
    pos, size = 0, 0
    r = random.Random(seed)
    obs_queue: deque = deque(maxlen=5)
    done = True
    for step in range(total):
        if step and step % 100 == 0:
            yield 100 if step - 100 >= measure_from else 0
        if done:
            obs, _ = env.reset(seed=seed) if step == 0 else env.reset()
            frame = torch.from_numpy(obs[-1]).view(1, 84, 84)
            for _ in range(5):
                obs_queue.append(frame)
        training = size > warmup
        state = torch.cat(list(obs_queue)[1:]).unsqueeze(0).to(device).float()
        if r.random() > epsilon:
            with torch.no_grad():
                action = policy(state).max(1).indices.item()
        else:
            action = r.randint(0, len(actions) - 1)
        obs, reward, terminated, truncated, _ = env.step(action)
        done = terminated or truncated
        obs_queue.append(torch.from_numpy(obs[-1]).view(1, 84, 84))
        m_states[pos] = torch.cat(list(obs_queue)).unsqueeze(0)
        m_actions[pos, 0], m_rewards[pos, 0], m_dones[pos, 0] = action, int(reward), done
        pos = (pos + 1) % capacity
        size = max(size, pos)
        if step % 4 == 0 and training:
            idx = torch.randint(0, high=size, size=(32,))
            b_state = m_states[idx, :4].to(device).float()
            b_next = m_states[idx, 1:].to(device).float()
            b_action = m_actions[idx].to(device)
            b_reward = m_rewards[idx].to(device).float()
            b_done = m_dones[idx].to(device).float()
            values = policy(b_state).gather(1, b_action)
            values_next = target(b_next).max(1).values.detach()
            expected = (0.99 * values_next.unsqueeze(1)) * (1.0 - b_done) + b_reward
            loss = F.smooth_l1_loss(values, expected)
            optimizer.zero_grad()
            loss.backward()
            for param in policy.parameters():
                param.grad.data.clamp_(-1, 1)
            optimizer.step()
            loss.item()
        if step % 10_000 == 0:
            target.load_state_dict(policy.state_dict())
    last = (total - 1) // 100 * 100
    yield total - last if last >= measure_from else 0


# The update alone, timed both ways: as the seed does it and as atari-dqn does (the default).
UPDATE_PATHS = {"per-tensor Adam, NCHW": False, "fused Adam, channels-last": True}


def once(fn: Callable, kwargs: dict) -> Iterator[Any]:
    """``fn(**kwargs)`` as a single segment, to run it in a child process."""
    yield fn(**kwargs)


def ceilings(settings: TrainBenchSettings, num_envs: list[int], batch_size: int = 32) -> dict:
    """What the trainer cannot beat: env steps/s of random play, ms of one update alone.

    Run it in a process set up as a training process is (:func:`tune_allocator`)."""
    import torch

    from atari_dqn.envs import make_env, resolve_actions
    from atari_dqn.updatebench import Variant, build_agent, fixed_batch
    from atari_dqn.vector import AtariVector, SingleEnv

    config = settings.config("uniform")
    actions = resolve_actions(config.env_id, config.actions)
    rng = np.random.default_rng(0)
    env_rates = {}
    for n in sorted(set(num_envs)):
        if n == 1:
            env: Any = SingleEnv(make_env(config.env_id, training=True, actions=actions))
        else:
            env = AtariVector(config.env_id, n, actions=actions)
        env.reset(seed=0)
        steps, start = 0, time.perf_counter()
        while steps < max(2000, 200 * n):
            env.send(rng.integers(0, len(actions), size=n))
            steps += int(env.recv().transition.sum())
        env_rates[f"N={n}"] = steps / (time.perf_counter() - start)
    batch = fixed_batch(len(actions), batch_size)
    device = torch.device(settings.device)
    update_ms = {}
    for name, fast in UPDATE_PATHS.items():
        agent = build_agent(Variant(fused=fast, channels_last=fast), config, len(actions), device)
        update_ms[name] = median_us(lambda agent=agent: agent.update(batch), inner=3, reps=7) / 1000
    return {
        "env_steps_per_s": env_rates,
        "update_ms": update_ms,
        "batch_size": batch_size,
        "update_every": config.update_every,
    }


def training_ceilings(settings: TrainBenchSettings, num_envs: list[int]) -> dict:
    """:func:`ceilings` in a process whose allocator is set up as a training process's."""
    from atari_dqn.perf import tune_allocator

    tune_allocator()
    return ceilings(settings, num_envs)


def ceilings_table(c: dict) -> list[str]:
    envs = ", ".join(f"{k} {v:.0f}" for k, v in c["env_steps_per_s"].items())
    upd = ", ".join(f"{k} {v:.1f} ms" for k, v in c["update_ms"].items())
    best = min(c["update_ms"].values())
    return [
        f"ceilings: random play (env only) steps/s: {envs}",
        f"          one batch-{c['batch_size']} update alone: {upd}"
        f" -> at most {1000 * c['update_every'] / best:.0f} steps/s at one update per"
        f" {c['update_every']} steps",
    ]


# ====================================================================== bench memory
def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def memory_soak(build: Callable, config: Config, samples: int = 10) -> dict:
    """Train ``config`` and record RSS at evenly spaced steps once the replay is full.

    A leak shows as RSS growing after the replay stops growing; a flat line is the goal.
    """
    training = build(config)
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


def memory_table(result: dict) -> str:
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


def cmd_memory(args: argparse.Namespace, build: Callable) -> int:
    """``atari-dqn bench memory``: a soak, not a test; RSS must stay flat."""
    _check_positive(steps=args.steps, buffer_size=args.buffer_size)
    config = preset_config(args.preset).replace(
        buffer_size=args.buffer_size,
        warmup_steps=min(args.buffer_size, 5_000),
        total_steps=args.steps,
        eval_every=args.steps + 1,
        device=args.device,
    )
    config.validate()
    if args.steps <= config.buffer_size + config.warmup_steps:
        raise ConfigError(
            f"--steps {args.steps} must exceed --buffer-size {args.buffer_size} (and its warm-up)"
            " so the replay fills and the soak can watch RSS after that"
        )
    result = memory_soak(build, config)
    print(json.dumps(result) if args.json else memory_table(result), flush=True)
    return 0


# ====================================================================== commands
def parse_kinds(text: str) -> list[str]:
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    if not kinds:
        raise ConfigError("--replay needs at least one of: " + ", ".join(REPLAY_KINDS))
    for k in kinds:
        if k not in (*REPLAY_KINDS, "preset"):
            raise ConfigError(f"unknown replay kind {k!r} in --replay: choose from "
                              + ", ".join(REPLAY_KINDS))  # fmt: skip
    return kinds


def cmd_replay(args: argparse.Namespace) -> int:
    """``atari-dqn bench replay``."""
    _check_positive(capacity=args.capacity, batch=args.batch, reps=args.reps)
    result = replay_benchmark(args.capacity, args.batch, reps=args.reps)
    print(json.dumps(result) if args.json else replay_table(result), flush=True)
    return 0


def cmd_train(args: argparse.Namespace, build: Callable) -> int:
    """``atari-dqn bench train``; ``build(config)`` builds a training run (the CLI's)."""
    kinds = parse_kinds(args.replay)
    presets = [p.strip() for p in args.preset.split(",") if p.strip()]
    for p in presets:
        preset_config(p)  # ConfigError names an unknown preset
    try:
        num_envs = [int(n) for n in str(args.num_envs).split(",") if n.strip()]
    except ValueError:
        msg = f"--num-envs takes comma-separated integers, got {args.num_envs!r}"
        raise ConfigError(msg) from None
    _check_positive(steps=args.steps, repeats=args.repeats, num_envs=min(num_envs or [0]))
    if not presets:
        raise ConfigError("--preset needs at least one preset")
    if args.warmup < 0:
        raise ConfigError(f"--warmup must be >= 0, got {args.warmup}")
    if args.buffer_size is not None:
        _check_positive(buffer_size=args.buffer_size)
    if args.threads is not None:
        _check_positive(threads=args.threads)
    settings = TrainBenchSettings(
        steps=args.steps,
        warmup=args.warmup,
        preset=presets[0],
        device=args.device,
        buffer_size=args.buffer_size,
    )
    for p in presets:
        for n in num_envs:
            settings.config(kinds[0], p, n)  # a bad combination fails here, before any run
    import torch

    previous = torch.get_num_threads()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        settings = dataclasses.replace(settings, threads=torch.get_num_threads())
        precisions = (False, True) if args.bf16 else (False,)
        rows = config_rows(settings, build, presets=presets, kinds=kinds, num_envs=num_envs,
                           bf16=precisions)  # fmt: skip
        if args.seed_loop:
            rows.insert(0, seed_loop_row(settings, settings.config(kinds[0]).env_id))
        result = train_result(settings, run_rows(rows, args.repeats))
        if args.ceilings:
            what = {"settings": settings, "num_envs": num_envs}
            kwargs = {"fn": training_ceilings, "kwargs": what}
            (result["ceilings"],) = child_segments(once, kwargs, settings.threads)
    finally:
        torch.set_num_threads(previous)
    table = train_table(result)
    if "ceilings" in result:
        table += "\n" + "\n".join(ceilings_table(result["ceilings"]))
    print(json.dumps(result) if args.json else table, flush=True)
    return 0
