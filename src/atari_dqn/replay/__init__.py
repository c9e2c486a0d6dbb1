"""Replay memories (numpy only): frame-deduplicated storage, uniform and prioritized sampling."""

from atari_dqn.replay.storage import Batch, FrameStorage
from atari_dqn.replay.sum_tree import SumTree
from atari_dqn.replay.uniform import UniformReplay

__all__ = ["Batch", "FrameStorage", "SumTree", "UniformReplay"]
