"""``atari-dqn bench checkpoint``: bytes and seconds per checkpoint, chunked vs the whole array.

A replay of ``--capacity`` slots of 84x84 frames (in ``--envs`` rings, one per env, agent steps
going to each in turn) is filled with synthetic episodes to 10%, 50% and 100%, then run
``--more`` steps further (the ring wraps); at each point a checkpoint is saved in
the current layout (:func:`atari_dqn.checkpoint.save_checkpoint`: the filled chunks, or only
those written since the previous save) and in the baseline, the layout before it (one file
holding the replay's arrays at full capacity, :func:`save_whole_array`), in the same run, into
a temporary directory that is deleted afterwards; which of the two goes first alternates, and
each starts after ``sync``. Seconds are the disk's: on a shared disk they vary from run to run
far more than bytes do. The agent is a real one (one update made, so
its Adam moments exist) and goes into both.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import save_file

from atari_dqn.artifacts import atomic_replace
from atari_dqn.bench.timing import Result, check_positive
from atari_dqn.build import available_memory, build_agent, make_replay
from atari_dqn.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_NAME,
    ReplayOnDisk,
    SaveInfo,
    StatefulAgent,
    StatefulLoop,
    chunk_slots_for,
    save_checkpoint,
)
from atari_dqn.config import Config, ConfigError
from atari_dqn.replay import Replay
from atari_dqn.replay.storage import FrameStorage
from atari_dqn.replay.sum_tree import SumTree

FILLS = (0.1, 0.5, 1.0)
EPISODE = 400  # agent steps per synthetic episode


class _Position:
    """The loop's part of a checkpoint (a step count: the bench has no loop)."""

    def __init__(self) -> None:
        self.step = 0

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return {}, {"step": self.step}

    def load_state(
        self, arrays: dict[str, np.ndarray], meta: dict[str, Any], *, replay_restored: bool
    ) -> None:
        self.step = int(meta["step"])


class _Filler:
    """Synthetic episodes into a replay: frames from a fixed pool of random ones; agent steps
    go to the envs' streams in turn, as a vector env's do."""

    def __init__(self, replay: Replay, position: _Position, envs: int) -> None:
        self.replay, self.position, self.envs = replay, position, envs
        self.pool = np.random.default_rng(0).integers(0, 256, (61, 84, 84), dtype=np.uint8)
        self.k = 0
        for s in range(envs):
            self.replay.begin(s, self.pool[s])

    def steps(self, n: int) -> None:
        for _ in range(n):
            self.k += 1
            stream, t = self.k % self.envs, -(-self.k // self.envs)  # t: that env's step
            frame = self.pool[self.k % len(self.pool)]
            end = t % EPISODE == 0
            self.replay.append(stream, t % 3, float(t % 2), frame, end, False)
            if end:
                self.replay.begin(stream, frame)
        self.position.step += n

    def fill_to(self, slots: int) -> None:
        """Until ``slots`` slots hold frames (an episode's start may add one more)."""
        while (filled := sum(b - a for a, b in self.replay.frame_ranges())) < slots:
            self.steps(slots - filled)


def save_whole_array(
    path: Path, *, agent: StatefulAgent, replay: Replay, loop: StatefulLoop
) -> tuple[int, float]:
    """The baseline: the layout before chunks (checkpoint version 1), every array of the
    replay at full capacity in one file, written atomically. Returns (bytes, seconds)."""
    start = time.perf_counter()
    arrays: dict[str, np.ndarray] = {}
    tensors, agent_meta = agent.state()
    arrays |= {f"agent/{k}": t.detach().cpu().contiguous().numpy() for k, t in tensors.items()}
    replay_arrays, replay_meta = replay.state()
    arrays |= {f"replay/{k}": np.ascontiguousarray(v) for k, v in replay_arrays.items()}
    arrays["replay/frames"] = replay.get_frames(0, replay.storage.capacity)
    state = {
        "format": CHECKPOINT_FORMAT,
        "version": 1,
        "config": {},
        "agent": agent_meta,
        "loop": loop.state()[1],
        "replay": replay_meta,
        "extra": {},
    }
    metadata = {"format": CHECKPOINT_FORMAT, "state": json.dumps(state)}
    atomic_replace(path, lambda tmp: save_file(arrays, str(tmp), metadata=metadata))
    return path.stat().st_size, time.perf_counter() - start


def check_room(capacity: int, kind: str, directory: Path) -> None:
    """Refuse (ConfigError) a benchmark that cannot fit in memory or on the disk."""
    need = FrameStorage.nbytes_for(capacity) + (
        SumTree.nbytes_for(capacity) if kind == "prioritized" else 0
    )
    available = available_memory()
    if available is not None and need > available:
        raise ConfigError(
            f"--capacity {capacity} needs {need / 1e9:.1f} GB of memory, "
            f"{available / 1e9:.1f} GB is available"
        )
    free = shutil.disk_usage(directory).free
    if 2.2 * need > free:
        raise ConfigError(
            f"--capacity {capacity} needs {2.2 * need / 1e9:.1f} GB free in {directory} "
            f"(both layouts at once), {free / 1e9:.1f} GB is free"
        )


def checkpoint_benchmark(
    capacity: int,
    *,
    more: int = 100_000,
    chunk_slots: int = 1 << 14,
    kind: str = "uniform",
    envs: int = 1,
    directory: Path | None = None,
) -> Result:
    """Rows of (what, old bytes and seconds, new bytes and seconds, chunks written)."""
    check_positive(capacity=capacity, more=more, chunk=chunk_slots, envs=envs)
    if capacity % envs:
        raise ConfigError(f"--capacity {capacity} is not a multiple of --envs {envs}")
    parent = Path(directory) if directory is not None else Path(tempfile.gettempdir())
    if not parent.is_dir():
        raise ConfigError(f"--dir {parent} is not a directory")
    check_room(capacity, kind, parent)
    work = Path(tempfile.mkdtemp(prefix="atari-dqn-bench-checkpoint-", dir=parent))
    try:
        return _measure(capacity, more, chunk_slots, kind, envs, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _measure(
    capacity: int, more: int, chunk_slots: int, kind: str, envs: int, work: Path
) -> Result:
    torch.manual_seed(0)
    replay = make_replay(kind, capacity, np.random.default_rng(0), num_streams=envs)
    agent = build_agent(Config(), 4, torch.device("cpu"))
    position = _Position()
    filler = _Filler(replay, position, envs)
    (work / "new").mkdir()
    (work / "old").mkdir()
    rows: list[dict[str, Any]] = []
    previous: ReplayOnDisk | None = None

    def measure(label: str, keep_previous: bool) -> None:
        nonlocal previous
        if not keep_previous:  # a first save: nothing of this replay on disk yet
            shutil.rmtree(work / "new")
            (work / "new").mkdir()
            previous = None

        def old() -> tuple[int, float]:
            os.sync()  # each save starts with nothing of the other's waiting to be written
            saved = save_whole_array(
                work / "old" / CHECKPOINT_NAME, agent=agent, replay=replay, loop=position
            )
            (work / "old" / CHECKPOINT_NAME).unlink()  # room for the new layout's files
            return saved

        def new() -> SaveInfo:
            os.sync()
            return save_checkpoint(
                work / "new" / CHECKPOINT_NAME,
                config={},
                agent=agent,
                replay=replay,
                loop=position,
                include_replay=True,
                previous=previous,
                chunk_slots=chunk_slots,
            )

        # Alternate which goes first, so that neither always follows the other's deletes.
        if len(rows) % 2 == 0:
            old_bytes, old_seconds = old()
            info = new()
        else:
            info = new()
            old_bytes, old_seconds = old()
        previous = info.replay
        filled = sum(b - a for a, b in replay.frame_ranges())
        rows.append(
            {
                "what": label,
                "step": position.step,
                "filled": filled,
                "old_bytes": old_bytes,
                "old_seconds": old_seconds,
                "new_bytes": info.bytes,
                "new_seconds": info.seconds,
                "chunks_written": info.chunks_written,
                "chunks": info.chunks_written + info.chunks_kept,
                "bytes_ratio": old_bytes / info.bytes,
                "seconds_ratio": old_seconds / info.seconds if info.seconds > 0 else None,
            }
        )

    for i, fill in enumerate(FILLS):
        filler.fill_to(int(fill * capacity))
        if i == 0:
            agent.update(replay.sample(32, 0.4))  # Adam's moments exist, as in a real run
        measure(f"{fill:.0%} full, first save", keep_previous=False)
    filler.steps(more)
    measure(f"+{more:,} steps, next save", keep_previous=True)
    return {
        "capacity": capacity,
        "replay": kind,
        "envs": envs,
        "chunk_slots": chunk_slots,
        "chunk_slots_used": chunk_slots_for(replay.ring_slots(), chunk_slots),
        "more": more,
        "rows": rows,
    }


def checkpoint_table(result: Result) -> str:
    lines = [
        f"bench checkpoint: replay of {result['capacity']:,} slots of 84x84 frames "
        f"({result['replay']}, {result['envs']} env ring(s)), chunks of "
        f"{result['chunk_slots_used']:,} slots (--chunk {result['chunk_slots']:,}); old = the "
        "whole array in one file (the layout before), new = chunk files + checkpoint file",
        f"{'checkpoint':<30} {'filled':>10} {'old MB':>9} {'old s':>7} {'new MB':>9} "
        f"{'new s':>7} {'chunks':>9} {'old/new B':>9} {'old/new s':>9}",
    ]
    for r in result["rows"]:
        secs = f"{r['seconds_ratio']:.1f}x" if r["seconds_ratio"] is not None else "-"
        lines.append(
            f"{r['what']:<30} {r['filled']:>10,} {r['old_bytes'] / 1e6:>9,.1f} "
            f"{r['old_seconds']:>7.2f} {r['new_bytes'] / 1e6:>9,.1f} {r['new_seconds']:>7.2f} "
            f"{str(r['chunks_written']) + '/' + str(r['chunks']):>9} "
            f"{r['bytes_ratio']:>8.1f}x {secs:>9}"
        )
    return "\n".join(lines)
