"""Frame-deduplicated storage and uniform replay, worked by hand on tiny frames.

Frames are 2x2 uint8 images whose pixels encode a frame id, so every stack can be read back
as a list of ids and compared with what the environment would have shown.
"""

from __future__ import annotations

import numpy as np
import pytest

from atari_dqn.replay.nstep import NStepAccumulator
from atari_dqn.replay.storage import FrameStorage
from atari_dqn.replay.uniform import UniformReplay

GAMMA = 0.9


def frame(i: int) -> np.ndarray:
    return np.array([[i % 256, i // 256], [7, 7]], dtype=np.uint8)


def ids(stacks: np.ndarray) -> list[list[int]]:
    """(B, 4, 2, 2) frames -> frame ids."""
    return (stacks[:, :, 0, 0].astype(int) + 256 * stacks[:, :, 0, 1].astype(int)).tolist()


def storage(capacity: int, n: int = 1, streams: int = 1) -> FrameStorage:
    return FrameStorage(capacity, frame_shape=(2, 2), n_step=n, gamma=GAMMA, num_streams=streams)


def play(st: FrameStorage, first: int, rewards: list[float], end: str, stream: int = 0) -> None:
    """One episode: frames first, first+1, ...; action of step k is k % 3; end: term/trunc/open."""
    st.begin(stream, frame(first))
    for k, r in enumerate(rewards):
        last = k == len(rewards) - 1
        st.append(
            stream, k % 3, r, frame(first + k + 1), last and end == "term", last and end == "trunc"
        )


def test_single_episode_stacks_terminal_and_final_slot() -> None:
    st = storage(16)
    play(st, 0, [1.0, 0.0, 2.0, 0.0, 1.0], "term")  # frames 0..5 in slots 0..5
    assert st.ready.tolist()[:6] == [True] * 5 + [False]  # slot 5 holds the final frame only
    assert len(st) == 5
    b = st.gather(np.array([0, 2, 4, 3]))
    assert ids(b.obs) == [[0, 0, 0, 0], [0, 0, 1, 2], [1, 2, 3, 4], [0, 1, 2, 3]]
    assert ids(b.next_obs) == [[0, 0, 0, 1], [0, 1, 2, 3], [2, 3, 4, 5], [1, 2, 3, 4]]
    assert b.actions.tolist() == [0, 2, 1, 0]
    np.testing.assert_allclose(b.returns, [1.0, 2.0, 1.0, 0.0])
    np.testing.assert_allclose(b.discounts, [GAMMA, GAMMA, 0.0, GAMMA], rtol=1e-6)
    np.testing.assert_allclose(b.weights, 1.0)


def test_truncation_bootstraps_from_the_last_state() -> None:
    st = storage(16)
    play(st, 0, [1.0, 1.0, 1.0], "trunc")
    b = st.gather(np.array([2]))
    np.testing.assert_allclose(b.discounts, [GAMMA], rtol=1e-6)
    assert ids(b.next_obs) == [[0, 1, 2, 3]]


def test_stacks_never_mix_two_episodes() -> None:
    st = storage(32)
    play(st, 100, [0.0, 0.0, 0.0], "term")  # slots 0..3
    play(st, 200, [0.0, 0.0], "term")  # slots 4..6
    b = st.gather(np.array([4, 5]))
    assert ids(b.obs) == [[200] * 4, [200, 200, 200, 201]]
    assert ids(b.next_obs) == [[200, 200, 200, 201], [200, 200, 201, 202]]


def test_open_episode_last_transition_ready_once_next_frame_written() -> None:
    st = storage(16)
    play(st, 0, [0.0, 0.0], "open")
    assert st.ready[:3].tolist() == [True, True, False]


def test_ring_wraparound_invalidates_overwritten_and_rebuilds_stacks() -> None:
    st = storage(8)
    play(st, 0, [0.0] * 5, "term")  # slots 0..5, ready 0..4
    play(st, 50, [0.0] * 4, "open")  # slots 6,7,0,1,2: overwrote 0,1,2
    # Old slots 0,1,2 are gone; old slot 3 and 4 needed frames from slots 0..2 -> not ready.
    # Old slot 5 was a final frame. New transitions 6,7,0,1 are ready (2 is the open state).
    assert sorted(np.flatnonzero(st.ready).tolist()) == [0, 1, 6, 7]
    b = st.gather(np.array([6, 7, 0, 1]))
    assert ids(b.obs) == [[50] * 4, [50, 50, 50, 51], [50, 50, 51, 52], [50, 51, 52, 53]]
    assert ids(b.next_obs)[3] == [51, 52, 53, 54]


def test_overwrite_keeps_old_transitions_whose_history_is_intact() -> None:
    st = storage(8)
    play(st, 0, [0.0, 0.0], "term")  # ep A slots 0,1 (+final 2)
    play(st, 10, [0.0] * 4, "term")  # ep B slots 3..6 (+final 7)
    st.begin(0, frame(20))  # overwrites slot 0 (ep A start)
    # Ep A's slot 1 stacked slot 0 -> invalid; ep B's history starts at slot 3 -> untouched.
    assert sorted(np.flatnonzero(st.ready).tolist()) == [3, 4, 5, 6]


def test_bytes_per_transition_at_most_7_2_kb() -> None:
    st = FrameStorage(1000)
    assert st.bytes_per_transition <= 7200
    assert st.bytes_per_transition >= 84 * 84


def test_multiple_streams_are_independent_rings() -> None:
    st = storage(16, streams=2)
    st.begin(0, frame(0))
    st.begin(1, frame(100))
    for k in range(3):
        st.append(0, 0, 1.0, frame(k + 1), False, False)
        st.append(1, 1, 2.0, frame(101 + k), False, False)
    b = st.gather(np.array([2, 8 + 2]))
    assert ids(b.obs) == [[0, 0, 1, 2], [100, 100, 101, 102]]
    assert b.actions.tolist() == [0, 1]


def test_begin_twice_or_append_without_begin_is_a_bug() -> None:
    st = storage(16)
    with pytest.raises(RuntimeError):
        st.append(0, 0, 0.0, frame(1), False, False)
    st.begin(0, frame(0))
    with pytest.raises(RuntimeError):
        st.begin(0, frame(0))


# ---------------------------------------------------------------------- n-step vs reference
def reference_transitions(episodes, n: int, gamma: float):
    """Brute force, from the whole history (no ring): every transition's n-step target.

    episodes: list of (rewards, end) with end in {"term", "trunc", "open"}; frames are numbered
    consecutively as written (one per step plus one per episode start).
    Returns dict frame_id_of_s_t -> (stack ids, return, discount, next stack ids, complete,
    earliest frame id needed).
    """
    out = {}
    fid = 0
    for rewards, end in episodes:
        ep_frames = list(range(fid, fid + len(rewards) + 1))
        fid += len(rewards) + 1
        T = len(rewards)

        def stack(t, ep_frames=ep_frames):
            return [ep_frames[max(0, t - o)] for o in (3, 2, 1, 0)]

        for t in range(T):
            ret, k = 0.0, 0
            terminal = False
            while k < n and t + k < T:
                ret += gamma**k * rewards[t + k]
                k += 1
                if t + k == T and end == "term":
                    terminal = True
                    break
            closed = end in ("term", "trunc")
            complete = t + n <= T if not closed else True
            if not closed and t + n > T:
                complete = False
            disc = 0.0 if terminal else gamma**k
            s, nxt = stack(t), stack(t + k)
            out[ep_frames[t]] = (s, ret, disc, nxt, complete, min(s))
    return out, fid


def run_against_reference(episodes, n: int, capacity: int) -> None:
    st = storage(capacity, n=n)
    fid = 0
    for rewards, end in episodes:
        play(st, fid, rewards, end)
        fid += len(rewards) + 1
    ref, total_frames = reference_transitions(episodes, n, GAMMA)
    oldest_kept = total_frames - capacity
    expected_ready = {
        f
        for f, (_, _, _, _, complete, earliest) in ref.items()
        if complete and earliest >= oldest_kept
    }
    ready = np.flatnonzero(st.ready)
    assert len(st) == len(ready)
    b = st.gather(ready)
    got = dict(zip([s[-1] for s in ids(b.obs)], range(len(ready)), strict=True))
    assert set(got) == expected_ready
    for f, j in got.items():
        s, ret, disc, nxt, _, _ = ref[f]
        assert ids(b.obs)[j] == s
        assert ids(b.next_obs)[j] == nxt
        assert b.returns[j] == pytest.approx(ret, rel=1e-6)
        assert b.discounts[j] == pytest.approx(disc, rel=1e-6)


@pytest.mark.parametrize("n", [1, 2, 3, 5])
@pytest.mark.parametrize("length", [1, 2, 3, 4, 6, 9])
@pytest.mark.parametrize("end", ["term", "trunc", "open"])
def test_nstep_every_termination_offset(n: int, length: int, end: str) -> None:
    rewards = [float(2**k) for k in range(length)]  # distinct, so sums identify their terms
    run_against_reference([(rewards, "term"), (rewards, end)], n, capacity=64)


@pytest.mark.parametrize("n", [1, 3, 4])
def test_nstep_random_episodes_with_ring_wraparound(n: int) -> None:
    rng = np.random.default_rng(n)
    episodes = []
    for _ in range(40):
        length = int(rng.integers(1, 12))
        rewards = rng.integers(-1, 3, size=length).astype(float).tolist()
        episodes.append((rewards, str(rng.choice(["term", "trunc"]))))
    episodes.append(([1.0, 0.0, 1.0, 1.0, 0.0, 2.0, 1.0], "open"))
    run_against_reference(episodes, n, capacity=37)


def test_accumulator_short_episode_and_truncation_by_hand() -> None:
    acc = NStepAccumulator(3, 0.5)
    acc.push(10, 1.0)
    acc.push(11, 2.0)
    assert acc.pop_complete() == []
    # Episode of 2 steps truncated: returns 1 + 0.5*2 = 2 (k=2) and 2 (k=1), both bootstrap.
    assert acc.flush(terminated=False) == [(10, 2.0, 2, False), (11, 2.0, 1, False)]
    acc.push(20, 1.0)
    acc.push(21, 1.0)
    acc.push(22, 4.0)
    assert acc.pop_complete() == [(20, 1.0 + 0.5 + 1.0, 3, False)]
    assert acc.flush(terminated=True) == [(21, 1.0 + 2.0, 2, True), (22, 4.0, 1, True)]


# ---------------------------------------------------------------------- uniform sampling
def test_uniform_samples_only_ready_slots_uniformly() -> None:
    st = storage(64)
    rng = np.random.default_rng(0)
    for e in range(12):  # wraps the ring several times; many final frames
        play(st, 10 * e, [0.0] * int(rng.integers(1, 9)), "term")
    replay = UniformReplay(st, np.random.default_rng(1))
    idx = np.concatenate([replay.sample_indices(32) for _ in range(3000)])
    ready = np.flatnonzero(st.ready)
    assert set(idx.tolist()) == set(ready.tolist())
    counts = np.bincount(idx, minlength=64)[ready]
    expected = len(idx) / len(ready)
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))


def test_uniform_sample_batch_matches_gather() -> None:
    st = storage(32)
    play(st, 0, [1.0, 0.0, 1.0, 1.0], "term")
    a = UniformReplay(st, np.random.default_rng(5)).sample(8, beta=0.4)
    idx = UniformReplay(st, np.random.default_rng(5)).sample_indices(8)
    np.testing.assert_array_equal(a.indices, idx)
    np.testing.assert_array_equal(a.obs, st.gather(idx).obs)


def test_uniform_empty_replay_raises() -> None:
    with pytest.raises(ValueError):
        UniformReplay(storage(16), np.random.default_rng(0)).sample(4)
