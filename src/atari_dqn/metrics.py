"""TensorBoard scalars of a training run, with CleanRL's tag names; the x axis is agent steps.

One :class:`MetricsWriter` per run directory. It writes at most one value per tag and step, and
never a step at or below ``start_step`` or below a step it already wrote for that tag, so a run
resumed from a checkpoint at step ``T`` continues its curves with no gap and no duplicate:
``MetricsWriter(run_dir, start_step=T)`` also asks TensorBoard (``purge_step``) to hide whatever
an earlier process wrote after step ``T`` before it stopped (a kill between a report and the
checkpoint), because the resumed run writes those steps again.

Tags:

* ``charts/episodic_return``  raw full-game score of the training games finished since the
  previous report (their mean when several finished), ``charts/episodic_length`` (agent steps)
* ``charts/SPS``  agent steps per second of training since the previous report; not written for
  a report that includes an evaluation (its time is not training), which restarts the clock
* ``charts/epsilon``, ``losses/td_loss``, ``losses/q_values`` (of the latest update)
* ``eval/episodic_return``  mean raw score of an evaluation
* prioritized replay: ``replay/beta`` and what the replay's ``stats()`` returns
  (``replay/max_priority``)

and the resolved config as a text panel, ``hyperparameters`` (a markdown table, as CleanRL
writes it), at the start of a new run.

A failed write of the event file (disk full, ...) raises :class:`~atari_dqn.artifacts.WriteError`
from the next call, like every other file of the run. TensorBoard writes from a thread of its
own, whose exceptions Python would print as a traceback: this module keeps them (they are
raised in this thread instead) and leaves every other thread's to the previous hook.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atari_dqn.artifacts import WriteError, writing

if TYPE_CHECKING:
    from atari_dqn.loop import Progress

# TensorBoard's writer threads -> the MetricsWriter each belongs to (see the module docstring).
_WATCHED: dict[threading.Thread, MetricsWriter] = {}
_previous_hook: Any = None


def _thread_hook(args: Any) -> None:
    writer = _WATCHED.get(args.thread) if args.thread is not None else None
    if writer is not None and isinstance(args.exc_value, OSError):
        writer.failed = args.exc_value  # raised by the writer's next call, in its own thread
        return
    _previous_hook(args)


def _watch(threads: list[threading.Thread], writer: MetricsWriter) -> None:
    global _previous_hook
    if _previous_hook is None:
        _previous_hook = threading.excepthook
        threading.excepthook = _thread_hook
    for thread in threads:
        _WATCHED[thread] = writer


class MetricsWriter:
    """Scalars into TensorBoard event files in ``log_dir`` (the run directory)."""

    def __init__(
        self,
        log_dir: Path,
        *,
        start_step: int = 0,
        replay_beta: bool = False,
        flush_secs: int = 30,
    ) -> None:
        """``start_step``: the step training continues from (0 for a new run); nothing at or
        below it is written. ``replay_beta``: write ``replay/beta`` (prioritized replay only)."""
        from torch.utils.tensorboard import SummaryWriter

        if start_step < 0:
            raise ValueError(f"start_step must be >= 0, got {start_step}")
        self.log_dir = Path(log_dir)
        self.start_step = start_step
        self.replay_beta = replay_beta
        # On resume, events with step >= start_step + 1 from an earlier process are hidden.
        purge = start_step + 1 if start_step > 0 else None
        before_files = set(self.log_dir.glob("events.out.tfevents.*"))
        before_threads = set(threading.enumerate())
        # (its name is TensorBoard's choice; until it exists, a pattern names it)
        self.path = self.log_dir / f"events.out.tfevents.*.{os.getpid()}.*"
        self.failed: OSError | None = None  # what TensorBoard's writer thread failed with
        with writing(self.path):
            self._writer = SummaryWriter(str(self.log_dir), purge_step=purge, flush_secs=flush_secs)
        new_files = sorted(set(self.log_dir.glob("events.out.tfevents.*")) - before_files)
        if len(new_files) == 1:
            self.path = new_files[0]
        self._threads = [
            t
            for t in threading.enumerate()
            if t not in before_threads and type(t).__module__.startswith("tensorboard")
        ]
        _watch(self._threads, self)
        self._last: dict[str, int] = {}  # tag -> last step written
        self._clock = time.perf_counter()
        self._clock_step = start_step

    def scalars(self, step: int, values: Mapping[str, float | None]) -> None:
        """Write ``values`` at ``step``; skips None, and any tag already written at or after it."""
        for tag, value in values.items():
            if value is None or step <= max(self.start_step, self._last.get(tag, -1)):
                continue
            with self._writing():
                self._writer.add_scalar(tag, float(value), global_step=step)
            self._last[tag] = step

    def write(self, progress: Progress) -> None:
        """Everything one report of the training loop holds."""
        step = progress.step
        now = time.perf_counter()
        values: dict[str, float | None] = {
            "charts/epsilon": progress.epsilon,
            "losses/td_loss": progress.loss,
            "losses/q_values": progress.q_mean,
        }
        if progress.game_returns:
            values["charts/episodic_return"] = _mean(progress.game_returns)
            values["charts/episodic_length"] = _mean(progress.game_lengths)
        if progress.evaluation is None and step > self._clock_step and now > self._clock:
            values["charts/SPS"] = (step - self._clock_step) / (now - self._clock)
        if progress.evaluation is not None:
            values["eval/episodic_return"] = progress.evaluation.mean
        if self.replay_beta:
            values["replay/beta"] = progress.beta
        values.update(progress.replay_stats)
        self.scalars(step, values)
        self._clock, self._clock_step = now, step
        if progress.evaluation is not None:
            self.flush()  # an evaluation is rare and worth seeing at once

    def hyperparameters(self, config: Mapping[str, object]) -> None:
        """The run's settings as TensorBoard's text panel ``hyperparameters``."""
        rows = "\n".join(f"|{key}|{value}|" for key, value in config.items())
        with self._writing():
            self._writer.add_text("hyperparameters", f"|param|value|\n|-|-|\n{rows}", global_step=0)

    def _writing(self) -> Any:
        self._raise_failed()
        return writing(self.path)

    def _raise_failed(self) -> None:
        if self.failed is not None:
            failed, self.failed = self.failed, None
            raise WriteError(self.path, failed)

    def flush(self) -> None:
        with self._writing():
            self._writer.flush()
        self._raise_failed()

    def close(self) -> None:
        """Flush and close; raises WriteError if the last events could not be written."""
        try:
            with writing(self.path):
                self._writer.close()
        finally:
            for thread in self._threads:
                _WATCHED.pop(thread, None)
        self._raise_failed()

    def __enter__(self) -> MetricsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _mean(values: list[float] | list[int]) -> float:
    return math.fsum(values) / len(values)
