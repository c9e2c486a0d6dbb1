"""The stage-2 table's row of each run: steps (and minutes at one rate) to training scores 10,
20 and 30, the training window at 200k / 250k / 300k and the evaluations there.

Every figure comes from `atari-dqn plot`'s own reading of a run (atari_dqn.plot): a training
score is the mean of the games that ended in the 25k agent steps up to a step, as `--metric
train --threshold` takes it. Run it with atari-dqn installed.

With --medians, one row per configuration instead (runs named CONFIG-sN, seeds pooled): the
median over its seeds of each figure, a seed that never reached a score counting as past every
seed that did (so a median exists when most seeds reached it), and how many seeds reached it.

Usage: python3 windows.py RUN_DIR [RUN_DIR ...] [--rate STEPS_PER_SECOND] [--medians]
"""

import dataclasses
import math
import re
import sys
from pathlib import Path

import numpy as np

from atari_dqn.plot.curves import View
from atari_dqn.plot.runs import load_run

ENDS = (200_000, 250_000, 300_000)
TARGETS = (10, 20, 30)


def figures(path: str, rate: float) -> tuple[list[float], list[float], list[float]]:
    """Steps to each target (inf: not reached), then windows and evaluations at ENDS (nan: none)."""
    train, evaluation = View(metric="train"), View(metric="eval")
    run = dataclasses.replace(load_run(Path(path), games="required"), rate=rate)
    reach = []
    for target in TARGETS:
        reached = train.first_reach(run, target)
        reach.append(float(reached[0]) if reached else math.inf)
    at_ends = []
    for view in (train, evaluation):
        steps, values = view.values(run)
        at = dict(zip(view.aligned(run, steps).tolist(), values.tolist(), strict=True))
        at_ends.append([at.get(end, np.nan) for end in ENDS])
    return reach, at_ends[0], at_ends[1]


def steps_cell(steps: float, rate: float) -> str:
    return "-" if math.isinf(steps) else f"{steps:,.0f} / {steps / rate / 60:.1f}"


def main(argv: list[str]) -> None:
    rate = 98.7  # plain's quiet host-B rate, bench-train-2.txt
    if "--rate" in argv:
        i = argv.index("--rate")
        rate = float(argv[i + 1])
        del argv[i : i + 2]
    medians = "--medians" in argv
    argv = [a for a in argv if a != "--medians"]
    if not medians:
        for path in argv:
            reach, windows, evals = figures(path, rate)
            cells = [path, *(steps_cell(s, rate) for s in reach)]
            cells += [" / ".join(f"{v:.1f}" for v in vs) for vs in (windows, evals)]
            print("| " + " | ".join(cells) + " |")
        return
    groups: dict[str, list[str]] = {}
    for path in argv:
        groups.setdefault(re.sub(r"-s\d+$", "", Path(path).name), []).append(path)
    for name, paths in groups.items():
        rows = [figures(p, rate) for p in paths]
        cells = [f"{name} ({len(paths)} seeds)"]
        for k in range(len(TARGETS)):
            steps = [r[0][k] for r in rows]
            reached = sum(not math.isinf(s) for s in steps)
            cells.append(f"{steps_cell(float(np.median(steps)), rate)} ({reached}/{len(steps)})")
        for part in (1, 2):
            cells.append(
                " / ".join(f"{np.nanmedian([r[part][e] for r in rows]):.1f}" for e in range(3))
            )
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
