"""``atari-dqn bench ...``: every benchmark's parser, registered in this one place."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from atari_dqn.cli.common import Parser
from atari_dqn.config import PRESETS, UsageError, preset_config


def add_bench_parser(sub: Any) -> None:
    """``bench replay`` and ``bench train``: measured in bench.py, side by side with baselines."""
    bench = sub.add_parser(
        "bench",
        help="throughput and memory benchmarks, side by side with their baselines",
        description="Benchmarks: medians of repeated perf_counter timings after a warm-up, "
        "reported next to a baseline measured in the same run.",
    )
    what = bench.add_subparsers(dest="bench", metavar="WHAT", parser_class=Parser, required=True)
    br = what.add_parser(
        "replay",
        help="µs per add / sample / priority update, bytes per transition, vs the seed's Fenwick",
        description="Uniform and prioritized replay at capacities 100,000 and --capacity, filled "
        "with synthetic episodes: µs per add, sample and priority update, bytes per stored "
        "transition; and the seed's Fenwick sampler on sample + update of one batch.",
    )
    br.add_argument("--capacity", type=int, default=1_000_000, metavar="N",
                    help="the larger capacity, in transitions [default: 1000000]")  # fmt: skip
    br.add_argument("--batch", type=int, default=32, metavar="N",
                    help="batch size of sample and update [default: 32]")  # fmt: skip
    br.add_argument("--reps", type=int, default=15, metavar="N",
                    help="timed repetitions per figure (median shown) [default: 15]")  # fmt: skip
    br.add_argument("--json", action="store_true", help="print one JSON object instead")
    br.set_defaults(handler=cmd_bench_replay)
    bt = what.add_parser(
        "train",
        help="env steps/s while learning, per replay kind, in one process",
        description="Build a training run per row (the preset with evaluation pushed past the "
        "end), play --warmup steps, let learning run 100 steps, then time --steps learning "
        "steps. Prints env steps/s per row and the ratio to the first row.",
    )
    bt.add_argument("--replay", default="uniform,prioritized", metavar="KIND[,KIND]",
                    help="replay kinds, one row each; 'preset' keeps each preset's own "
                    "[default: uniform,prioritized]")  # fmt: skip
    bt.add_argument("--steps", type=int, default=3000, metavar="N",
                    help="agent steps timed per run, all learning [default: 3000]")  # fmt: skip
    bt.add_argument("--warmup", type=int, default=1000, metavar="N",
                    help="agent steps of random play before learning [default: 1000]")  # fmt: skip
    bt.add_argument("--repeats", type=int, default=1, metavar="N",
                    help="runs per row, interleaved; the median is shown [default: 1]")  # fmt: skip
    bt.add_argument("--preset", default="seed", metavar="P[,P]",
                    help="presets, one row each: " + ", ".join(PRESETS)
                    + " [default: seed]")  # fmt: skip
    bt.add_argument("--num-envs", default="1", metavar="N[,N]",
                    help="training env counts, one row each [default: 1]")  # fmt: skip
    bt.add_argument("--seed-loop", action="store_true",
                    help="first row: the seed's one-file loop, the ratios' baseline")  # fmt: skip
    bt.add_argument("--bf16", action="store_true",
                    help="each atari-dqn row also with --bf16 (changes results)")  # fmt: skip
    bt.add_argument("--ceilings", action="store_true",
                    help="also measure random-play env steps/s and one update alone")  # fmt: skip
    bt.add_argument("--buffer-size", type=int, default=None, metavar="N",
                    help="replay capacity [default: the preset's]")  # fmt: skip
    bt.add_argument("--device", default="cpu", help="torch device [default: cpu]")
    bt.add_argument("--threads", type=int, default=None, metavar="N",
                    help="torch CPU threads [default: torch's choice]")  # fmt: skip
    bt.add_argument("--json", action="store_true", help="print one JSON object instead")
    bt.set_defaults(handler=cmd_bench_train)
    bm = what.add_parser(
        "memory",
        help="a soak: RSS over time once the replay is full (must stay flat)",
        description="Train with evaluation off and record the process's RSS at ten points "
        "after the replay is full; prints the growth. A soak, not a test.",
    )
    bm.add_argument("--steps", type=int, default=200_000, metavar="N",
                    help="agent steps in all [default: 200000]")  # fmt: skip
    bm.add_argument("--buffer-size", type=int, default=100_000, metavar="N",
                    help="replay capacity [default: 100000]")  # fmt: skip
    bm.add_argument("--preset", default="seed", choices=list(PRESETS),
                    help="settings of the run [default: seed]")  # fmt: skip
    bm.add_argument("--device", default="cpu", help="torch device [default: cpu]")
    bm.add_argument("--json", action="store_true", help="print one JSON object instead")
    bm.set_defaults(handler=cmd_bench_memory)
    _add_bench_actors_parser(what)
    from atari_dqn.envbench import add_envs_parser
    from atari_dqn.updatebench import add_update_parser

    add_envs_parser(what)
    add_update_parser(what)


def _add_bench_actors_parser(what: Any) -> None:
    ba = what.add_parser(
        "actors",
        help="env steps/s that 1, 2, 4, ... Ape-X actors collect into the replay",
        description="Start N actors (one env, a CPU policy copy, one CPU each) and a replay "
        "server, no learner; time --steps agent steps from the actors into the replay (initial "
        "priorities computed) for N = 1, 2, 4, ... up to --max-actors.",
    )
    ba.add_argument("--max-actors", type=int, default=4, metavar="N",
                    help="largest actor count [default: 4]")  # fmt: skip
    ba.add_argument("--steps", type=int, default=3000, metavar="N",
                    help="agent steps timed per actor count [default: 3000]")  # fmt: skip
    ba.add_argument("--block", type=int, default=50, metavar="N",
                    help="steps per block [default: 50]")  # fmt: skip
    ba.add_argument("--preset", default="seed", choices=list(PRESETS),
                    help="game and network settings [default: seed]")  # fmt: skip
    ba.add_argument("--replay", default="prioritized", choices=("uniform", "prioritized"),
                    help="replay kind (prioritized: actors compute priorities) "
                    "[default: prioritized]")  # fmt: skip
    ba.add_argument("--buffer-size", type=int, default=100_000, metavar="N",
                    help="replay capacity [default: 100000]")  # fmt: skip
    ba.add_argument("--ray-address", default=None, metavar="ADDR",
                    help="join this Ray cluster [default: start a local Ray]")  # fmt: skip
    ba.add_argument("--json", action="store_true", help="print one JSON object instead")
    ba.set_defaults(handler=cmd_bench_actors)


def cmd_bench_actors(args: argparse.Namespace) -> int:
    import functools

    for name in ("max_actors", "steps", "block", "buffer_size"):
        if getattr(args, name) <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be positive")
    config = preset_config(args.preset).replace(
        replay=args.replay, buffer_size=args.buffer_size, device="cpu"
    )
    config.validate()
    actions, _ = check_training_input(config)
    _need_ray("bench actors")
    from atari_dqn.distributed.bench import actor_counts, actors_benchmark, print_result

    result = actors_benchmark(
        config,
        actions,
        counts=actor_counts(args.max_actors),
        steps=args.steps,
        block=args.block,
        make_replay=functools.partial(build_replay, config, np.random.default_rng(config.seed)),
        address=args.ray_address,
    )
    print_result(result, args.json)
    return 0


# ---------------------------------------------------------------------- bench
def cmd_bench_replay(args: argparse.Namespace) -> int:
    from atari_dqn.bench import cmd_replay

    return cmd_replay(args)


def cmd_bench_memory(args: argparse.Namespace) -> int:
    from atari_dqn.bench import cmd_memory

    return cmd_memory(args, build=build_training)


def cmd_bench_train(args: argparse.Namespace) -> int:
    from atari_dqn.bench import cmd_train

    return cmd_train(args, build=build_training)  # bench times runs; the CLI builds them


