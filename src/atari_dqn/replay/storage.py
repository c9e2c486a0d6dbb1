"""Frame-deduplicated replay storage: each 84x84 frame is stored once.

A transition ``(s_t, a_t, R_t, s_{t+k})`` is not stored as stacks of frames. Slot ``i`` of the
ring holds the newest frame of ``s_i``, its action, and (once known) the n-step return that starts
there. The stacks of ``s_i`` and of the bootstrap state are rebuilt by index at sample time:

* ``pos[i]`` counts steps since the episode started (saturating), so the stack of ``s_i`` is the
  frames ``i - min(o, pos[i])`` for ``o = 3, 2, 1, 0``: at an episode start the first frame is
  repeated, exactly as the environment's frame stack does, and no stack mixes two episodes.
* Each episode's final observation gets a slot of its own (no action), so a truncated episode can
  bootstrap from its real last state.
* n-step returns are accumulated as transitions are written (the accumulator in ``nstep.py``);
  ``boot[i] = k`` says the bootstrap state sits ``k`` slots later, and ``terminal[i]`` that the
  return ended in a terminal state, so there is no bootstrap at all.

``ready[i]`` is true exactly when slot ``i`` may be sampled: its return is complete and none of
the frames it needs has been overwritten. Writers get the slots that became ready or stopped
being ready, so a prioritized sampler can keep its priorities in step (zero = never drawn).

The capacity is split into ``num_streams`` equal rings, one per environment, so vectorised envs
each write their own consecutive episodes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from atari_dqn.replay.nstep import NStepAccumulator


@dataclass
class Batch:
    """A sampled minibatch, as numpy arrays. ``discounts`` already hold ``γ^k · (1 - done)``."""

    obs: np.ndarray  # (B, stack, H, W) uint8
    actions: np.ndarray  # (B,) int64
    returns: np.ndarray  # (B,) float32, n-step return R_t
    discounts: np.ndarray  # (B,) float32, γ^k, or 0 when the return ended in a terminal state
    next_obs: np.ndarray  # (B, stack, H, W) uint8, the bootstrap state
    indices: np.ndarray  # (B,) int64, slots, for priority updates
    weights: np.ndarray  # (B,) float32, importance-sampling weights (ones for uniform)


@dataclass(frozen=True)
class Changes:
    """Slots whose sampleability changed during one write."""

    ready: tuple[int, ...] = ()
    unready: tuple[int, ...] = ()


NO_CHANGES = Changes()


class FrameStorage:
    """Ring buffer(s) of single frames with per-slot transition data. See the module docstring."""

    def __init__(
        self,
        capacity: int,
        *,
        frame_shape: tuple[int, int] = (84, 84),
        stack: int = 4,
        n_step: int = 1,
        gamma: float = 0.99,
        num_streams: int = 1,
    ) -> None:
        if num_streams < 1 or capacity % num_streams:
            raise ValueError(f"capacity {capacity} is not a multiple of num_streams {num_streams}")
        self.capacity = capacity
        self.num_streams = num_streams
        self.per_stream = capacity // num_streams
        if self.per_stream < n_step + stack + 2:
            raise ValueError(
                f"capacity per stream {self.per_stream} is too small for n_step={n_step}"
            )
        self.stack = stack
        self.n_step = n_step
        self.gamma = gamma
        self.frames = np.zeros((capacity, *frame_shape), dtype=np.uint8)
        self.actions = np.zeros(capacity, dtype=np.uint8)
        self.returns = np.zeros(capacity, dtype=np.float32)
        self.boot = np.zeros(capacity, dtype=np.uint8)
        self.terminal = np.zeros(capacity, dtype=np.bool_)
        self.pos = np.zeros(capacity, dtype=np.uint8)
        self.ready = np.zeros(capacity, dtype=np.bool_)
        self.num_ready = 0
        # Per-stream write state.
        self.cursor = np.zeros(num_streams, dtype=np.int64)  # next local slot to write
        self.filled = np.zeros(num_streams, dtype=np.int64)  # local slots ever written (<= per)
        self.written = np.zeros(num_streams, dtype=np.int64)  # frames ever written (no wrap)
        self._current = np.full(num_streams, -1, dtype=np.int64)  # global slot of s_t, -1: none
        self._pending = [NStepAccumulator(n_step, gamma) for _ in range(num_streams)]

    # ------------------------------------------------------------------ sizes
    # actions, boot, terminal, pos and ready (uint8 / bool), returns (float32)
    SLOT_BYTES_BESIDES_FRAME = 5 * 1 + 4

    @staticmethod
    def nbytes_for(capacity: int, frame_shape: tuple[int, int] = (84, 84)) -> int:
        """Bytes of the per-slot arrays of a storage of ``capacity`` (before allocating it)."""
        return capacity * (frame_shape[0] * frame_shape[1] + FrameStorage.SLOT_BYTES_BESIDES_FRAME)

    @property
    def nbytes(self) -> int:
        """Bytes of the per-slot arrays, as allocated (what :meth:`nbytes_for` predicts)."""
        arrays = (self.frames, self.actions, self.returns, self.boot, self.terminal, self.pos)
        return sum(a.nbytes for a in arrays) + self.ready.nbytes

    @property
    def bytes_per_transition(self) -> float:
        """Bytes of all per-slot arrays divided by the capacity (measured, not assumed)."""
        arrays = (self.frames, self.actions, self.returns, self.boot, self.terminal, self.pos)
        return (sum(a.nbytes for a in arrays) + self.ready.nbytes) / self.capacity

    def __len__(self) -> int:
        return self.num_ready

    # ------------------------------------------------------------------ writing
    def begin(self, stream: int, frame: np.ndarray) -> Changes:
        """Start a new episode in ``stream`` with its first observation's newest frame."""
        if self._current[stream] >= 0:
            raise RuntimeError("begin() called while an episode is open; append() it to its end")
        unready: list[int] = []
        slot = self._write(stream, frame, 0, unready)
        self._current[stream] = slot
        return Changes((), tuple(unready)) if unready else NO_CHANGES

    def append(
        self,
        stream: int,
        action: int,
        reward: float,
        next_frame: np.ndarray,
        terminated: bool,
        truncated: bool,
    ) -> Changes:
        """Record ``a_t, r_t`` from the current state and the newest frame of ``s_{t+1}``.

        ``terminated``: s_{t+1} is terminal (no bootstrap). ``truncated``: the episode was cut
        (time limit) and returns bootstrap from s_{t+1}. Either one closes the episode.
        """
        slot = int(self._current[stream])  # a Python int: pending n-step slots go into JSON
        if slot < 0:
            raise RuntimeError("append() without begin(): start each episode with begin()")
        self.actions[slot] = action
        unready: list[int] = []
        pos = min(int(self.pos[slot]) + 1, 255)
        next_slot = self._write(stream, next_frame, pos, unready)
        acc = self._pending[stream]
        acc.push(slot, float(reward))
        if terminated or truncated:
            done = acc.flush(terminated)
            self._current[stream] = -1
        else:
            done = acc.pop_complete()
            self._current[stream] = next_slot
        return Changes(self._complete(done), tuple(unready))

    def cut(self, stream: int) -> Changes:
        """Close the open episode of ``stream`` as if a time limit cut it at its current state.

        Its pending transitions get their shorter returns and bootstrap from that state; the
        stream then waits for ``begin()``. Used when an env's episode cannot be continued.
        """
        slot = self._current[stream]
        if slot < 0:
            return NO_CHANGES
        self._current[stream] = -1
        return Changes(self._complete(self._pending[stream].flush(terminated=False)), ())

    def _complete(self, done: list) -> tuple[int, ...]:
        """Record finished n-step returns; those slots become ready."""
        for i, ret, k, term in done:
            self.returns[i] = ret
            self.boot[i] = k
            self.terminal[i] = term
            self.ready[i] = True
        self.num_ready += len(done)
        return tuple(i for i, _, _, _ in done)

    def _write(self, stream: int, frame: np.ndarray, pos: int, unready: list[int]) -> int:
        """Write one frame at the stream's cursor; mark what the overwrite invalidates."""
        base = stream * self.per_stream
        local = int(self.cursor[stream])
        g = base + local
        self._unready(g, unready)
        # Old transitions just ahead whose stacks reach back into this slot lose a frame.
        for m in range(1, self.stack):
            h = base + (local + m) % self.per_stream
            if self.pos[h] >= m:
                self._unready(h, unready)
        self.frames[g] = frame
        self.pos[g] = pos
        self.cursor[stream] = (local + 1) % self.per_stream
        self.filled[stream] = min(self.filled[stream] + 1, self.per_stream)
        self.written[stream] += 1
        return g

    def _unready(self, g: int, out: list[int]) -> None:
        if self.ready[g]:
            self.ready[g] = False
            self.num_ready -= 1
            out.append(g)

    # ------------------------------------------------------------------ state
    # Per-slot data other than the frames: 9 bytes a slot, saved whole with each checkpoint.
    _ARRAYS = ("actions", "returns", "boot", "terminal", "pos", "ready")

    def state(self) -> tuple[dict[str, np.ndarray], dict]:
        """Everything but the frames, as arrays and JSON-able metadata, for :meth:`load_state`.

        The frames (7 KB a slot, the bulk) go separately, by slot range: :meth:`frame_ranges`
        says which slots hold frames (or which were written since a :meth:`frame_mark`),
        :meth:`get_frames` reads them and :meth:`put_frames` restores them."""
        arrays = {name: getattr(self, name) for name in self._ARRAYS}
        arrays |= {
            "cursor": self.cursor,
            "filled": self.filled,
            "written": self.written,
            "current": self._current,
        }
        meta = {
            "capacity": self.capacity,
            "num_streams": self.num_streams,
            "n_step": self.n_step,
            "gamma": self.gamma,
            "frame_shape": list(self.frames.shape[1:]),
            "pending": [acc.state() for acc in self._pending],
        }
        return arrays, meta

    def load_state(self, arrays: dict[str, np.ndarray], meta: dict) -> None:
        """Restore what :meth:`state` saved; the frames follow with :meth:`put_frames` (slots
        outside :meth:`frame_ranges` are never read, and are zero as in a new storage)."""
        mine = {
            "capacity": self.capacity,
            "num_streams": self.num_streams,
            "n_step": self.n_step,
            "gamma": self.gamma,
            "frame_shape": list(self.frames.shape[1:]),
        }
        theirs = {k: meta.get(k) for k in mine}
        if theirs != mine:
            raise ValueError(f"replay state is for {theirs}, not {mine}")
        if self.written.any():  # a used storage: clear it (a new one's pages stay untouched)
            self.frames[...] = 0
        for name in self._ARRAYS:
            getattr(self, name)[...] = arrays[name]
        self.cursor[...] = arrays["cursor"]
        self.filled[...] = arrays["filled"]
        self.written[...] = arrays["written"]
        self._current[...] = arrays["current"]
        for acc, (slots, rewards) in zip(self._pending, meta["pending"], strict=True):
            acc.load(slots, rewards)
        self.num_ready = int(self.ready.sum())

    def frame_mark(self) -> np.ndarray:
        """Frames written so far, per stream: what :meth:`frame_ranges` counts changes from."""
        return self.written.copy()

    def ring_slots(self) -> int:
        """Slots in each stream's ring (stream ``s`` holds global slots ``s * ring ...``)."""
        return self.per_stream

    def frame_ranges(self, since: np.ndarray | None = None) -> list[tuple[int, int]]:
        """Global ``[start, stop)`` slot ranges that hold frames (the filled part of each ring),
        in order; given ``since`` (an earlier :meth:`frame_mark`), only the slots written after
        it. Each stream's newest slots end at its cursor, so they are one range or two (when
        they wrap around the end of the ring)."""
        if since is not None:
            since = np.asarray(since, dtype=np.int64)
            if since.shape != self.written.shape or (since > self.written).any():
                raise ValueError("frame mark is not an earlier mark of this replay")
        out: list[tuple[int, int]] = []
        per = self.per_stream
        for s in range(self.num_streams):
            base, filled, cursor = s * per, int(self.filled[s]), int(self.cursor[s])
            n = filled if since is None else min(filled, int(self.written[s] - since[s]))
            if n == 0:
                continue
            if n == filled < per:  # not yet wrapped: the filled part starts at 0
                pieces = [(0, filled)]
            elif n == per:
                pieces = [(0, per)]
            else:  # the n slots before the cursor, maybe across the end of the ring
                start = (cursor - n) % per
                pieces = [(start, start + n)] if start < cursor else [(start, per), (0, cursor)]
            for a, b in sorted(pieces):
                if b > a:
                    if out and out[-1][1] == base + a:  # adjacent (to the previous stream's)
                        out[-1] = (out[-1][0], base + b)
                    else:
                        out.append((base + a, base + b))
        return out

    def get_frames(self, start: int, stop: int) -> np.ndarray:
        """The frames of slots ``[start, stop)`` (a view: copy it to keep it)."""
        return self.frames[start:stop]

    def put_frames(self, start: int, frames: np.ndarray) -> None:
        """Restore the frames of slots ``start ...`` (after :meth:`load_state`)."""
        stop = start + len(frames)
        if not 0 <= start <= stop <= self.capacity or frames.shape[1:] != self.frames.shape[1:]:
            raise ValueError(
                f"frames {frames.shape} at slot {start} do not fit a replay of {self.frames.shape}"
            )
        self.frames[start:stop] = frames

    # ------------------------------------------------------------------ reading
    def _stack_slots(self, idx: np.ndarray) -> np.ndarray:
        """(B, stack) global slots of the frame stacks whose newest frames are at ``idx``."""
        per = self.per_stream
        base = (idx // per) * per
        local = idx - base
        offsets = np.arange(self.stack - 1, -1, -1, dtype=np.int64)  # 3, 2, 1, 0
        back = np.minimum(offsets[None, :], self.pos[idx].astype(np.int64)[:, None])
        return base[:, None] + (local[:, None] - back) % per

    def next_slots(self, idx: np.ndarray) -> np.ndarray:
        """Global slot of the bootstrap state of each transition."""
        per = self.per_stream
        base = (idx // per) * per
        return base + (idx - base + self.boot[idx].astype(np.int64)) % per

    def stacks(self, idx: np.ndarray) -> np.ndarray:
        """(B, stack, H, W) uint8 frame stacks whose newest frames sit at ``idx``."""
        return self.frames[self._stack_slots(idx)]

    def gather(self, idx: np.ndarray, weights: np.ndarray | None = None) -> Batch:
        """Assemble the batch of transitions starting at slots ``idx`` (all must be ready)."""
        idx = np.asarray(idx, dtype=np.int64)
        k = self.boot[idx]
        discounts = np.where(self.terminal[idx], 0.0, self.gamma ** k.astype(np.float64))
        if weights is None:
            weights = np.ones(len(idx), dtype=np.float32)
        return Batch(
            obs=self.stacks(idx),
            actions=self.actions[idx].astype(np.int64),
            returns=self.returns[idx].copy(),
            discounts=discounts.astype(np.float32),
            next_obs=self.stacks(self.next_slots(idx)),
            indices=idx,
            weights=weights.astype(np.float32, copy=False),
        )


class StoredFrames:
    """The frames of a replay's FrameStorage by slot range, for checkpoints: the part of the
    Replay protocol that both replays hand to their storage unchanged."""

    storage: FrameStorage

    def frame_mark(self) -> np.ndarray:
        return self.storage.frame_mark()

    def ring_slots(self) -> int:
        return self.storage.ring_slots()

    def frame_ranges(self, since: np.ndarray | None = None) -> list[tuple[int, int]]:
        return self.storage.frame_ranges(since)

    def get_frames(self, start: int, stop: int) -> np.ndarray:
        return self.storage.get_frames(start, stop)

    def put_frames(self, start: int, frames: np.ndarray) -> None:
        self.storage.put_frames(start, frames)
