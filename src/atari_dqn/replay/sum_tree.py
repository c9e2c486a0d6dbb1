"""Sum tree for proportional prioritized experience replay (Schaul et al., 2016).

The tree answers two questions in O(log N): "which item owns this point of the
cumulative priority mass?" (sampling) and "change item i's priority" (after a
learning step). Both are batched, because the replay buffer samples and
re-prioritises a whole minibatch at once.

Layout: a flat float64 array ``tree`` of length ``2 * P`` where ``P`` is the
capacity rounded up to a power of two. Node 1 is the root, node ``k`` has
children ``2k`` and ``2k + 1``, and leaf ``i`` lives at ``P + i``. Leaves past
``capacity`` stay 0 forever, so they are never sampled. Index 0 is unused.

Two interchangeable backends give bit-identical results:

* ``numba``: compiled kernels. At capacity 1e6 the cost of a minibatch is
  dominated by cache misses in the lower tree levels, so the kernels walk the
  tree level by level for the whole batch (the inner loop runs over items):
  the loads of different items are independent and the CPU overlaps their
  misses instead of paying them one after another.
* ``numpy``: the same level-by-level algorithm with one vectorised numpy call
  per step: the tests' reference for the kernels, and the fallback where numba
  cannot be imported (pyproject installs numba; a platform without its wheels
  still trains, slower).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

try:
    import numba

    NUMBA_AVAILABLE = True
except ImportError:  # a dependency, but the numpy backend covers everything without it
    NUMBA_AVAILABLE = False

__all__ = ["NUMBA_AVAILABLE", "SumTree"]

Backend = Literal["auto", "numba", "numpy"]


# --------------------------------------------------------------------------- #
# numba kernels
# --------------------------------------------------------------------------- #
# Descent rule shared by both backends (must stay in sync with _find_numpy):
# at node k with children l = tree[2k], r = tree[2k + 1] and remaining target t,
# go right iff (t >= l or l == 0) and r > 0, subtracting l when going right.
# A node with positive sum always has a positive child (fl(0 + 0) == 0), so the
# walk that starts at a positive root only ever visits positive nodes and can
# never end on a zero leaf. A target at or past the end of a subtree (a
# boundary, rounding, target >= total) keeps moving right within that subtree
# and so lands on its rightmost non-zero leaf: the nearest one to the left.

if NUMBA_AVAILABLE:

    @numba.njit(cache=True, nogil=True)
    def _descend(tree, depth, work, out):  # pragma: no cover - compiled
        """Walk all targets in ``work`` down one level at a time; leaf indices to ``out``."""
        n = work.shape[0]
        for j in range(n):
            out[j] = 1
        for _ in range(depth):
            for j in range(n):
                k2 = 2 * out[j]
                left = tree[k2]
                right = tree[k2 + 1]
                t = work[j]
                # Branch-free on purpose: a branch on a cache-missing load is
                # mispredicted half the time and the flush discards the other
                # items' loads already in flight (measured 2x slower).
                go_right = ((t >= left) | (left == 0.0)) & (right > 0.0)
                work[j] = t - left * go_right
                out[j] = k2 + go_right
        leaf0 = 1 << depth
        for j in range(n):
            out[j] -= leaf0

    @numba.njit(cache=True, nogil=True)
    def _find_kernel(tree, depth, targets, out):  # pragma: no cover - compiled
        """Leaf indices for ``targets`` into ``out``.

        Returns the number of NaN targets (the caller raises) so that input
        checking costs no extra numpy call in the hot path.
        """
        n = targets.shape[0]
        work = np.empty(n, np.float64)
        n_nan = 0
        for j in range(n):
            t = targets[j]
            if t != t:
                n_nan += 1
            # Negative targets and NaN clamp to 0 (NaN is reported anyway).
            work[j] = t if t > 0.0 else 0.0
        _descend(tree, depth, work, out)
        return n_nan

    @numba.njit(cache=True, nogil=True)
    def _stratified_kernel(tree, depth, uniforms, out):  # pragma: no cover - compiled
        """Target j is (j + u_j) * total / n, then the same descent as find."""
        n = uniforms.shape[0]
        work = np.empty(n, np.float64)
        seg = tree[1] / n
        for j in range(n):
            work[j] = (j + uniforms[j]) * seg
        _descend(tree, depth, work, out)

    @numba.njit(cache=True, nogil=True)
    def _get_kernel(tree, leaf0, capacity, indices, out):  # pragma: no cover - compiled
        """Leaves at ``indices`` into ``out``; returns 1 (out incomplete) on a bad index."""
        for j in range(indices.shape[0]):
            i = indices[j]
            if i < 0 or i >= capacity:
                return 1
            out[j] = tree[leaf0 + i]
        return 0

    @numba.njit(cache=True, nogil=True)
    def _update_kernel(tree, depth, capacity, indices, priorities):  # pragma: no cover
        """Validate, write leaves (sequentially, so the last duplicate wins),
        then recompute ancestors level by level for the whole batch.

        Returns 0 on success, 1 for a bad priority, 2 for a bad index; nothing
        is written unless everything is valid.
        """
        n = indices.shape[0]
        for j in range(n):
            p = priorities[j]
            if not (p >= 0.0 and p < np.inf):
                return 1
            i = indices[j]
            if i < 0 or i >= capacity:
                return 2
        leaf0 = 1 << depth
        for j in range(n):
            tree[leaf0 + indices[j]] = priorities[j]
        # Recomputing parents from children (instead of adding deltas) keeps
        # every internal node exactly fl(left + right): no drift, ever.
        for level in range(1, depth + 1):
            for j in range(n):
                k = (leaf0 + indices[j]) >> level
                tree[k] = tree[2 * k] + tree[2 * k + 1]
        return 0


# --------------------------------------------------------------------------- #
# numpy fallback (same algorithm, same floating-point operations)
# --------------------------------------------------------------------------- #
def _find_numpy(tree: np.ndarray, depth: int, targets: np.ndarray) -> np.ndarray:
    t = np.maximum(targets, 0.0)  # NaN already rejected by the caller
    node = np.ones(targets.shape[0], dtype=np.int64)
    for _ in range(depth):
        k2 = node * 2
        left = tree[k2]
        right = tree[k2 + 1]
        go_right = ((t >= left) | (left == 0.0)) & (right > 0.0)
        t = np.where(go_right, t - left, t)
        node = k2 + go_right
    return node - (1 << depth)


def _update_numpy(
    tree: np.ndarray, depth: int, indices: np.ndarray, priorities: np.ndarray
) -> None:
    if indices.shape[0] > 1:
        # Fancy assignment does not promise an order for duplicate indices, so
        # keep only the last occurrence of each index explicitly.
        rev = indices[::-1]
        indices, first = np.unique(rev, return_index=True)
        priorities = priorities[::-1][first]
    node = indices + (1 << depth)
    tree[node] = priorities
    for _ in range(depth):
        node = node >> 1
        # Duplicated parents are harmless: each copy writes the same value.
        tree[node] = tree[2 * node] + tree[2 * node + 1]


# --------------------------------------------------------------------------- #
class SumTree:
    """Binary sum tree over ``capacity`` non-negative float64 priorities.

    Parameters
    ----------
    capacity:
        Number of leaves (any integer >= 1). Leaves start at priority 0.
    backend:
        ``"auto"`` (numba if importable, else numpy), ``"numba"`` (error if
        numba is missing) or ``"numpy"`` (force the pure-numpy path, e.g. to
        test the kernels against it).
    """

    def __init__(self, capacity: int, backend: Backend = "auto") -> None:
        capacity = int(capacity)
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if backend == "auto":
            backend = "numba" if NUMBA_AVAILABLE else "numpy"
        elif backend == "numba":
            if not NUMBA_AVAILABLE:
                raise ImportError("backend='numba' requested but numba is not installed")
        elif backend != "numpy":
            raise ValueError(f"backend must be 'auto', 'numba' or 'numpy', got {backend!r}")
        self.capacity: int = capacity
        self.backend: str = backend
        self._depth: int = (capacity - 1).bit_length()  # P = 2**depth >= capacity
        self._leaf0: int = 1 << self._depth
        self._tree: np.ndarray = np.zeros(2 * self._leaf0, dtype=np.float64)
        self._use_numba: bool = backend == "numba"

    def __len__(self) -> int:
        return self.capacity

    def __repr__(self) -> str:
        return f"SumTree(capacity={self.capacity}, total={self.total!r}, backend={self.backend!r})"

    @staticmethod
    def nbytes_for(capacity: int) -> int:
        """:attr:`nbytes` of a tree of ``capacity`` leaves, before allocating it."""
        return 2 * (1 << (int(capacity) - 1).bit_length()) * 8

    @property
    def nbytes(self) -> int:
        """Memory of the tree array: ``2 · P`` float64 nodes, P = capacity rounded up to 2^k."""
        return int(self._tree.nbytes)

    @property
    def total(self) -> float:
        """Sum of all priorities (the root)."""
        return float(self._tree[1])

    # -- writes ------------------------------------------------------------- #
    def update(self, indices: np.ndarray, priorities: np.ndarray) -> None:
        """Set ``priority[indices[j]] = priorities[j]``; the last of repeated indices wins.

        Raises ValueError (and changes nothing) if a priority is negative or
        not finite, or if the two arrays differ in length; IndexError if an
        index is outside ``[0, capacity)``.
        """
        idx = np.ascontiguousarray(indices, dtype=np.int64)
        pri = np.ascontiguousarray(priorities, dtype=np.float64)
        if idx.ndim != 1:  # reshape only when needed: this is the hot path
            idx = idx.reshape(-1)
        if pri.ndim != 1:
            pri = pri.reshape(-1)
        if idx.shape[0] != pri.shape[0]:
            if pri.shape[0] != 1:
                raise ValueError(
                    f"indices and priorities differ in length: {idx.shape[0]} vs {pri.shape[0]}"
                )
            pri = np.full(idx.shape[0], pri[0])  # a scalar priority broadcasts
        if self._use_numba:
            status = _update_kernel(self._tree, self._depth, self.capacity, idx, pri)
            if status:
                self._validate_update(idx, pri)
            return
        self._validate_update(idx, pri)
        _update_numpy(self._tree, self._depth, idx, pri)

    def _validate_update(self, idx: np.ndarray, pri: np.ndarray) -> None:
        bad_p = ~(np.isfinite(pri) & (pri >= 0.0))
        if bad_p.any():
            raise ValueError(f"priorities must be finite and >= 0, got {pri[bad_p][:5].tolist()}")
        bad_i = (idx < 0) | (idx >= self.capacity)
        if bad_i.any():
            raise IndexError(
                f"indices must be in [0, {self.capacity}), got {idx[bad_i][:5].tolist()}"
            )

    # -- reads -------------------------------------------------------------- #
    def get(self, indices: np.ndarray) -> np.ndarray:
        """Leaf priorities at ``indices`` (a new float64 array of the same shape)."""
        idx = np.asarray(indices, dtype=np.int64)
        if self._use_numba and idx.ndim == 1:  # one pass instead of five numpy calls
            out = np.empty(idx.shape[0], dtype=np.float64)
            if _get_kernel(self._tree, self._leaf0, self.capacity, idx, out):
                raise IndexError(f"indices must be in [0, {self.capacity})")
            return out
        if idx.size and (idx.min() < 0 or idx.max() >= self.capacity):
            raise IndexError(f"indices must be in [0, {self.capacity})")
        return self._tree[idx + self._leaf0]

    def find(self, targets: np.ndarray) -> np.ndarray:
        """Leaf index owning each target of the cumulative priority mass.

        For a target in ``[0, total)`` this is the ``i`` with
        ``prefix_i <= target < prefix_i + p_i``. Zero-priority leaves are never
        returned: targets < 0 act as 0, and a target on or past the end of the
        mass (``>= total`` through rounding) gets the nearest non-zero leaf to
        its left. Raises ValueError if the total is 0 or a target is NaN.
        """
        t = np.ascontiguousarray(targets, dtype=np.float64)
        shape = t.shape
        if t.ndim != 1:
            t = t.reshape(-1)
        if not self._tree[1] > 0.0:
            raise ValueError("cannot sample from a sum tree whose total priority is 0")
        if self._use_numba:
            out = np.empty(t.shape[0], dtype=np.int64)
            if _find_kernel(self._tree, self._depth, t, out):
                raise ValueError("targets must not be NaN")
        else:
            if np.isnan(t).any():
                raise ValueError("targets must not be NaN")
            out = _find_numpy(self._tree, self._depth, t)
        return out if len(shape) == 1 else out.reshape(shape)

    def sample_stratified(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """Draw ``batch_size`` leaves with probability proportional to priority.

        Splits ``[0, total)`` into ``batch_size`` equal slices and draws one
        uniform target in each (as in Schaul et al.): lower variance than
        independent draws, and sorted targets make the descents cache-friendly.
        """
        if not self._tree[1] > 0.0:
            raise ValueError("cannot sample from a sum tree whose total priority is 0")
        u = rng.random(batch_size)
        if self._use_numba:
            out = np.empty(batch_size, dtype=np.int64)
            _stratified_kernel(self._tree, self._depth, u, out)
            return out
        seg = self._tree[1] / batch_size
        return _find_numpy(self._tree, self._depth, (np.arange(batch_size) + u) * seg)

    # -- debugging ---------------------------------------------------------- #
    def check_valid(self) -> None:
        """Raise AssertionError unless every internal node equals the sum of its
        children and every leaf is finite and >= 0 (padding leaves exactly 0)."""
        tree = self._tree
        leaves = tree[self._leaf0 :]
        assert np.all(np.isfinite(leaves)), "non-finite leaf priority"
        assert np.all(leaves >= 0.0), "negative leaf priority"
        assert np.all(leaves[self.capacity :] == 0.0), "padding leaf is not 0"
        internal = tree[1 : self._leaf0]
        child_sum = tree[2 : 2 * self._leaf0 : 2] + tree[3 : 2 * self._leaf0 : 2]
        assert np.allclose(internal, child_sum, rtol=1e-12, atol=0.0), (
            "internal node differs from the sum of its children"
        )
