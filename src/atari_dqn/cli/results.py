"""``atari-dqn presets``, ``plot`` and ``sweep``: listing settings and reading results."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from atari_dqn.cli.common import need_ray
from atari_dqn.config import PRESET_ALIASES, PRESETS


def add_results_parsers(sub: Any) -> None:
    pr = sub.add_parser("presets", help="list the presets and what each sets")
    pr.set_defaults(handler=cmd_presets)

    pl = sub.add_parser(
        "plot",
        help="learning curves of runs (mean over seeds, 95%% stratified bootstrap CI, by "
        "rliable) and a table",
        description="Plot the evaluation scores (rewards.txt) or the training-game scores "
        "(games.csv) of run directories against agent steps or training minutes. Runs whose "
        "config.toml agree except for the seed and the run length are one group, drawn as the "
        "mean over its runs with a 95% confidence band (rliable's stratified bootstrap over the "
        "runs). Prints a table per group (runs, final score mean ± std, best, IQM of the final "
        "scores, each group's probability of improvement over the first and its final mean "
        "minus the first group's with a 95% bootstrap interval, and with --threshold the "
        "steps and minutes each run took to reach a score) and writes it as CSV next to the "
        "PNG. Runs still training are fine.",
    )
    pl.add_argument("runs", type=Path, nargs="+", metavar="RUN_DIR")
    pl.add_argument(
        "-o", "--out", type=Path, default=Path("curves.png"), metavar="FILE.png",
        help="output image; the table goes to the same name with .csv [default: curves.png]",
    )  # fmt: skip
    pl.add_argument(
        "--label-by", action="append", default=[], metavar="KEY[,KEY]",
        help="config keys that name each group, e.g. replay or preset [default: the keys "
        "whose values differ between groups]",
    )  # fmt: skip
    pl.add_argument(
        "--metric", choices=("eval", "train"), default="eval",
        help="eval: each evaluation (rewards.txt); train: the mean score of the training games "
        "(games.csv) that ended in each --window of agent steps [default: eval]",
    )  # fmt: skip
    pl.add_argument(
        "--x", choices=("steps", "minutes"), default="steps", dest="x_axis",
        help="x axis: agent steps, or training wall minutes (evaluations excluded) from "
        "games.csv's clock, groups averaged on a common grid of minutes [default: steps]",
    )  # fmt: skip
    pl.add_argument(
        "--window", type=int, default=25_000, metavar="STEPS",
        help="agent steps per window of --metric train, and of its --threshold trailing mean "
        "[default: 25000]",
    )  # fmt: skip
    pl.add_argument(
        "--threshold", action="append", default=[], metavar="T[,T]",
        help="add to the table the agent steps and minutes at which each run first reaches "
        "score T (median [min-max] over a group's runs, and how many reached it); with "
        "--metric train, the mean of the games in the last --window steps",
    )  # fmt: skip
    pl.add_argument(
        "--steps-per-second", action="append", default=[], metavar="[LABEL=]R",
        help="tell minutes (--x minutes, the table) as agent steps / R instead of the runs' "
        "games.csv clocks, e.g. a rate `atari-dqn bench train` measured on a quiet machine for "
        "runs that shared theirs; LABEL=R for the group of that label (repeatable)",
    )  # fmt: skip
    pl.add_argument(
        "--until", type=int, default=None, metavar="STEPS",
        help="read each run as it stood at agent step STEPS (its evaluations and training "
        "games up to it), to compare runs of different lengths at one horizon "
        "[default: all of each run]",
    )  # fmt: skip
    pl.add_argument(
        "--size", default="1000x600", metavar="WxH", help="image size in pixels [default: 1000x600]"
    )
    pl.add_argument("--force", action="store_true", help="replace an existing image and CSV")
    pl.set_defaults(handler=cmd_plot)
    _add_sweep_parser(sub)


def cmd_presets(args: argparse.Namespace) -> int:
    del args
    old_names = {new: old for old, new in PRESET_ALIASES.items()}
    for name, preset in PRESETS.items():
        also = f" (Its old name {old_names[name]} is still accepted.)" if name in old_names else ""
        print(f"{name}: {preset.summary}{also}")
        for key, value in preset.changes.items():
            flag = key.replace("_", "-")
            if isinstance(value, bool):
                text = f"    --{flag}" if value else f"    --no-{flag}"
            else:
                text = f"    --{flag} {value}"
            source = preset.sources.get(key)
            print(f"{text:<32}# {source}" if source else text)
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from atari_dqn.plot import parse_rates, parse_size, parse_thresholds, plot_runs

    label_by = [k.strip().replace("-", "_") for v in args.label_by for k in v.split(",") if k]
    _, table, skipped = plot_runs(
        args.runs,
        args.out,
        label_by=label_by,
        size=parse_size(args.size),
        force=args.force,
        metric=args.metric,
        x=args.x_axis,
        window=args.window,
        thresholds=parse_thresholds(args.threshold),
        rates=parse_rates(args.steps_per_second),
        until=args.until,
    )
    for path, why in skipped:
        print(f"skipped {path}: {why}", file=sys.stderr)
    print(table)
    print(f"wrote {args.out} and {args.out.with_suffix('.csv')}")
    return 0


def _add_sweep_parser(sub: Any) -> None:
    sw = sub.add_parser(
        "sweep",
        help="a Ray Tune sweep over train settings (grid, random, seeds); ranked table, plot",
        description="Run the trials of a sweep spec (TOML: [train] settings of every trial, "
        "[grid] lists, [random] distributions, num_samples, seeds, [resources] cpu/gpu per "
        "trial) on Ray Tune, each an ordinary `atari-dqn train` run with its own run directory "
        "in the sweep directory. Prints the trials ranked by final evaluation and the plot's "
        "table of the runs grouped by configuration. Run it again to resume: complete trials "
        "are skipped, interrupted ones resumed.",
    )
    sw.add_argument("spec", type=Path, metavar="SPEC.toml")
    sw.add_argument("--out", type=Path, metavar="DIR",
                    help="sweep directory [default: the spec's `out`, else "
                    "sweeps/<spec name>]")  # fmt: skip
    sw.add_argument("--ray-address", default=None, metavar="ADDR",
                    help="join this Ray cluster [default: start a local Ray]")  # fmt: skip
    sw.set_defaults(handler=cmd_sweep)


def cmd_sweep(args: argparse.Namespace) -> int:
    from atari_dqn.distributed.sweep_spec import load_spec

    spec = load_spec(args.spec)
    out = args.out if args.out is not None else spec.default_out()
    need_ray("sweep", args.ray_address)
    from atari_dqn.distributed.sweep import run_sweep

    return run_sweep(spec, out, address=args.ray_address)
