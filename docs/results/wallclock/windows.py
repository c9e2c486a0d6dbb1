"""The stage-2 table's row of each run: steps (and minutes at one rate) to training scores 10,
20 and 30, the training window at 200k / 250k / 300k and the evaluations there.

A run's training score at a step is the mean of its games (games.csv) that ended in the 25k
agent steps up to it, as `atari-dqn plot --metric train --threshold` computes it.
Usage: python3 windows.py RUN_DIR [RUN_DIR ...] [--rate STEPS_PER_SECOND]
"""

import csv
import sys

WINDOW = 25_000


def main(argv: list[str]) -> None:
    rate = 98.7  # plain's quiet host-B rate, bench-train-2.txt
    if "--rate" in argv:
        i = argv.index("--rate")
        rate = float(argv[i + 1])
        del argv[i : i + 2]
    for run in argv:
        games = [(int(g["step"]), float(g["score"])) for g in csv.DictReader(open(f"{run}/games.csv"))]
        evals = {}
        for line in open(f"{run}/rewards.txt"):
            _, step, score = line.split()
            evals[int(step) // 1000 * 1000] = float(score)

        def window(end: int) -> float:
            scores = [v for s, v in games if end - WINDOW < s <= end]
            return sum(scores) / len(scores) if scores else float("nan")

        cells = [run]
        for target in (10, 20, 30):
            step = next((s for s, _ in games if s >= WINDOW and window(s) >= target), None)
            cells.append(f"{step:,} / {step / rate / 60:.1f}" if step else "-")
        ends = (200_000, 250_000, 300_000)
        cells.append(" / ".join(f"{window(e):.1f}" for e in ends))
        cells.append(" / ".join(f"{evals.get(e, float('nan')):.1f}" for e in ends))
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
