"""Prioritized replay: the sampling distribution, zero priority, IS weights, α applied once.

Frames are tiny (2x2) so the storage is cheap; slots are read back by index. With α = 1 and a
tiny ε a TD error |δ| becomes the priority p = |δ| + ε almost exactly, so the expected sampling
distribution is read straight off the TD errors chosen here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from atari_dqn.cli import main
from atari_dqn.replay.prioritized import PrioritizedReplay
from atari_dqn.replay.storage import FrameStorage
from tiny import TINY_RUN

GAMMA = 0.9
TINY_EPS = 1e-12


def frame(i: int) -> np.ndarray:
    return np.full((2, 2), i % 256, dtype=np.uint8)


def replay(
    capacity: int = 64, *, alpha: float = 1.0, eps: float = TINY_EPS, n: int = 1, seed: int = 0
) -> PrioritizedReplay:
    storage = FrameStorage(capacity, frame_shape=(2, 2), n_step=n, gamma=GAMMA)
    return PrioritizedReplay(storage, np.random.default_rng(seed), alpha=alpha, priority_eps=eps)


def play(rp: PrioritizedReplay, steps: int, end: str = "term", first: int = 0) -> None:
    """One episode of ``steps`` transitions; end: term / trunc / open (left running)."""
    rp.begin(0, frame(first))
    for k in range(steps):
        last = k == steps - 1
        rp.append(
            0, k % 3, 1.0, frame(first + k + 1), last and end == "term", last and end == "trunc"
        )


def leaves(rp: PrioritizedReplay) -> np.ndarray:
    return rp.tree.get(np.arange(rp.storage.capacity))


def assert_consistent(rp: PrioritizedReplay) -> None:
    """The tree is a valid sum tree and a slot has priority exactly when it may be sampled."""
    rp.tree.check_valid()
    np.testing.assert_array_equal(leaves(rp) > 0, rp.storage.ready)
    assert len(rp) == int(rp.storage.ready.sum())


def stratified_count_std(p: np.ndarray, batch: int, batches: int) -> np.ndarray:
    """Exact standard deviation of each item's count over ``batches`` stratified batches.

    Slice j of a batch is ``[j, j + 1) · total / batch`` with one uniform target in it; the
    count of item i in one batch is a sum of independent Bernoullis, one per slice it overlaps,
    with success probability the overlapped fraction f of that slice: variance Σ f (1 - f).
    """
    edges = np.concatenate([[0.0], np.cumsum(p / p.sum())]) * batch  # in units of slices
    var = np.zeros(len(p))
    for i in range(len(p)):
        a, b = edges[i], edges[i + 1]
        for j in range(int(np.floor(a)), min(int(np.ceil(b)), batch)):
            f = min(b, j + 1) - max(a, j)
            var[i] += f * (1 - f)
    return np.sqrt(var * batches)


# ---------------------------------------------------------------------- distribution
@pytest.mark.parametrize(
    "alpha, td",
    [
        (1.0, [1, 2, 3, 4, 5, 6, 7, 8]),
        (1.0, [0.5, 4.0, 0.5, 2.0, 1.0, 1.0, 8.0, 3.0, 0.75, 1.25]),
        (1.0, [1.0, 1.0, 1.0, 1.0, 1.0]),
        (1.0, [10.0, 1.0, 1.0, 1.0]),
        (0.5, [1.0, 4.0, 9.0, 16.0, 25.0, 0.25]),  # p = sqrt|δ|: 1, 2, 3, 4, 5, 0.5
        (0.0, [1e-3, 5.0, 100.0]),  # α = 0: uniform whatever the TD errors
    ],
)
@pytest.mark.parametrize("batch", [1000, 32])
def test_sampling_distribution_matches_priorities(alpha: float, td: list, batch: int) -> None:
    """100,000 draws in batches of 1000: every item within 1% (relative) of p_i / Σp.

    In batches of 32 (the training batch) the stratified count of a small item varies by more
    than 1% / 3σ, so there the tolerance is 4 exact standard deviations instead.
    """
    rp = replay(alpha=alpha, seed=int(100 * alpha) + len(td) + batch)
    play(rp, len(td))  # slots 0..n-1 ready, slot n holds the final frame (never ready)
    slots = np.arange(len(td))
    rp.update_priorities(slots, np.array(td))
    p = (np.abs(np.array(td)) + TINY_EPS) ** alpha
    np.testing.assert_allclose(rp.tree.get(slots), p, rtol=1e-12)
    expected = p / p.sum()

    draws, batches = 100_000, 100_000 // batch
    counts = np.zeros(rp.storage.capacity, dtype=np.int64)
    for _ in range(batches):
        b = rp.sample(batch, beta=0.4)
        counts += np.bincount(b.indices, minlength=rp.storage.capacity)
    n = batches * batch
    assert n >= draws - batch
    assert counts[len(td) :].sum() == 0  # the final frame and empty slots: never
    freq = counts[: len(td)] / n
    sd = stratified_count_std(p, batch, batches) / n
    if batch == 1000:
        # Make sure 1% is a real test, not luck: at least 3 standard deviations of the count.
        assert np.all(0.01 * expected >= 3 * sd), (expected, sd)
        np.testing.assert_allclose(freq, expected, rtol=0.01)
    else:
        assert np.all(np.abs(freq - expected) <= 4 * sd + 1e-12), (freq, expected, sd)


def test_distribution_after_wraparound_and_random_priorities() -> None:
    """Many episodes through a small ring, random TD errors: frequencies follow the tree."""
    rp = replay(capacity=40, alpha=0.7, eps=0.01, seed=3)
    rng = np.random.default_rng(4)
    for e in range(15):
        play(rp, int(rng.integers(1, 9)), str(rng.choice(["term", "trunc"])), first=10 * e)
    ready = np.flatnonzero(rp.storage.ready)
    rp.update_priorities(ready, rng.uniform(0.5, 2.0, size=len(ready)))
    assert_consistent(rp)
    p = leaves(rp)
    counts = np.zeros(rp.storage.capacity, dtype=np.int64)
    for _ in range(100):
        counts += np.bincount(rp.sample(1000, beta=1.0).indices, minlength=rp.storage.capacity)
    assert set(np.flatnonzero(counts).tolist()) == set(ready.tolist())
    np.testing.assert_allclose(counts / counts.sum(), p / p.sum(), rtol=0.05)


# ---------------------------------------------------------------------- zero priority
def test_episode_final_slots_and_overwritten_slots_are_never_drawn() -> None:
    rp = replay(capacity=16, seed=1)
    play(rp, 5, "term", first=0)  # slots 0..4 ready, 5 final
    play(rp, 4, "trunc", first=10)  # slots 6..9 ready, 10 final
    assert leaves(rp)[[5, 10]].tolist() == [0.0, 0.0]
    assert_consistent(rp)
    # The next episode wraps: slots 11..15 then 0..3 are rewritten. Old 0..3 are gone, old 4
    # stacks frames from slots 1..3 so it is invalid too; new transitions start at 11..15, 0..2.
    play(rp, 8, "open", first=20)
    ready = np.flatnonzero(rp.storage.ready).tolist()
    assert ready == [0, 1, 2, 6, 7, 8, 9, 11, 12, 13, 14, 15]
    np.testing.assert_array_equal(rp.tree.get(np.array([3, 4, 5, 10])), 0.0)
    assert_consistent(rp)
    drawn = np.concatenate([rp.sample(32, beta=0.5).indices for _ in range(3000)])
    assert set(drawn.tolist()) == set(ready)


def test_overwritten_slot_priority_resets_to_zero() -> None:
    rp = replay(capacity=12, seed=2)
    play(rp, 6, "term")  # slots 0..5 ready, 6 final
    rp.update_priorities(np.arange(6), np.full(6, 7.0))
    assert rp.tree.get(np.array([0])) == pytest.approx(7.0)
    rp.begin(0, frame(100))  # slots 7..: the ring has room, nothing old is touched
    for k in range(5):  # writes slots 8..11 then 0: slot 0 and the stacks of 1, 2, 3 lose frames
        rp.append(0, 0, 0.0, frame(101 + k), False, False)
    assert rp.tree.get(np.array([0, 1, 2, 3])).tolist() == [0.0] * 4
    assert rp.tree.get(np.array([4, 5])).tolist() == pytest.approx([7.0, 7.0])
    assert_consistent(rp)


def test_update_of_a_slot_that_stopped_being_ready_keeps_it_at_zero() -> None:
    rp = replay(capacity=12, seed=2)
    play(rp, 6, "term")  # slots 0..5 ready, 6 final
    play(rp, 6, "term", first=50)  # slots 7..11, 0 and the final frame in 1: old 0..4 invalid
    rp.update_priorities(np.array([1, 2, 3, 4, 5]), np.full(5, 3.0))  # a stale batch's update
    assert rp.tree.get(np.arange(1, 6)).tolist() == [0.0, 0.0, 0.0, 0.0, pytest.approx(3.0)]
    assert_consistent(rp)


def test_invariants_hold_through_many_writes_samples_and_updates() -> None:
    for n in (1, 3):
        rp = replay(capacity=50, alpha=0.6, eps=1e-3, n=n, seed=n)
        rng = np.random.default_rng(10 + n)
        for e in range(80):
            play(rp, int(rng.integers(1, 15)), str(rng.choice(["term", "trunc"])), first=e)
            assert_consistent(rp)
            if len(rp) >= 8:
                b = rp.sample(8, beta=0.5)
                assert rp.storage.ready[b.indices].all()
                rp.update_priorities(b.indices, rng.normal(0.0, 3.0, size=8))
                assert_consistent(rp)


# ---------------------------------------------------------------------- IS weights
def test_importance_weights_by_hand() -> None:
    rp = replay(alpha=1.0, seed=0)
    play(rp, 4)  # N = 4 ready transitions
    rp.update_priorities(np.arange(4), np.array([1.0, 2.0, 3.0, 4.0]))
    # P = p / Σp = 0.1, 0.2, 0.3, 0.4; N·P = 0.4, 0.8, 1.2, 1.6; β = 0.5.
    w = np.array([0.4, 0.8, 1.2, 1.6]) ** -0.5
    got = rp.importance_weights(np.array([1, 3, 3, 0]), 0.5)
    np.testing.assert_allclose(got, w[[1, 3, 3, 0]] / w[0], rtol=1e-6)
    # Normalised by the largest weight in the batch (Schaul et al., Algorithm 1).
    np.testing.assert_allclose(
        rp.importance_weights(np.array([2, 3]), 0.5), [1.0, (1.2 / 1.6) ** 0.5], rtol=1e-6
    )
    # β = 0: no correction; β = 1: full correction, w ∝ 1 / P.
    np.testing.assert_allclose(rp.importance_weights(np.array([0, 3]), 0.0), [1.0, 1.0])
    np.testing.assert_allclose(rp.importance_weights(np.array([0, 3]), 1.0), [1.0, 0.25])
    b = rp.sample(16, beta=0.5)
    np.testing.assert_allclose(b.weights, w[b.indices] / w[b.indices].max(), rtol=1e-6)
    assert b.weights.dtype == np.float32


# ---------------------------------------------------------------------- priorities
def test_duplicate_indices_in_one_update_last_wins() -> None:
    rp = replay(alpha=1.0)
    play(rp, 5)
    rp.update_priorities(np.array([2, 4, 2, 2, 4]), np.array([9.0, 1.0, 5.0, 3.0, 6.0]))
    assert rp.tree.get(np.array([2, 4])).tolist() == pytest.approx([3.0, 6.0])
    assert_consistent(rp)


def test_alpha_is_applied_exactly_once() -> None:
    alpha, eps = 0.5, 1e-2
    rp = replay(alpha=alpha, eps=eps)
    play(rp, 4, "open")  # slots 0..3 ready at the initial max priority 1
    np.testing.assert_array_equal(rp.tree.get(np.arange(4)), 1.0)
    rp.update_priorities(np.array([0, 1]), np.array([-3.0, 0.5]))  # the sign of δ is dropped
    p0, p1 = (3.0 + eps) ** alpha, (0.5 + eps) ** alpha
    assert rp.tree.get(np.array([0, 1])).tolist() == pytest.approx([p0, p1], rel=1e-12)
    assert rp.tree.get(np.array([0]))[0] != pytest.approx(p0**alpha)  # not α twice
    # max_priority lives in the same α-space as the leaves.
    assert rp.max_priority == pytest.approx(p0, rel=1e-12)
    # New transitions enter at max_priority, which is not raised to α again.
    rp.append(0, 1, 0.0, frame(9), False, False)  # slot 4 becomes ready
    assert rp.tree.get(np.array([4]))[0] == pytest.approx(p0, rel=1e-12)
    # A smaller error does not lower the maximum.
    rp.update_priorities(np.array([4]), np.array([0.0]))
    assert rp.tree.get(np.array([4]))[0] == pytest.approx(eps**alpha, rel=1e-12)
    assert rp.max_priority == pytest.approx(p0, rel=1e-12)
    assert_consistent(rp)


def test_nstep_transitions_enter_the_tree_only_when_ready() -> None:
    rp = replay(alpha=1.0, n=3)
    rp.begin(0, frame(0))
    rp.append(0, 0, 1.0, frame(1), False, False)
    rp.append(0, 0, 1.0, frame(2), False, False)
    assert rp.tree.total == 0.0 and len(rp) == 0  # returns of slots 0, 1 not complete yet
    rp.append(0, 0, 1.0, frame(3), False, False)
    assert leaves(rp)[:4].tolist() == [1.0, 0.0, 0.0, 0.0]  # slot 0's 3-step return is known
    rp.append(0, 0, 1.0, frame(4), False, False)
    assert leaves(rp)[:5].tolist() == [1.0, 1.0, 0.0, 0.0, 0.0]
    rp.append(0, 0, 1.0, frame(5), True, False)  # termination flushes slots 2, 3, 4
    assert leaves(rp)[:6].tolist() == [1.0] * 5 + [0.0]
    assert_consistent(rp)
    with pytest.raises(ValueError):
        replay(n=3).sample(4, beta=0.5)


# ---------------------------------------------------------------------- end to end
TINY = [*TINY_RUN, "--quiet"]


def test_train_with_prioritized_replay_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "per"
    args = ["train", *TINY, "--replay", "prioritized", "--alpha", "0.5", "--n-step", "3"]
    args += ["--total-steps", "120", "--eval-every", "60", "--eval-max-frames", "200"]
    assert main([*args, "--out", str(out)]) == 0
    lines = (out / "rewards.txt").read_text().splitlines()
    assert [line.split()[:2] for line in lines] == [["1", "60"], ["2", "120"]]
    config = (out / "config.toml").read_text()
    assert 'replay = "prioritized"' in config and "alpha = 0.5" in config
