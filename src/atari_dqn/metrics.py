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
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from atari_dqn.loop import Progress


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
        self._writer = SummaryWriter(str(self.log_dir), purge_step=purge, flush_secs=flush_secs)
        self._last: dict[str, int] = {}  # tag -> last step written
        self._clock = time.perf_counter()
        self._clock_step = start_step

    def scalars(self, step: int, values: Mapping[str, float | None]) -> None:
        """Write ``values`` at ``step``; skips None, and any tag already written at or after it."""
        for tag, value in values.items():
            if value is None or step <= max(self.start_step, self._last.get(tag, -1)):
                continue
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
        self._writer.add_text("hyperparameters", f"|param|value|\n|-|-|\n{rows}", global_step=0)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> MetricsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _mean(values: list[float] | list[int]) -> float:
    return math.fsum(values) / len(values)
