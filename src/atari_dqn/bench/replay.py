"""``atari-dqn bench replay``: µs per add, sample and priority update, bytes per transition.

Uniform and prioritized replay (as :func:`atari_dqn.build.make_replay` builds them) at two
capacities, filled past capacity with synthetic episodes, and the course project's Fenwick
sampler on the same operations (sample 32 + update 32), so the speed-up over it is one number.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator

import numpy as np

from atari_dqn.bench.timing import Result, check_positive, median_us, warm_allocator
from atari_dqn.build import make_replay
from atari_dqn.config import ConfigError
from atari_dqn.replay import Replay
from atari_dqn.replay.prioritized import PrioritizedReplay
from atari_dqn.replay.storage import FrameStorage
from atari_dqn.replay.sum_tree import SumTree

REPLAY_KINDS = ("uniform", "prioritized")
ATARI_FRAME = (84, 84)
# Frames stored at capacities above this are tiny synthetic ones: 1M frames of 84x84 would need
# 7 GB of RAM, and neither the index draw nor the priority update depends on the frame size.
FULL_FRAMES_UP_TO = 100_000
SMALL_FRAME = (8, 8)
SMALL_CAPACITY = 100_000
COURSE_LEAVES = 2048  # priorities set in the course project's Fenwick tree before it is timed
BETA = 0.4


class EpisodeWriter:
    """Writes synthetic episodes (random lengths, random uint8 frames) into a replay, step by step.

    One :meth:`add` is one env step: ``append()``, plus ``begin()`` when an episode starts.
    """

    def __init__(
        self, replay: Replay, frame_shape: tuple[int, int], rng: np.random.Generator
    ) -> None:
        self.replay = replay
        self.rng = rng
        self.frames = rng.integers(0, 256, size=(256, *frame_shape), dtype=np.uint8)
        self._lengths: Iterator[int] = iter(())  # episode lengths, drawn in blocks
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


def _replay(kind: str, capacity: int, frame_shape: tuple[int, int], seed: int) -> Replay:
    """The replay a run of ``kind`` uses (n = 1), over frames of ``frame_shape``."""
    return make_replay(kind, capacity, np.random.default_rng(seed), frame_shape=frame_shape)


def bytes_per_transition(uses_priorities: bool, capacity: int) -> float:
    """Measured from array ``nbytes`` at 84x84 frames (allocated, never touched)."""
    total = FrameStorage(capacity, frame_shape=ATARI_FRAME).bytes_per_transition
    if uses_priorities:
        total += SumTree(capacity).nbytes / capacity
    return total


def bench_replay_kind(kind: str, capacity: int, batch: int, *, reps: int, seed: int = 0) -> Result:
    """Fill a ring past its capacity with synthetic episodes, then time each operation."""
    frame_shape = ATARI_FRAME if capacity <= FULL_FRAMES_UP_TO else SMALL_FRAME
    replay = _replay(kind, capacity, frame_shape, seed)
    rng = np.random.default_rng(seed + 1)
    writer = EpisodeWriter(replay, frame_shape, rng)
    start = time.perf_counter()
    for _ in range(capacity + capacity // 10):  # wrap: the steady state of a long run
        writer.add()
    fill_s = time.perf_counter() - start
    ready = np.flatnonzero(replay.storage.ready)
    # Varied priorities, as after many updates (a no-op for uniform replay).
    replay.update_priorities(ready, rng.exponential(1.0, size=len(ready)))

    def draw() -> np.ndarray:  # the part of sample() before the gather
        return replay.draw(batch, BETA)[0]

    pool = [(draw(), rng.exponential(1.0, size=batch)) for _ in range(64)]
    cursor: Iterator[tuple[np.ndarray, np.ndarray]] = iter(())

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

    tree_draw_update_us = None
    if isinstance(replay, PrioritizedReplay):  # its sum tree alone, as a second figure
        tree = replay.tree

        def tree_draw_update() -> None:
            tree.update(tree.sample_stratified(batch, rng), rng.random(batch) + 0.5)

        tree_draw_update_us = median_us(tree_draw_update, reps=reps)

    row = {
        "replay": kind,
        "capacity": capacity,
        "frame_shape": list(frame_shape),
        "add_us": median_us(writer.add, reps=reps),
        "draw_us": median_us(draw, reps=reps),
        "gather_us": median_us(lambda: replay.storage.gather(next_pair()[0]), reps=reps),
        "sample_us": median_us(lambda: replay.sample(batch, BETA), reps=reps),
        "update_us": median_us(update, reps=reps),
        "draw_update_us": median_us(draw_update, reps=reps),
        "tree_draw_update_us": tree_draw_update_us,
        "bytes_per_transition": bytes_per_transition(replay.uses_priorities, capacity),
        "fill_s": fill_s,
    }
    if isinstance(replay, PrioritizedReplay):
        replay.tree.check_valid()
    return row


def bench_course_fenwick(capacity: int, batch: int, *, reps: int, seed: int = 0) -> Result:
    """The course project's Fenwick sampler: ``batch`` draws, then ``batch`` priority changes."""
    from atari_dqn.bench.fenwick_course import CourseFenwickSampler

    rng = np.random.default_rng(seed)
    tree = CourseFenwickSampler(capacity)
    # Filling 1M leaves one `add` of the course project's at a time would take minutes. Its search
    # and change walk a fixed log2(N) path whatever the values, so a few thousand non-zero leaves
    # give the same cost per call.
    locs = rng.integers(1, capacity + 1, size=COURSE_LEAVES).tolist()
    for loc, p in zip(locs, rng.random(COURSE_LEAVES).tolist(), strict=True):
        tree.add(loc, p)
    pool = [(tree.sample(batch, rng), rng.exponential(1.0, size=batch)) for _ in range(4)]
    it = iter(pool * (reps + 2) * 2)

    def update() -> None:
        idx, td = next(it)
        tree.update(idx, td)

    def draw_update() -> None:
        tree.update(tree.sample(batch, rng), rng.exponential(1.0, size=batch))

    return {
        "replay": "course Fenwick",
        "capacity": capacity,
        "draw_us": median_us(lambda: tree.sample(batch, rng), inner=1, reps=reps),
        "update_us": median_us(update, inner=1, reps=reps),
        "draw_update_us": median_us(draw_update, inner=1, reps=reps),
        "course_nonzero_leaves": COURSE_LEAVES,
    }


def replay_benchmark(capacity: int, batch: int, *, reps: int = 15) -> Result:
    """All figures of ``bench replay`` as one JSON-able dict."""
    check_positive(capacity=capacity, batch=batch, reps=reps)
    if capacity < 64 or batch > capacity // 4:
        raise ConfigError(f"--capacity {capacity} is too small for --batch {batch}")
    capacities = sorted({min(SMALL_CAPACITY, capacity), capacity})
    warm_allocator()
    rows, course_rows, speedup, tree_speedup = [], [], {}, {}
    for cap in capacities:
        ours = None
        for kind in REPLAY_KINDS:
            row = bench_replay_kind(kind, cap, batch, reps=reps)
            rows.append(row)
            ours = row
            gc.collect()  # the 700 MB of 84x84 frames go before the next ring is filled
        course_row = bench_course_fenwick(cap, batch, reps=max(3, reps // 2))
        course_rows.append(course_row)
        assert ours is not None and ours["replay"] == "prioritized"
        speedup[str(cap)] = course_row["draw_update_us"] / ours["draw_update_us"]
        tree_speedup[str(cap)] = course_row["draw_update_us"] / ours["tree_draw_update_us"]
    return {
        "batch": batch,
        "reps": reps,
        "rows": rows,
        "course_fenwick": course_rows,
        "speedup_vs_course": speedup,
        "tree_speedup_vs_course": tree_speedup,
        "goals": {"draw_update_us_max": 20.0, "speedup_min": 300.0},
    }


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def replay_table(result: Result) -> str:
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
    for r in result["course_fenwick"]:
        lines.append(
            f"{r['replay']:<13}{r['capacity']:>10,}  {'-':<7}{'-':>7}{r['draw_us']:>8.0f}"
            f"{'-':>9}{'-':>9}{r['update_us']:>9.0f}{r['draw_update_us']:>10.0f}{'-':>14}"
        )
    lines.append("")
    prio = {r["capacity"]: r for r in result["rows"] if r["replay"] == "prioritized"}
    course = {r["capacity"]: r for r in result["course_fenwick"]}
    goals = result["goals"]
    max_us, min_x = goals["draw_update_us_max"], goals["speedup_min"]
    lines.append(
        f"sample {b} + update {b} (draw+upd) vs the course project's Fenwick sampler "
        f"(goals: <= {max_us:.0f} µs, >= {min_x:.0f}x):"
    )
    for cap, ratio in result["speedup_vs_course"].items():
        c = int(cap)
        ours, theirs = prio[c]["draw_update_us"], course[c]["draw_update_us"]
        tree_us, tree_ratio = prio[c]["tree_draw_update_us"], result["tree_speedup_vs_course"][cap]
        lines.append(
            f"  at {c:,}: PrioritizedReplay {ours:.1f} µs ({_verdict(ours <= max_us)}), "
            f"{ratio:,.0f}x faster ({_verdict(ratio >= min_x)}); SumTree alone {tree_us:.1f} µs, "
            f"{tree_ratio:,.0f}x; course Fenwick {theirs:,.0f} µs"
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
        "draw+upd: draw then update, timed together (the course project: sample() + update(), "
        "no gather)",
        "SumTree alone: sample_stratified + update, without IS weights, α and the ready check",
        "B/transition: storage array nbytes / capacity at 84x84 frames "
        "(+ sum tree nbytes / capacity for prioritized)",
        f"* frames {'x'.join(map(str, SMALL_FRAME))}: rings above {FULL_FRAMES_UP_TO:,} hold "
        "tiny synthetic frames (84x84 would need 7 GB), so add and gather there leave out the "
        "7 KB frame copies; draw and update do not depend on the frame size",
        "course Fenwick: the course project's treearray (fenwick_course.py), 2,048 non-zero "
        "leaves: its search and change walk a fixed log2(N) path whatever the values",
    ]
    return "\n".join(lines)
