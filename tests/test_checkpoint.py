"""Chunked replay checkpoints: only the filled part, only what changed, one consistent state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from atari_dqn import checkpoint as ckpt
from atari_dqn.artifacts import ArtifactError
from atari_dqn.build import make_replay
from atari_dqn.checkpoint import (
    CHECKPOINT_NAME,
    REPLAY_DIR,
    StatefulReplay,
    load_checkpoint,
    remove_leftovers,
    replay_on_disk,
    save_checkpoint,
)
from atari_dqn.replay import Replay
from atari_dqn.replay.storage import FrameStorage

FRAME = (6, 5)


class Agent:
    def __init__(self, value: float = 0.0) -> None:
        self.w = torch.full((3,), value)

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return {"w": self.w}, {}

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        self.w = tensors["w"]


class Loop:
    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return {}, {"step": 0}

    def load_state(
        self, arrays: dict[str, np.ndarray], meta: dict[str, Any], *, replay_restored: bool
    ) -> None:
        assert replay_restored


def replay_of(kind: str = "uniform", capacity: int = 64, **kw: Any) -> Replay:
    return make_replay(kind, capacity, np.random.default_rng(7), frame_shape=FRAME, **kw)


class Writer:
    """Episodes of length 5 into every stream; frame k of the run is filled with k % 251."""

    def __init__(self, replay: Replay) -> None:
        self.replay, self.k, self.t = replay, 0, 0
        self.started = False

    def frame(self) -> np.ndarray:
        self.k += 1
        return np.full(FRAME, self.k % 251, dtype=np.uint8)

    def steps(self, n: int) -> None:
        streams = self.replay.storage.num_streams
        for _ in range(n):
            for s in range(streams):
                if not self.started:
                    self.replay.begin(s, self.frame())
            self.started = True
            self.t += 1
            end = self.t % 5 == 0
            for s in range(streams):
                self.replay.append(s, self.t % 3, float(self.t % 2), self.frame(), end, False)
                if end:
                    self.replay.begin(s, self.frame())


def save(
    run: Path, replay: StatefulReplay, previous: ckpt.ReplayOnDisk | None = None, chunk: int = 8
):
    return save_checkpoint(
        run / CHECKPOINT_NAME,
        config={},
        agent=Agent(),
        replay=replay,
        loop=Loop(),
        include_replay=True,
        previous=previous,
        chunk_slots=chunk,
    )


def load(run: Path, replay: StatefulReplay) -> ckpt.ReplayOnDisk | None:
    state = load_checkpoint(run / CHECKPOINT_NAME, agent=Agent(), replay=replay, loop=Loop())
    return replay_on_disk(state)


def chunk_files(run: Path) -> list[str]:
    return sorted(p.name for p in (run / REPLAY_DIR).iterdir())


def assert_same(a: Replay, b: Replay) -> None:
    """Same frames, same per-slot data and write state, and the same next batches."""
    sa, sb = a.storage, b.storage
    assert np.array_equal(sa.frames, sb.frames)
    arrays_a, meta_a = a.state()
    arrays_b, meta_b = b.state()
    assert arrays_a.keys() == arrays_b.keys()
    for key in arrays_a:
        assert np.array_equal(arrays_a[key], arrays_b[key]), key
    assert meta_a == meta_b
    for _ in range(3):
        ba, bb = a.sample(4, 0.5), b.sample(4, 0.5)
        assert np.array_equal(ba.indices, bb.indices)
        assert np.array_equal(ba.obs, bb.obs) and np.array_equal(ba.weights, bb.weights)


# ---------------------------------------------------------------------- frame ranges, by hand
def test_frame_ranges_by_hand_fill_and_wrap() -> None:
    st = FrameStorage(20, frame_shape=FRAME)
    f = np.zeros(FRAME, np.uint8)
    assert st.frame_ranges() == []
    st.begin(0, f)
    for _ in range(6):
        st.append(0, 0, 0.0, f, False, False)
    assert st.frame_ranges() == [(0, 7)]  # 7 frames written, slots 0..6
    mark = st.frame_mark()
    assert st.frame_ranges(mark) == []
    for _ in range(3):
        st.append(0, 0, 0.0, f, False, False)
    assert st.frame_ranges(mark) == [(7, 10)]
    mark10 = st.frame_mark()
    for _ in range(15):  # 25 written: full, the cursor at slot 5
        st.append(0, 0, 0.0, f, False, False)
    assert st.frame_ranges() == [(0, 20)]
    # The 15 newest slots end at the cursor (5): 10..19 and 0..4, across the end of the ring.
    assert st.frame_ranges(mark10) == [(0, 5), (10, 20)]
    assert st.frame_ranges(mark) == [(0, 5), (7, 20)]  # 18 written since: all but 5 and 6
    with pytest.raises(ValueError, match="not an earlier mark"):
        st.frame_ranges(st.frame_mark() + 1)


def test_frame_ranges_with_streams_merge_adjacent_rings() -> None:
    st = FrameStorage(20, frame_shape=FRAME, num_streams=2)  # rings 0..9 and 10..19
    f = np.zeros(FRAME, np.uint8)
    for s in (0, 1):
        st.begin(s, f)
    for _ in range(3):
        st.append(1, 0, 0.0, f, False, False)
    assert st.frame_ranges() == [(0, 1), (10, 14)]
    for _ in range(9):
        st.append(0, 0, 0.0, f, False, False)
    assert st.frame_ranges() == [(0, 14)]  # ring 0 full, so it runs on into ring 1


# ---------------------------------------------------------------------- save and load
def test_partial_fill_saves_only_the_filled_chunks_and_resumes_exactly(tmp_path: Path) -> None:
    replay = replay_of()
    w = Writer(replay)
    w.steps(19)  # 19 steps and 4 episode starts: 23 frames, slots 0..22 of 64
    assert replay.frame_ranges() == [(0, 23)]
    info = save(tmp_path, replay)
    assert info.chunks_written == 3 and info.chunks_kept == 0  # slots 0-7, 8-15, 16-22
    assert info.replay is not None
    assert [c.ranges for c in info.replay.chunks] == [((0, 8),), ((8, 16),), ((16, 23),)]
    assert chunk_files(tmp_path) == [f"frames_0000{i}.g000001.safetensors" for i in range(3)]
    fresh = replay_of()
    on_disk = load(tmp_path, fresh)
    assert on_disk == info.replay
    assert_same(replay, fresh)


def test_a_save_with_nothing_changed_writes_no_chunk(tmp_path: Path) -> None:
    replay = replay_of()
    Writer(replay).steps(12)
    first = save(tmp_path, replay)
    files = chunk_files(tmp_path)
    mtimes = {n: (tmp_path / REPLAY_DIR / n).stat().st_mtime_ns for n in files}
    again = save(tmp_path, replay, first.replay)
    assert again.chunks_written == 0 and again.chunks_kept == first.chunks_written
    assert chunk_files(tmp_path) == files
    assert {n: (tmp_path / REPLAY_DIR / n).stat().st_mtime_ns for n in files} == mtimes
    assert again.bytes == (tmp_path / CHECKPOINT_NAME).stat().st_size  # the small file only
    fresh = replay_of()
    load(tmp_path, fresh)
    assert_same(replay, fresh)


def test_only_chunks_written_since_the_last_save_are_rewritten(tmp_path: Path) -> None:
    replay = replay_of()
    w = Writer(replay)
    w.steps(15)  # slots 0..18 (19 frames): chunks 0, 1, 2
    first = save(tmp_path, replay)
    assert first.chunks_written == 3
    w.steps(2)  # slots 19 and 20: chunk 2 only
    second = save(tmp_path, replay, first.replay)
    assert second.chunks_written == 1 and second.chunks_kept == 2
    assert chunk_files(tmp_path) == [
        "frames_00000.g000001.safetensors",
        "frames_00001.g000001.safetensors",
        "frames_00002.g000002.safetensors",  # the old chunk 2 is deleted after the switch
    ]
    fresh = replay_of()
    load(tmp_path, fresh)
    assert_same(replay, fresh)


def test_wrap_around_of_the_ring(tmp_path: Path) -> None:
    replay = replay_of(capacity=32)
    w = Writer(replay)
    w.steps(40)  # 1 + 40 + 8 episode starts = 49 frames into 32 slots: the cursor at 17
    assert replay.storage.filled[0] == 32 and replay.storage.cursor[0] == 17
    first = save(tmp_path, replay)
    assert first.chunks_written == 4
    w.steps(4)  # 4 frames: slots 17..20, chunk 2 only
    second = save(tmp_path, replay, first.replay)
    assert second.chunks_written == 1
    w.steps(8)  # 8 steps, 2 episode starts: slots 21..30, chunks 2 and 3
    third = save(tmp_path, replay, second.replay)
    assert third.chunks_written == 2 and third.chunks_kept == 2
    w.steps(3)  # slots 31, 0 and 1: across the end of the ring, chunks 3 and 0
    fourth = save(tmp_path, replay, third.replay)
    assert fourth.replay is not None and fourth.chunks_written == 2
    assert [Path(c.file).name[7:] for c in fourth.replay.chunks] == [
        "00000.g000004.safetensors",
        "00001.g000001.safetensors",
        "00002.g000003.safetensors",
        "00003.g000004.safetensors",
    ]
    fresh = replay_of(capacity=32)
    load(tmp_path, fresh)
    assert_same(replay, fresh)


def test_prioritized_sum_tree_and_max_priority_are_restored(tmp_path: Path) -> None:
    replay = replay_of("prioritized", alpha=0.6)
    Writer(replay).steps(30)
    batch = replay.sample(8, 0.4)
    replay.update_priorities(batch.indices, np.linspace(0.1, 3.0, 8))
    save(tmp_path, replay)
    fresh = replay_of("prioritized", alpha=0.6)
    load(tmp_path, fresh)
    slots = np.arange(64)
    assert np.array_equal(replay.tree.get(slots), fresh.tree.get(slots))
    assert replay.stats() == fresh.stats()
    assert_same(replay, fresh)


def test_pending_n_step_returns_continue_exactly_after_a_load(tmp_path: Path) -> None:
    replay = replay_of(n_step=3, gamma=0.9)
    w = Writer(replay)
    w.steps(7)  # mid-episode: two transitions wait for their 3-step returns
    assert len(replay.storage.state()[1]["pending"][0][0]) == 2
    save(tmp_path, replay)
    fresh = replay_of(n_step=3, gamma=0.9)
    load(tmp_path, fresh)
    w2 = Writer(fresh)
    w2.k, w2.t, w2.started = w.k, w.t, True
    w.steps(6)
    w2.steps(6)
    assert_same(replay, fresh)


def test_streams_and_a_changed_chunk_size_rewrite_everything(tmp_path: Path) -> None:
    replay = replay_of(capacity=60, num_streams=3)  # rings of 20
    Writer(replay).steps(9)
    first = save(tmp_path, replay, chunk=8)
    assert first.replay is not None
    assert [c.ranges for c in first.replay.chunks] == [
        ((0, 8),),
        ((8, 11),),
        ((20, 24),),
        ((24, 31),),
        ((40, 48),),
        ((48, 51),),
    ]  # 11 frames in each ring; chunks 0, 1, 2, 3, 5, 6 (chunk 4, slots 32..39, is empty)
    second = save(tmp_path, replay, first.replay, chunk=16)
    assert second.chunks_written == 4 and second.chunks_kept == 0  # chunk 2 (32..47): 40..47
    assert len(chunk_files(tmp_path)) == 4
    fresh = replay_of(capacity=60, num_streams=3)
    load(tmp_path, fresh)
    assert_same(replay, fresh)


def test_without_the_replay_no_chunk_is_left(tmp_path: Path) -> None:
    replay = replay_of()
    Writer(replay).steps(12)
    save(tmp_path, replay)
    assert chunk_files(tmp_path)
    info = save_checkpoint(
        tmp_path / CHECKPOINT_NAME,
        config={},
        agent=Agent(),
        replay=replay,
        loop=Loop(),
        include_replay=False,
    )
    assert info.replay is None and chunk_files(tmp_path) == []


def replay_of_loaded(run: Path) -> Replay:
    replay = replay_of()
    load(run, replay)
    return replay


# ---------------------------------------------------------------------- one consistent state
class Killed(BaseException):
    """Stands for SIGKILL in-process (the real kills are in test_resume.py)."""


def kill_at(monkeypatch: pytest.MonkeyPatch, name: str, nth: int) -> None:
    seen = [0]

    def point(at: str) -> None:
        if at == name:
            seen[0] += 1
            if seen[0] == nth:
                raise Killed

    monkeypatch.setattr(ckpt, "kill_point", point)


@pytest.mark.parametrize(
    ("point", "nth", "survives", "stale"),
    [
        ("checkpoint.chunk", 1, "old", 0),  # inside the first new chunk: nothing new is left
        ("checkpoint.chunk", 2, "old", 0),  # inside the second (a real kill: test_resume.py)
        ("checkpoint.manifest", 1, "old", 2),  # both new chunks are left, unnamed
        ("checkpoint.cleanup", 1, "new", 1),  # the new checkpoint; the old chunk 2 is left
    ],
)
def test_a_kill_inside_a_save_leaves_the_old_or_the_new_checkpoint(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    point: str,
    nth: int,
    survives: str,
    stale: int,
) -> None:
    replay = replay_of()
    w = Writer(replay)
    w.steps(15)
    first = save(tmp_path, replay)
    old = replay_of()
    load(tmp_path, old)
    old_files = chunk_files(tmp_path)
    w.steps(10)  # slots 19..30: chunks 2 and 3 change
    kill_at(monkeypatch, point, nth)
    with pytest.raises(Killed):
        save(tmp_path, replay, first.replay)
    monkeypatch.undo()
    before_cleanup = replay_of()
    load(tmp_path, before_cleanup)
    left = chunk_files(tmp_path)
    gone = remove_leftovers(tmp_path)
    assert len(gone) == stale and len(left) == len(chunk_files(tmp_path)) + stale
    if survives == "old":
        assert chunk_files(tmp_path) == old_files
    else:
        assert len(chunk_files(tmp_path)) == 4
    restored = replay_of()
    load(tmp_path, restored)
    assert_same(before_cleanup, restored)
    assert_same(old if survives == "old" else replay, replay_of_loaded(tmp_path))


def test_leftovers_are_only_files_of_the_checkpoint_patterns(tmp_path: Path) -> None:
    replay = replay_of()
    Writer(replay).steps(12)
    save(tmp_path, replay)
    rdir = tmp_path / REPLAY_DIR
    stale = [
        rdir / "frames_00007.g000009.safetensors",  # a chunk the checkpoint does not name
        rdir / ".frames_00001.g000002.safetensors.abcd1234.tmp",  # killed writes' temporaries
        tmp_path / ".checkpoint.safetensors.x1y2z3w4.tmp",
        tmp_path / ".rewards.txt.k2j3h4g5.tmp",
    ]
    mine = [
        rdir / "notes.txt",
        tmp_path / ".mine.tmp",
        tmp_path / "frames_00001.g000001.safetensors",
    ]
    for p in stale + mine:
        p.write_bytes(b"x")
    before = chunk_files(tmp_path)
    assert sorted(remove_leftovers(tmp_path)) == sorted(stale)
    assert all(p.exists() for p in mine) and not any(p.exists() for p in stale)
    assert chunk_files(tmp_path) == sorted(set(before) - {p.name for p in stale})


# ---------------------------------------------------------------------- validation
def test_a_missing_or_truncated_chunk_is_refused(tmp_path: Path) -> None:
    replay = replay_of()
    Writer(replay).steps(15)
    save(tmp_path, replay)
    chunk = tmp_path / REPLAY_DIR / "frames_00001.g000001.safetensors"
    data = chunk.read_bytes()
    chunk.write_bytes(data[: len(data) - 7])
    with pytest.raises(ArtifactError, match="frames_00001.g000001.safetensors of the checkpoint"):
        load(tmp_path, replay_of())
    chunk.unlink()
    with pytest.raises(ArtifactError, match="is missing or truncated"):
        load(tmp_path, replay_of())


def test_a_version_1_checkpoint_still_loads(tmp_path: Path) -> None:
    """Runs checkpointed before chunks (the whole replay in one file) resume as they were."""
    from atari_dqn.bench.checkpoint import save_whole_array

    replay = replay_of("prioritized", alpha=0.6)
    Writer(replay).steps(30)
    save_whole_array(tmp_path / CHECKPOINT_NAME, agent=Agent(), replay=replay, loop=Loop())
    assert ckpt.read_checkpoint_state(tmp_path / CHECKPOINT_NAME)["version"] == 1
    fresh = replay_of("prioritized", alpha=0.6)
    assert load(tmp_path, fresh) is None  # no chunks on disk: the next save writes them all
    assert_same(replay, fresh)


def test_the_apex_replay_server_saves_and_loads_the_same_way(tmp_path: Path) -> None:
    from atari_dqn.distributed.workers import ReplayService  # a plain class: no Ray here

    server = ReplayService(replay_of)
    w = Writer(server.replay)
    w.steps(15)
    first = save(tmp_path, server)
    w.steps(3)
    second = save(tmp_path, server, first.replay)
    assert second.chunks_written == 1
    fresh = ReplayService(replay_of)
    load(tmp_path, fresh)
    assert_same(server.replay, fresh.replay)


def test_chunks_are_a_sixteenth_of_a_ring_at_most_down_to_the_floor() -> None:
    assert ckpt.chunk_slots_for(1_000_000, ckpt.CHUNK_SLOTS) == 16_384  # one env, 1M: the cap
    assert ckpt.chunk_slots_for(125_000, ckpt.CHUNK_SLOTS) == 7_813  # 8 envs, 1M: 125000 / 16
    assert ckpt.chunk_slots_for(12_500, ckpt.CHUNK_SLOTS) == 1_024  # 8 envs, 100k: the floor
    assert ckpt.chunk_slots_for(20, 8) == 8  # a cap under the floor stays the cap


def test_a_save_of_a_vector_run_rewrites_each_ring_s_newest_slots_not_every_ring(
    tmp_path: Path,
) -> None:
    replay = replay_of(capacity=8 * 4096, num_streams=8)  # rings of 4096 slots
    w = Writer(replay)
    w.steps(4000)  # 4800 frames a ring: every ring has wrapped around
    first = save(tmp_path, replay, chunk=ckpt.CHUNK_SLOTS)
    assert first.replay is not None and first.replay.chunk_slots == 1024
    assert first.chunks_written == 32
    w.steps(300)  # 360 frames a ring, one run of slots each: one chunk, or two across a boundary
    second = save(tmp_path, replay, first.replay, chunk=ckpt.CHUNK_SLOTS)
    assert 8 <= second.chunks_written <= 16 and second.chunks_kept == 32 - second.chunks_written
    fresh = replay_of(capacity=8 * 4096, num_streams=8)
    load(tmp_path, fresh)
    assert_same(replay, fresh)
