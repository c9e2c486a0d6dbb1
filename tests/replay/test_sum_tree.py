"""tests for the prioritized-replay sum tree and the course project's Fenwick baseline."""

from __future__ import annotations

import numpy as np
import pytest

from atari_dqn.replay.sum_tree import NUMBA_AVAILABLE, SumTree

BACKENDS = [
    "numpy",
    pytest.param(
        "numba", marks=pytest.mark.skipif(not NUMBA_AVAILABLE, reason="numba not installed")
    ),
]


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


def make_tree(priorities, backend: str, capacity: int | None = None) -> SumTree:
    priorities = np.asarray(priorities, dtype=np.float64)
    tree = SumTree(len(priorities) if capacity is None else capacity, backend=backend)
    tree.update(np.arange(len(priorities)), priorities)
    tree.check_valid()
    return tree


def find1(tree: SumTree, target: float) -> int:
    return int(tree.find(np.array([target]))[0])


# --------------------------------------------------------------------------- #
# small trees worked by hand
# --------------------------------------------------------------------------- #
def test_capacity_4_by_hand(backend):
    tree = make_tree([1, 2, 3, 4], backend)
    assert tree.total == 10.0
    assert len(tree) == tree.capacity == 4
    expected = {0: 0, 0.999: 0, 1: 1, 2.999: 1, 3: 2, 5.999: 2, 6: 3, 9.999: 3}
    for target, leaf in expected.items():
        assert find1(tree, target) == leaf, target
    targets = np.array(list(expected))
    np.testing.assert_array_equal(tree.find(targets), list(expected.values()))
    np.testing.assert_array_equal(tree.get(np.array([3, 0])), [4.0, 1.0])


def test_capacity_5_by_hand(backend):
    # Not a power of two: 3 padding leaves that must stay 0.
    tree = make_tree([1, 2, 3, 4, 5], backend)
    assert tree.total == 15.0
    expected = {0: 0, 0.999: 0, 1: 1, 2.999: 1, 3: 2, 5.999: 2, 6: 3, 9.999: 3, 10: 4}
    expected |= {14.999: 4, 15: 4, 1e9: 4}  # at or past the end: last non-zero leaf
    for target, leaf in expected.items():
        assert find1(tree, target) == leaf, target


def test_capacity_7_with_zeros_by_hand(backend):
    # intervals: 0 [0, .5), 1 [.5, 2), 2 empty, 3 [2, 4), 4 [4, 5), 5 empty, 6 [5, 8)
    tree = make_tree([0.5, 1.5, 0, 2, 1, 0, 3], backend)
    assert tree.total == 8.0
    expected = {
        -1.0: 0,
        0.0: 0,
        0.4999: 0,
        0.5: 1,
        1.999: 1,
        2.0: 3,  # boundary of the empty item 2: the next non-empty interval owns it
        3.999: 3,
        4.0: 4,
        4.999: 4,
        5.0: 6,  # again past the empty item 5
        7.999: 6,
        8.0: 6,
        np.inf: 6,
    }
    for target, leaf in expected.items():
        assert find1(tree, target) == leaf, target


def test_capacity_1(backend):
    tree = SumTree(1, backend=backend)
    with pytest.raises(ValueError):
        tree.find(np.array([0.0]))
    tree.update(np.array([0]), np.array([2.5]))
    tree.check_valid()
    assert tree.total == 2.5
    np.testing.assert_array_equal(tree.find(np.array([0.0, 1.0, 2.4999, 2.5, 7.0])), [0] * 5)
    np.testing.assert_array_equal(tree.sample_stratified(4, np.random.default_rng(0)), [0] * 4)


def test_find_keeps_shape(backend):
    tree = make_tree([1, 2, 3, 4], backend)
    out = tree.find(np.array([[0.5, 1.5], [3.5, 9.5]]))
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, [[0, 1], [2, 3]])
    assert tree.find(np.array([], dtype=np.float64)).shape == (0,)


def test_invalid_constructor_args():
    with pytest.raises(ValueError):
        SumTree(0)
    with pytest.raises(ValueError):
        SumTree(4, backend="cuda")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- #
# updates
# --------------------------------------------------------------------------- #
def test_update_and_check_valid_after_every_change(backend):
    tree = SumTree(6, backend=backend)
    tree.check_valid()
    assert tree.total == 0.0
    ref = np.zeros(6)
    changes = [([0], [1.0]), ([5], [2.5]), ([2, 3], [0.25, 4.0]), ([0], [0.0]), ([5, 1], [1, 3])]
    for idx, pri in changes:
        tree.update(np.array(idx), np.array(pri, dtype=np.float64))
        ref[idx] = pri
        tree.check_valid()
        np.testing.assert_array_equal(tree.get(np.arange(6)), ref)
        assert tree.total == pytest.approx(ref.sum(), rel=1e-15)


def test_duplicate_indices_last_wins(backend):
    tree = SumTree(5, backend=backend)
    tree.update(np.array([1, 1, 2, 1, 4, 2]), np.array([5.0, 6.0, 7.0, 8.0, 1.0, 0.5]))
    tree.check_valid()
    np.testing.assert_array_equal(tree.get(np.arange(5)), [0.0, 8.0, 0.5, 0.0, 1.0])
    assert tree.total == 9.5


def test_bad_priorities_raise_and_change_nothing(backend):
    tree = make_tree([1, 2, 3], backend)
    before = tree._tree.copy()
    for bad in (-1.0, np.nan, np.inf, -np.inf, -1e-300):
        with pytest.raises(ValueError):
            tree.update(np.array([0, 1]), np.array([4.0, bad]))
        np.testing.assert_array_equal(tree._tree, before)
    for bad_idx in (-1, 3, 100):
        with pytest.raises(IndexError):
            tree.update(np.array([0, bad_idx]), np.array([4.0, 1.0]))
        np.testing.assert_array_equal(tree._tree, before)
    with pytest.raises(ValueError):
        tree.update(np.array([0, 1]), np.array([1.0, 2.0, 3.0]))
    with pytest.raises(IndexError):
        tree.get(np.array([3]))
    with pytest.raises(IndexError):
        tree.get(np.array([0, -1]))
    np.testing.assert_array_equal(tree.get(np.array([[2, 0], [1, 1]])), [[3.0, 1.0], [2.0, 2.0]])


def test_empty_tree_and_nan_target_raise(backend):
    tree = SumTree(8, backend=backend)
    with pytest.raises(ValueError):
        tree.find(np.array([0.0]))
    with pytest.raises(ValueError):
        tree.sample_stratified(4, np.random.default_rng(0))
    tree.update(np.array([3]), np.array([1.0]))
    with pytest.raises(ValueError):
        tree.find(np.array([0.5, np.nan]))
    tree.update(np.array([3]), np.array([0.0]))  # back to all-zero
    with pytest.raises(ValueError):
        tree.find(np.array([0.0]))


def test_check_valid_detects_corruption():
    tree = make_tree([1, 2, 3, 4, 5], "numpy")
    tree._tree[2] += 1e-6  # an internal node
    with pytest.raises(AssertionError):
        tree.check_valid()
    tree = make_tree([1, 2, 3, 4, 5], "numpy")
    tree._tree[-1] = 1.0  # a padding leaf past capacity
    with pytest.raises(AssertionError):
        tree.check_valid()
    tree = make_tree([1, 2, 3, 4, 5], "numpy")
    tree._tree[8] = -1.0
    with pytest.raises(AssertionError):
        tree.check_valid()


# --------------------------------------------------------------------------- #
# sampling
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    "priorities",
    [
        [1.0, 2.0, 3.0, 4.0],
        [5.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
        [0.3, 0.0, 0.25, 0.45, 0.0, 0.2, 0.35],  # zero items must get no draws at all
        [1e-3, 2e-3, 1.5e-3, 1e-3, 2.5e-3, 1e-3],
    ],
)
def test_stratified_distribution(backend, priorities):
    # Stratification makes each batch's count of an item vary by at most the two
    # partially covered slices (variance <= 0.5 per batch), so over 400 batches
    # the sd of a count is <= 14, against a 1% tolerance of >= 80 here.
    priorities = np.asarray(priorities)
    tree = make_tree(priorities, backend, capacity=len(priorities) + 3)
    rng = np.random.default_rng(1234)
    draws = np.concatenate([tree.sample_stratified(250, rng) for _ in range(400)])
    assert draws.shape == (100_000,)
    counts = np.bincount(draws, minlength=tree.capacity)
    expected = priorities / priorities.sum() * draws.size
    nonzero = priorities > 0
    np.testing.assert_allclose(counts[: len(priorities)][nonzero], expected[nonzero], rtol=0.01)
    assert counts[: len(priorities)][~nonzero].sum() == 0
    assert counts[len(priorities) :].sum() == 0


def test_stratified_is_sorted_and_within_its_slice(backend):
    rng = np.random.default_rng(7)
    priorities = rng.random(1000) * (rng.random(1000) < 0.7)
    tree = make_tree(priorities, backend)
    for batch in (1, 32, 257):
        out = tree.sample_stratified(batch, rng)
        assert out.shape == (batch,) and out.dtype == np.int64
        assert np.all(np.diff(out) >= 0)  # targets ascend, so leaves do too
        assert np.all(priorities[out] > 0)


def test_zero_priority_never_returned_at_edges(backend):
    rng = np.random.default_rng(3)
    cases = [
        [0, 1, 0, 0, 2, 0, 3, 0],
        [0, 0, 0, 0.1, 0, 0, 0, 0, 0],
        [0.1, 0, 0.2, 0, 0.3, 0, 0, 0.7, 0, 0],
        [1.0, 1e-17, 0.0],  # the tiny leaf is lost in the root sum: fl(1 + 1e-17) == 1
        [1e16, 1.0, 0, 0, 1.0, 0],
        list(rng.random(37) * (rng.random(37) < 0.3)) + [0.0],
    ]
    for priorities in cases:
        priorities = np.asarray(priorities, dtype=np.float64)
        if not priorities.any():
            continue
        tree = make_tree(priorities, backend)
        total = tree.total
        boundaries = np.cumsum(priorities)
        edges = np.concatenate(
            [
                [0.0, -0.0, -1.0, total, np.nextafter(total, 0), np.nextafter(total, np.inf)],
                [total * (1 + 1e-12), 2 * total, np.inf, -np.inf],
                boundaries,
                np.nextafter(boundaries, 0),
                np.nextafter(boundaries, np.inf),
                rng.random(200) * total,
            ]
        )
        out = tree.find(edges)
        assert np.all(priorities[out] > 0), (priorities, edges[priorities[out] == 0])
        # past the end (or -inf/negative at the start): last / first non-zero leaf
        nz = np.flatnonzero(priorities)
        np.testing.assert_array_equal(tree.find(np.array([2 * total, np.inf])), [nz[-1]] * 2)
        np.testing.assert_array_equal(tree.find(np.array([-1.0, -np.inf, 0.0])), [nz[0]] * 3)
        assert np.all(priorities[tree.sample_stratified(64, rng)] > 0)


def test_backends_agree_on_random_trees():
    if not NUMBA_AVAILABLE:
        pytest.skip("numba not installed")
    rng = np.random.default_rng(11)
    for capacity in (1, 2, 3, 5, 8, 13, 64, 100, 1000, 4097):
        a = SumTree(capacity, backend="numpy")
        b = SumTree(capacity, backend="numba")
        for _ in range(5):
            n = int(rng.integers(1, 2 * capacity + 2))
            idx = rng.integers(0, capacity, n)  # duplicates are likely
            pri = rng.exponential(size=n) * (rng.random(n) < 0.6)
            a.update(idx, pri)
            b.update(idx, pri)
            np.testing.assert_array_equal(a._tree, b._tree)
            if a.total == 0:
                continue
            t = a.total
            targets = np.concatenate([rng.random(300) * t * 1.01 - 0.005 * t, [0, t, 2 * t]])
            np.testing.assert_array_equal(a.find(targets), b.find(targets))
            seed = int(rng.integers(1 << 31))
            np.testing.assert_array_equal(
                a.sample_stratified(33, np.random.default_rng(seed)),
                b.sample_stratified(33, np.random.default_rng(seed)),
            )


def test_random_updates_against_brute_force(backend):
    rng = np.random.default_rng(2024)
    capacity = 777
    tree = SumTree(capacity, backend=backend)
    ref = np.zeros(capacity)
    for step in range(300):
        n = int(rng.integers(1, 40))
        idx = rng.integers(0, capacity, n)
        pri = rng.exponential(size=n) * (rng.random(n) < 0.8)
        if step % 50 == 0:
            pri *= 1e6  # wide dynamic range stresses rounding
        tree.update(idx, pri)
        for i, p in zip(idx, pri, strict=True):  # sequential: last duplicate wins
            ref[i] = p
        tree.check_valid()
        np.testing.assert_array_equal(tree.get(np.arange(capacity)), ref)
        assert tree.total == pytest.approx(ref.sum(), rel=1e-12)
        if not ref.any():
            continue
        total = tree.total
        targets = rng.random(64) * total
        got = tree.find(targets)
        cum = np.cumsum(ref)
        want = np.searchsorted(cum, targets, side="right")
        # The tree's partial sums round differently from cumsum, so only a target
        # within rounding distance of a boundary may legitimately disagree.
        near = np.min(np.abs(targets[:, None] - cum[None, :]), axis=1) <= 1e-9 * total
        np.testing.assert_array_equal(got[~near], want[~near])
        assert np.all(ref[got] > 0)


# --------------------------------------------------------------------------- #
# the course project's baseline
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("capacity", [6, 8])
def test_course_fenwick_samples_in_proportion(capacity):
    pytest.importorskip("torch")
    from atari_dqn.bench.fenwick_course import CourseFenwickSampler

    sampler = CourseFenwickSampler(capacity)
    priorities = np.arange(1, capacity + 1, dtype=np.float64)
    sampler.update(np.arange(capacity), np.zeros(capacity))
    sampler.update(np.arange(capacity), priorities)  # change() on a non-zero tree too
    rng = np.random.default_rng(5)
    draws = np.concatenate([sampler.sample(100, rng) for _ in range(30)])
    assert draws.min() >= 0 and draws.max() < capacity
    freq = np.bincount(draws, minlength=capacity) / draws.size
    # sd of a frequency <= sqrt(.25 / 3000) ~ 0.009
    np.testing.assert_allclose(freq, priorities / priorities.sum(), atol=0.035)
    # searching must not corrupt the tree (the course project's copy() aliasing bug)
    sums = [float(sampler.get_prefix_sum(i)) for i in range(1, capacity + 1)]
    np.testing.assert_allclose(sums, np.cumsum(priorities), rtol=1e-6)
    # the last position (loc == max_len for capacity 8) is set and drawn
    assert freq[-1] > 0
    sampler.update(np.array([capacity - 1]), np.array([0.0]))
    assert (sampler.sample(300, rng) != capacity - 1).all()
