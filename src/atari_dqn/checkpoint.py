"""Full-state checkpoints: a small checkpoint file plus the replay's frames in chunk files.

Everything a run needs to continue exactly is saved: networks and optimiser (agent), replay
contents and its sampler state, the loop's counters and generator, the training env's emulator
and wrapper state. ε and β are pure functions of the step, so the step is their position.

Layout in the run directory::

    checkpoint.safetensors                     agent, loop and the replay's per-slot arrays as
                                               tensors; one JSON document in its metadata that
                                               names the frame chunks (the manifest)
    checkpoint_replay/frames_CCCCC.gGGGGGG.safetensors
                                               the filled slots of chunk C (slots
                                               [C·K, (C+1)·K)), written by checkpoint number G

The frames are 7 KB a slot, everything else of the replay 17 bytes at most, so only the frames
are chunked. A save writes a chunk only when it holds frames written since the previous save
(``Replay.frame_ranges(since=mark)``), and only the filled part of the ring: the first save of
a replay 10% full writes 10% of the frames, the save 100k steps later about 100k slots' worth.

One consistent state at every instant: new chunks get new names (the next generation), the
checkpoint file is written to a temporary name and renamed over the old one last, and only then
are the chunks it no longer names deleted. A kill before the rename leaves the previous
checkpoint whole (its chunks untouched); a kill after it, the new one. What a killed save left
behind (temporary files, chunks no checkpoint names) is removed by :func:`remove_leftovers` at
the next start or resume. Safetensors throughout: loading never unpickles anything.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from atari_dqn.artifacts import (
    ArtifactError,
    atomic_replace,
    file_mode,
    fsync_dir,
    remove_interrupted_writes,
)
from atari_dqn.killpoints import kill_point

CHECKPOINT_NAME = "checkpoint.safetensors"
CHECKPOINT_FORMAT = "atari-dqn-checkpoint"
CHECKPOINT_VERSION = 2  # 1: one file holding the whole replay at full capacity
REPLAY_DIR = "checkpoint_replay"
CHUNK_FORMAT = "atari-dqn-replay-chunk"
CHUNK_SLOTS = 1 << 14  # slots per chunk file: 116 MB of 84x84 frames
# A save finds each env's newest frames as one run of slots in that env's ring. Chunks of a
# whole ring (8 envs, a 100k replay: rings of 12.5k slots) would be rewritten at every save, so
# a chunk is at most this fraction of a ring, unless that is under CHUNK_FLOOR slots (7 MB).
RING_PARTS = 16
CHUNK_FLOOR = 1024
_CHUNK_RE = re.compile(r"^frames_(\d{5,})\.g(\d{6,})\.safetensors$")


class Stateful(Protocol):
    """A part of a run whose state goes into checkpoints: flat arrays plus JSON metadata."""

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]: ...

    def load_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None: ...


class StatefulReplay(Stateful, Protocol):
    """A replay's part: ``state`` is everything but the frames, which go by slot range (the
    replays, and the Ape-X replay server's proxy; see ``FrameStorage`` for the contract)."""

    def frame_mark(self) -> np.ndarray: ...

    def ring_slots(self) -> int: ...

    def frame_ranges(self, since: np.ndarray | None = None) -> list[tuple[int, int]]: ...

    def get_frames(self, start: int, stop: int) -> np.ndarray: ...

    def put_frames(self, start: int, frames: np.ndarray) -> None: ...


class StatefulLoop(Protocol):
    """A loop's part of a checkpoint; it must know whether the replay was restored with it."""

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]: ...

    def load_state(
        self, arrays: dict[str, np.ndarray], meta: dict[str, Any], *, replay_restored: bool
    ) -> None: ...


class StatefulAgent(Protocol):
    """The learner's part: tensors (networks, optimiser moments) plus JSON metadata."""

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]: ...

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None: ...


# ---------------------------------------------------------------------- the manifest
Ranges = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Chunk:
    """One chunk file: chunk ``index`` holds the frames of slot ranges ``ranges`` (its filled
    part), in ``file`` (relative to the run directory)."""

    index: int
    file: str
    ranges: Ranges


@dataclass(frozen=True)
class ReplayOnDisk:
    """What a checkpoint holds of the replay's frames: its chunks, and the replay's
    ``frame_mark()`` when they were saved. Passed to the next save of the same replay, it lets
    that save keep every chunk with no frame written since."""

    chunk_slots: int
    generation: int
    mark: tuple[int, ...]
    chunks: tuple[Chunk, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "chunk_slots": self.chunk_slots,
            "generation": self.generation,
            "mark": list(self.mark),
            "chunks": [
                {"index": c.index, "file": c.file, "ranges": [list(r) for r in c.ranges]}
                for c in self.chunks
            ],
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ReplayOnDisk:
        """Raises KeyError, TypeError or ValueError on a malformed document."""
        chunks = tuple(
            Chunk(int(c["index"]), str(c["file"]), tuple((int(a), int(b)) for a, b in c["ranges"]))
            for c in doc["chunks"]
        )
        return cls(
            int(doc["chunk_slots"]),
            int(doc["generation"]),
            tuple(int(m) for m in doc["mark"]),
            chunks,
        )


@dataclass(frozen=True)
class SaveInfo:
    path: Path
    bytes: int  # bytes this save wrote (the checkpoint file and the new chunks)
    seconds: float
    chunks_written: int  # new chunk files
    chunks_kept: int  # chunk files of the previous checkpoint still in use
    replay: ReplayOnDisk | None  # pass as ``previous`` to the next save of the same replay


def _clip(ranges: list[tuple[int, int]], lo: int, hi: int) -> Ranges:
    return tuple((max(a, lo), min(b, hi)) for a, b in ranges if a < hi and b > lo)


def chunk_slots_for(ring: int, cap: int) -> int:
    """Slots per chunk file for rings of ``ring`` slots: ``cap`` (``--checkpoint-chunk``), or a
    ``RING_PARTS``-th of a ring where that is smaller and still ``CHUNK_FLOOR`` or more."""
    return min(cap, max(CHUNK_FLOOR, -(-ring // RING_PARTS)))


def _save_frames(
    run_dir: Path, replay: StatefulReplay, previous: ReplayOnDisk | None, cap: int
) -> tuple[ReplayOnDisk, int, int]:
    """Write the chunks that changed since ``previous``; (what is on disk, bytes, files)."""
    chunk_slots = chunk_slots_for(replay.ring_slots(), cap)
    filled = replay.frame_ranges()
    mark = replay.frame_mark()
    if previous is not None and (
        previous.chunk_slots != chunk_slots or len(previous.mark) != len(mark)
    ):
        previous = None  # another chunk size: every chunk is new
    changed = filled
    if previous is not None:
        try:
            changed = replay.frame_ranges(np.asarray(previous.mark))
        except ValueError:  # not a mark of this replay: keep nothing
            previous = None
    kept = {c.index: c for c in previous.chunks} if previous is not None else {}
    generation = (previous.generation if previous is not None else 0) + 1
    generation = max(generation, _generation_on_disk(run_dir / CHECKPOINT_NAME) + 1)
    directory = run_dir / REPLAY_DIR
    directory.mkdir(exist_ok=True)
    chunks: list[Chunk] = []
    new: list[Chunk] = []  # the chunks to write
    indices = sorted({i for a, b in filled for i in range(a // chunk_slots, -(-b // chunk_slots))})
    for index in indices:
        lo, hi = index * chunk_slots, (index + 1) * chunk_slots
        pieces = _clip(filled, lo, hi)
        old = kept.get(index)
        if old is not None and old.ranges == pieces and not _clip(changed, lo, hi):
            chunks.append(old)
            continue
        name = f"{REPLAY_DIR}/frames_{index:05d}.g{generation:06d}.safetensors"
        chunks.append(Chunk(index, name, pieces))
        new.append(chunks[-1])
    written_bytes = _write_chunks(run_dir, replay, new, generation)
    on_disk = ReplayOnDisk(chunk_slots, generation, tuple(int(m) for m in mark), tuple(chunks))
    return on_disk, written_bytes, len(new)


def _write_chunks(run_dir: Path, replay: StatefulReplay, new: list[Chunk], generation: int) -> int:
    """Write the chunk files ``new``, each to a temporary name; then fsync and rename them all.

    One fsync per file after all are written (not after each) lets the kernel write one back
    while the next is filled, as with one big file. Returns the bytes written."""
    temporaries: list[Path] = []
    try:
        for chunk in new:
            final = run_dir / chunk.file
            fd, name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
            os.close(fd)
            temporaries.append(Path(name))
            tensors = {str(a): replay.get_frames(a, b) for a, b in chunk.ranges}
            meta = {
                "format": CHUNK_FORMAT,
                "chunk": str(chunk.index),
                "generation": str(generation),
            }
            save_file(tensors, name, metadata=meta)
            kill_point("checkpoint.chunk")
        total = 0
        for chunk, tmp in zip(new, list(temporaries), strict=True):
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.chmod(tmp, file_mode())
            total += tmp.stat().st_size
            os.replace(tmp, run_dir / chunk.file)
            temporaries.remove(tmp)
    except BaseException:
        for tmp in temporaries:
            tmp.unlink(missing_ok=True)
        raise
    if new:
        fsync_dir(run_dir / REPLAY_DIR)
    return total


def _generation_on_disk(path: Path) -> int:
    """The generation of the checkpoint at ``path`` (0 if none or unreadable): a new save's
    chunk names must differ from every chunk the checkpoint in place may name."""
    try:
        doc = read_checkpoint_state(path).get("replay_frames")
        return int(doc["generation"]) if doc else 0
    except (ArtifactError, KeyError, TypeError, ValueError):
        return 0


def save_checkpoint(
    path: Path,
    *,
    config: dict[str, Any],
    agent: StatefulAgent,
    replay: StatefulReplay | None,
    loop: StatefulLoop,
    include_replay: bool,
    extra: dict[str, Any] | None = None,
    previous: ReplayOnDisk | None = None,
    chunk_slots: int = CHUNK_SLOTS,
) -> SaveInfo:
    """Save ``agent``, ``replay`` (optional) and ``loop`` to ``path`` and its chunk directory.

    ``previous``: what the last save of this same replay returned (``SaveInfo.replay``) or what
    loading it found (:func:`replay_on_disk`); its chunks without new frames are kept. None
    (a new run): every filled chunk is written."""
    start = time.perf_counter()
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    agent_tensors, agent_meta = agent.state()
    for key, tensor in agent_tensors.items():
        arrays[f"agent/{key}"] = tensor.detach().cpu().contiguous().numpy()
    loop_arrays, loop_meta = loop.state()
    arrays |= {f"loop/{k}": np.ascontiguousarray(v) for k, v in loop_arrays.items()}
    replay_meta = on_disk = None
    chunk_bytes = new_chunks = 0
    if include_replay:
        if replay is None:
            raise ValueError("include_replay needs a replay")
        replay_arrays, replay_meta = replay.state()
        arrays |= {f"replay/{k}": np.ascontiguousarray(v) for k, v in replay_arrays.items()}
        on_disk, chunk_bytes, new_chunks = _save_frames(path.parent, replay, previous, chunk_slots)
    state = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": config,
        "agent": agent_meta,
        "loop": loop_meta,
        "replay": replay_meta,
        "replay_frames": on_disk.to_json() if on_disk is not None else None,
        "extra": extra or {},
    }
    metadata = {"format": CHECKPOINT_FORMAT, "state": json.dumps(state)}

    def write(tmp: Path) -> None:
        save_file(arrays, str(tmp), metadata=metadata)
        kill_point("checkpoint.manifest")

    atomic_replace(path, write)  # the switch: from here on, the new checkpoint is the one
    kill_point("checkpoint.cleanup")
    remove_leftovers(path.parent, on_disk)
    return SaveInfo(
        path,
        path.stat().st_size + chunk_bytes,
        time.perf_counter() - start,
        new_chunks,
        len(on_disk.chunks) - new_chunks if on_disk is not None else 0,
        on_disk,
    )


def remove_leftovers(run_dir: Path, keep: ReplayOnDisk | None = None) -> list[Path]:
    """Delete what no checkpoint needs: chunk files the checkpoint in ``run_dir`` does not name
    (``keep``: its manifest, read from the file when None) and the temporary files of killed
    writes (of any run file). Only files of those exact name patterns are touched. Returns
    what was deleted."""
    run_dir = Path(run_dir)
    if keep is None:
        try:
            doc = read_checkpoint_state(run_dir / CHECKPOINT_NAME).get("replay_frames")
            keep = ReplayOnDisk.from_json(doc) if doc else None
        except (ArtifactError, KeyError, TypeError, ValueError):
            keep = None
    named = {c.file for c in keep.chunks} if keep is not None else set()
    directory = run_dir / REPLAY_DIR
    gone = remove_interrupted_writes(run_dir)
    if directory.is_dir():
        gone += remove_interrupted_writes(directory)
        for p in directory.iterdir():
            if _CHUNK_RE.match(p.name) and f"{REPLAY_DIR}/{p.name}" not in named and p.is_file():
                p.unlink(missing_ok=True)
                gone.append(p)
        if gone:
            fsync_dir(directory)
    return gone


# ---------------------------------------------------------------------- loading
def read_checkpoint_state(path: Path) -> dict[str, Any]:
    """The JSON part of a checkpoint (cheap: reads the header only); ArtifactError if invalid."""
    invalid = f"{path} is not a valid atari-dqn checkpoint"
    if not Path(path).is_file():
        raise ArtifactError(f"no checkpoint at {path}")
    try:
        with safe_open(str(path), framework="np") as fh:
            meta = fh.metadata() or {}
            keys = list(fh.keys())
    except (SafetensorError, OSError, ValueError):
        raise ArtifactError(invalid) from None
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ArtifactError(invalid)
    try:
        state = json.loads(meta["state"])
    except (KeyError, json.JSONDecodeError):
        raise ArtifactError(invalid) from None
    if state.get("version") not in (1, CHECKPOINT_VERSION):
        raise ArtifactError(f"{path}: unsupported checkpoint version {state.get('version')}")
    if not any(k.startswith("agent/") for k in keys):
        raise ArtifactError(invalid)
    return state


def replay_on_disk(state: dict[str, Any]) -> ReplayOnDisk | None:
    """The frame chunks a checkpoint's JSON state names (None: no replay, or version 1)."""
    doc = state.get("replay_frames")
    try:
        return ReplayOnDisk.from_json(doc) if doc else None
    except (KeyError, TypeError, ValueError):
        raise ArtifactError("the checkpoint's list of replay chunks is malformed") from None


def _load_frames(run_dir: Path, on_disk: ReplayOnDisk, replay: StatefulReplay) -> None:
    """Put every chunk's frames into ``replay`` (after its ``load_state``), checking that the
    chunks cover exactly the slots that state says hold frames."""
    expected = replay.frame_ranges()
    got = [r for c in on_disk.chunks for r in c.ranges]
    merged: list[tuple[int, int]] = []
    for a, b in got:
        if merged and merged[-1][1] == a:
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    if merged != expected:
        raise ArtifactError(f"{run_dir / CHECKPOINT_NAME}: its replay chunks miss filled slots")
    for chunk in on_disk.chunks:
        file = run_dir / chunk.file
        bad = f"replay chunk {file} of the checkpoint is missing or truncated"
        if not _CHUNK_RE.match(file.name) or file.parent != run_dir / REPLAY_DIR:
            raise ArtifactError(bad)
        try:
            with safe_open(str(file), framework="np") as fh:
                meta = fh.metadata() or {}
                if meta.get("format") != CHUNK_FORMAT or set(fh.keys()) != {
                    str(a) for a, _ in chunk.ranges
                }:
                    raise ArtifactError(bad)
                for a, b in chunk.ranges:
                    frames = fh.get_tensor(str(a))
                    if len(frames) != b - a:
                        raise ArtifactError(bad)
                    replay.put_frames(a, frames)
        except (SafetensorError, OSError, ValueError) as exc:
            if isinstance(exc, ArtifactError):
                raise
            raise ArtifactError(bad) from None


def load_checkpoint(
    path: Path, *, agent: StatefulAgent, replay: StatefulReplay | None, loop: StatefulLoop
) -> dict[str, Any]:
    """Restore agent, replay (if saved) and loop from ``path`` (and its replay chunks); returns
    the JSON state (:func:`replay_on_disk` of it: what the next save may keep)."""
    path = Path(path)
    state = read_checkpoint_state(path)
    sections: dict[str, dict[str, np.ndarray]] = {"agent": {}, "loop": {}, "replay": {}}
    try:
        with safe_open(str(path), framework="np") as fh:
            for key in fh.keys():
                section, _, name = key.partition("/")
                sections[section][name] = fh.get_tensor(key)
    except (SafetensorError, OSError, ValueError, KeyError):
        raise ArtifactError(f"{path} is not a valid atari-dqn checkpoint (truncated?)") from None
    try:
        agent.load_state(
            {k: torch.from_numpy(v.copy()) for k, v in sections["agent"].items()}, state["agent"]
        )
        if state["replay"] is not None:
            if replay is None:
                raise ValueError("the checkpoint holds a replay and this run has none")
            _load_replay(path, state, sections["replay"], replay)
        loop.load_state(
            sections["loop"], state["loop"], replay_restored=state["replay"] is not None
        )
    except (KeyError, ValueError, RuntimeError) as exc:
        raise ArtifactError(f"{path} does not fit this run: {exc}") from None
    return state


def _load_replay(
    path: Path, state: dict[str, Any], arrays: dict[str, np.ndarray], replay: StatefulReplay
) -> None:
    """The replay's state, then its frames: in this file (version 1) or in its chunks."""
    frames = arrays.pop("frames", None)  # version 1: the whole array, in this file
    if frames is not None:
        arrays.setdefault("written", arrays["filled"])
    replay.load_state(arrays, state["replay"])
    on_disk = replay_on_disk(state)
    if frames is not None:
        for a, b in replay.frame_ranges():
            replay.put_frames(a, frames[a:b])
    elif on_disk is not None:
        _load_frames(path.parent, on_disk, replay)
    else:
        raise ValueError("the replay's frames are not in the checkpoint")


def load_checkpoint_replay(path: Path, replay: StatefulReplay) -> int | None:
    """Restore only the replay of the checkpoint at ``path`` (and its chunks: a new Ape-X
    replay server, while the run goes on); returns the checkpoint's step, or None when it saved
    no replay."""
    path = Path(path)
    state = read_checkpoint_state(path)
    if state["replay"] is None:
        return None
    arrays: dict[str, np.ndarray] = {}
    try:
        with safe_open(str(path), framework="np") as fh:
            for key in fh.keys():
                if key.startswith("replay/"):
                    arrays[key.removeprefix("replay/")] = fh.get_tensor(key)
        _load_replay(path, state, arrays, replay)
    except (SafetensorError, OSError, ValueError, KeyError) as exc:
        raise ArtifactError(f"{path}: its replay cannot be restored: {exc}") from None
    return int(state["loop"]["step"])


def load_checkpoint_agent(path: Path, agent: StatefulAgent) -> int:
    """Restore only the agent (networks, optimiser, noise) of the checkpoint at ``path``, e.g.
    to study a run's replay under the networks it had; returns the checkpoint's step."""
    path = Path(path)
    state = read_checkpoint_state(path)
    tensors: dict[str, torch.Tensor] = {}
    try:
        with safe_open(str(path), framework="np") as fh:
            for key in fh.keys():
                if key.startswith("agent/"):
                    array = fh.get_tensor(key).copy()  # writable, as torch wants
                    tensors[key.removeprefix("agent/")] = torch.from_numpy(array)
        agent.load_state(tensors, state["agent"])
    except (SafetensorError, OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ArtifactError(f"{path}: its agent cannot be restored: {exc}") from None
    return int(state["loop"]["step"])
