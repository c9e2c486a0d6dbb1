"""The stage-2 table's row of each run: steps (and minutes at one rate) to training scores 10,
20 and 30, the training window at 200k / 250k / 300k and the evaluations there.

Every figure comes from `atari-dqn plot`'s own reading of a run (atari_dqn.plot): a training
score is the mean of the games that ended in the 25k agent steps up to a step, as `--metric
train --threshold` takes it. Run it with atari-dqn installed.
Usage: python3 windows.py RUN_DIR [RUN_DIR ...] [--rate STEPS_PER_SECOND]
"""

import dataclasses
import sys
from pathlib import Path

import numpy as np

from atari_dqn.plot.curves import View
from atari_dqn.plot.runs import load_run

ENDS = (200_000, 250_000, 300_000)


def main(argv: list[str]) -> None:
    rate = 98.7  # plain's quiet host-B rate, bench-train-2.txt
    if "--rate" in argv:
        i = argv.index("--rate")
        rate = float(argv[i + 1])
        del argv[i : i + 2]
    train, evaluation = View(metric="train"), View(metric="eval")
    for path in argv:
        run = dataclasses.replace(load_run(Path(path), games="required"), rate=rate)
        cells = [path]
        for target in (10, 20, 30):
            reached = train.first_reach(run, target)
            cells.append(f"{reached[0]:,} / {reached[1]:.1f}" if reached else "-")
        for view in (train, evaluation):
            steps, values = view.values(run)
            at = dict(zip(view.aligned(run, steps).tolist(), values.tolist(), strict=True))
            cells.append(" / ".join(f"{at.get(end, np.nan):.1f}" for end in ENDS))
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
