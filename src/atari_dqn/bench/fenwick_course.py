"""The course project's Fenwick-tree sampler: the baseline of ``bench replay``, not core.

This is a faithful transcription of the course project's ``treearray`` (one Python loop
per index, a ``torch.float`` tensor of shape ``(max_len + 1, 1)`` as storage)
so that ``atari-dqn bench replay`` can show what :class:`~atari_dqn.replay.sum_tree.SumTree`
replaces. Do not use it for training: it is slow and float32.

Two minimal fixes were needed to make it a working sampler at all (each is
marked ``COURSE FIX`` below). Neither changes the algorithm's cost:

1. ``add`` looped ``while loc < max_len``, so the root ``array[max_len]`` (the
   total that ``search`` divides by) stayed 0 forever and the item at
   ``loc == max_len`` could never be set. ``search`` then compared against
   ``x / 0`` and degenerated to always returning 1. Fixed: ``loc <= max_len``.
2. ``search`` took ``copy.copy(array[i])``; for a tensor view that is a
   shallow copy sharing storage, so ``right_val -= left_val`` subtracted in
   place from the tree itself and every search corrupted it. Fixed:
   ``.clone()``.

Index convention: the course project's Fenwick positions are 1-based (``1..max_len``);
the batch helpers :meth:`CourseFenwickSampler.sample` and
:meth:`CourseFenwickSampler.update` use 0-based item indices like ``SumTree``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["CourseFenwickSampler"]


class CourseFenwickSampler:
    """The course project's ``treearray``: Fenwick tree with a randomized top-down search."""

    def __init__(self, capacity: int) -> None:
        if capacity < 2:
            # The course project computes 1 << (bits - 1) in search: bits = 0 breaks it.
            raise ValueError(
                f"the course project's Fenwick tree needs capacity >= 2, got {capacity}"
            )
        self.__capacity = capacity
        self.__bits = math.ceil(math.log(capacity, 2))
        self.__max_len = 1 << self.__bits
        self.__array = torch.zeros((self.__max_len + 1, 1), dtype=torch.float)

    @property
    def capacity(self) -> int:
        return self.__capacity

    def __len__(self) -> int:
        return self.__capacity

    # -- the course project's methods, transcribed ------------------------------------ #
    def add(self, loc: int, val: float | torch.Tensor) -> None:
        # COURSE FIX 1: the course project had `loc < self.__max_len`, which never updates
        # the root that search() divides by.
        while loc <= self.__max_len:
            self.__array[loc] += val
            loc += loc & (-loc)

    def get_prefix_sum(self, loc: int) -> float | torch.Tensor:
        val: float | torch.Tensor = 0
        while loc != 0:
            val += self.__array[loc]
            loc -= loc & (-loc)
        return val

    def change(self, loc: int, val: float) -> None:
        nowval = self.get_prefix_sum(loc) - self.get_prefix_sum(loc - 1)
        self.add(loc, val - nowval)

    def search(self, rng: np.random.Generator) -> int:
        """One draw: a 1-based position chosen with probability proportional to its value."""
        sub_val = 1 << (self.__bits - 1)
        right = self.__max_len
        # COURSE FIX 2: the course project used copy(self.__array[right]), which shares
        # storage, so the in-place `right_val -= left_val` wrote into the tree.
        right_val = self.__array[right].clone()
        while sub_val != 0:
            left = right - sub_val
            left_val = self.__array[left].clone()
            if rng.random() < left_val / right_val:
                right = left
                right_val = left_val
            else:
                right_val -= left_val
            sub_val //= 2
        return right

    # -- batch helpers for the benchmark ------------------------------------ #
    def sample(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """``batch_size`` independent draws as 0-based item indices (int64)."""
        return np.array([self.search(rng) - 1 for _ in range(batch_size)], dtype=np.int64)

    def update(self, indices: np.ndarray, priorities: np.ndarray) -> None:
        """Set the priorities of 0-based ``indices``, one ``change`` per index."""
        idx_list = np.asarray(indices).reshape(-1).tolist()
        pri_list = np.asarray(priorities, dtype=np.float64).reshape(-1).tolist()
        for i, p in zip(idx_list, pri_list, strict=True):
            self.change(int(i) + 1, float(p))
