"""``atari-dqn bench ...``: every benchmark's parser and handler, in this one place.

A handler checks its flags (bad input: a one-line UsageError, exit 2), calls its benchmark in
:mod:`atari_dqn.bench` and prints the table or the JSON. A bench module is imported only when
its command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atari_dqn.bench.envs import DEFAULT_ENV  # numpy only: no torch to parse
from atari_dqn.cli.common import Parser, need_ray
from atari_dqn.config import (
    PRESETS,
    Config,
    ConfigError,
    UsageError,
    canonical_preset,
    load_toml,
    preset_config,
)

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[Parser]


def add_bench_parser(sub: argparse._SubParsersAction[Any]) -> None:
    """``atari-dqn bench WHAT``: one sub-command per module of :mod:`atari_dqn.bench`."""
    bench = sub.add_parser(
        "bench",
        help="throughput and memory benchmarks, side by side with their baselines",
        description="Benchmarks: medians of repeated perf_counter timings after a warm-up, "
        "reported next to a baseline measured in the same run.",
    )
    what = bench.add_subparsers(dest="bench", metavar="WHAT", parser_class=Parser, required=True)
    if isinstance(bench, Parser):
        bench.commands = what.choices
    br = what.add_parser(
        "replay",
        help="µs per add / sample / priority update, bytes per transition, vs the course "
        "project's Fenwick",
        description="Uniform and prioritized replay at capacities 100,000 and --capacity, filled "
        "with synthetic episodes: µs per add, sample and priority update, bytes per stored "
        "transition; and the course project's Fenwick sampler on sample + update of one batch.",
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
    bt.add_argument("--preset", default=None, metavar="P[,P]",
                    help="presets, one row each: " + ", ".join(PRESETS)
                    + " [default: course, or none beside --run]")  # fmt: skip
    bt.add_argument("--run", default=None, metavar="DIR[,DIR]",
                    help="runs to measure as configured (each run directory's config.toml, or "
                    "a config file), one row each after the presets', named by directory (another "
                    "config file: by its stem); --num-envs preset keeps each run's own"
                    )  # fmt: skip
    bt.add_argument("--algo", default=None, metavar="A[,A]",
                    help="algorithms side by side: dqn (the --preset rows) and pqn (the pqn "
                    "preset's row, one per --num-envs) [default: the presets' own]")  # fmt: skip
    bt.add_argument("--num-envs", default="1", metavar="N[,N]",
                    help="training env counts, one row each; 'preset' for each preset's own "
                    "[default: 1]")  # fmt: skip
    bt.add_argument("--course-loop", action="store_true",
                    help="first row: the course project's one-file loop, the ratios' "
                    "baseline")  # fmt: skip
    bt.add_argument("--seed-loop", action="store_true", dest="course_loop",
                    help=argparse.SUPPRESS)  # the old name of --course-loop  # fmt: skip
    bt.add_argument("--bf16", action="store_true",
                    help="each atari-dqn row in float32 and with --bf16 (changes results); "
                    "without it, each row as it trains (--bf16 auto chosen on this host)"
                    )  # fmt: skip
    bt.add_argument("--ceilings", action="store_true",
                    help="also measure random-play env steps/s and one update alone")  # fmt: skip
    bt.add_argument("--buffer-size", type=int, default=None, metavar="N",
                    help="replay capacity [default: the preset's]")  # fmt: skip
    bt.add_argument("--device", default="cpu", help="torch device [default: cpu]")
    bt.add_argument("--threads", default=None, metavar="N[,N]",
                    help="torch CPU threads, one row each (the seed loop and ceilings use the "
                    "first) [default: torch's choice]")  # fmt: skip
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
    bm.add_argument("--preset", default="course", type=canonical_preset, choices=list(PRESETS),
                    help="settings of the run [default: course]")  # fmt: skip
    bm.add_argument("--device", default="cpu", help="torch device [default: cpu]")
    bm.add_argument("--json", action="store_true", help="print one JSON object instead")
    bm.set_defaults(handler=cmd_bench_memory)
    _add_checkpoint_parser(what)
    _add_actors_parser(what)
    _add_envs_parser(what)
    _add_update_parser(what)


def _add_checkpoint_parser(what: Subparsers) -> None:
    bc = what.add_parser(
        "checkpoint",
        help="bytes and seconds per checkpoint: replay chunks vs the whole array (the old layout)",
        description="Fill a replay of --capacity 84x84 frames to 10%, 50% and 100%, then "
        "--more steps further; at each point save a checkpoint as chunk files (only the filled "
        "ones; after --more steps only those written since) and, as the baseline, as the old "
        "whole-array file; prints bytes, seconds and old/new ratios. Writes into a temporary "
        "directory under --dir, deleted at the end (needs twice the replay's size free).",
    )
    bc.add_argument("--capacity", type=int, default=1_000_000, metavar="N",
                    help="replay capacity, in slots [default: 1000000]")  # fmt: skip
    bc.add_argument("--more", type=int, default=100_000, metavar="N",
                    help="steps between the last two saves [default: 100000]")  # fmt: skip
    bc.add_argument("--chunk", type=int, default=16_384, metavar="N",
                    help="slots per chunk file, at most (--checkpoint-chunk) "
                    "[default: 16384]")  # fmt: skip
    bc.add_argument("--envs", type=int, default=1, metavar="N",
                    help="env rings the replay is split into, agent steps going to each "
                    "in turn, as in training with --num-envs N [default: 1]")  # fmt: skip
    bc.add_argument("--replay", default="uniform", choices=("uniform", "prioritized"),
                    help="replay kind [default: uniform]")  # fmt: skip
    bc.add_argument("--dir", type=Path, default=None, metavar="DIR",
                    help="where to write [default: the system's temporary directory]")  # fmt: skip
    bc.add_argument("--json", action="store_true", help="print one JSON object instead")
    bc.set_defaults(handler=cmd_bench_checkpoint)


def _add_actors_parser(what: Subparsers) -> None:
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
    ba.add_argument("--preset", default="course", type=canonical_preset, choices=list(PRESETS),
                    help="game and network settings [default: course]")  # fmt: skip
    ba.add_argument("--replay", default="prioritized", choices=("uniform", "prioritized"),
                    help="replay kind (prioritized: actors compute priorities) "
                    "[default: prioritized]")  # fmt: skip
    ba.add_argument("--buffer-size", type=int, default=100_000, metavar="N",
                    help="replay capacity [default: 100000]")  # fmt: skip
    ba.add_argument("--ray-address", default=None, metavar="ADDR",
                    help="join this Ray cluster [default: start a local Ray]")  # fmt: skip
    ba.add_argument("--json", action="store_true", help="print one JSON object instead")
    ba.set_defaults(handler=cmd_bench_actors)


def _add_envs_parser(what: Subparsers) -> None:
    be = what.add_parser(
        "envs",
        help="random-play env steps/s of ale-py's AtariVectorEnv vs EnvPool, per N",
        description="Build both vectorised envs with the training loop's settings (84x84 "
        "gray, frame skip 4, 30 no-ops, FIRE reset, full games), drive them with send/recv and "
        "random actions, and time --steps env steps per backend and N, interleaved; prints the "
        "median steps/s and envpool/ale. --check also compares their frames.",
    )
    be.add_argument("--env", default=DEFAULT_ENV, metavar="ID",
                    help=f"game id [default: {DEFAULT_ENV}]")  # fmt: skip
    be.add_argument("--num-envs", default="1,8,16", metavar="N[,N]",
                    help="env counts, one row each per backend [default: 1,8,16]")  # fmt: skip
    be.add_argument("--steps", type=int, default=4000, metavar="N",
                    help="env steps timed per backend, N and repeat [default: 4000]")  # fmt: skip
    be.add_argument("--repeats", type=int, default=3, metavar="N",
                    help="interleaved repeats, the median shown [default: 3]")  # fmt: skip
    be.add_argument("--backends", default="ale,envpool", metavar="B[,B]",
                    help="backends: ale, envpool [default: ale,envpool]")  # fmt: skip
    be.add_argument("--threads", type=int, default=None, metavar="N",
                    help="worker threads of both pools [default: min(N, CPUs)]")  # fmt: skip
    be.add_argument("--seed", type=int, default=0, help="env and action seed [default: 0]")
    be.add_argument("--check", action="store_true",
                    help="also step both with one action sequence and compare frames")  # fmt: skip
    be.add_argument("--json", action="store_true", help="print one JSON object instead")
    be.set_defaults(handler=cmd_bench_envs)


def _add_update_parser(what: Subparsers) -> None:
    bu = what.add_parser(
        "update",
        help="ms of one gradient update alone, per variant (fused Adam, channels-last, bf16, "
        "compile) and thread count",
        description="Time one update on a fixed batch for each variant and torch thread count, "
        "side by side; report the speed-up over the plain path and how far each variant's "
        "first loss and TD errors are from the plain path's.",
    )
    bu.add_argument("--preset", default=None, help="settings of the update [default: course]")
    bu.add_argument(
        "--threads",
        default=None,
        metavar="N[,N]",
        help="torch CPU thread counts, one block each [default: torch's choice]",
    )
    bu.add_argument("--batch", type=int, default=32, metavar="N", help="batch size [default: 32]")
    bu.add_argument(
        "--rounds",
        type=int,
        default=7,
        metavar="N",
        help="rounds of timing, the median shown [default: 7]",
    )
    bu.add_argument(
        "--inner",
        type=int,
        default=5,
        metavar="N",
        help="updates per variant per round [default: 5]",
    )
    bu.add_argument(
        "--compile",
        action="store_true",
        help="also a torch.compile variant (compiling takes a minute or more)",
    )
    bu.add_argument(
        "--parts",
        action="store_true",
        help="time Rainbow's parts instead of the kernel variants: DQN (preset nature), "
        "+ distributional, + noisy, + both, rainbow-lite and rainbow, each against DQN",
    )
    bu.add_argument("--device", default="cpu", help="torch device [default: cpu]")
    bu.add_argument("--json", action="store_true", help="print one JSON object instead")
    bu.set_defaults(handler=cmd_bench_update)


# ---------------------------------------------------------------------- handlers
def cmd_bench_replay(args: argparse.Namespace) -> int:
    from atari_dqn.bench.replay import replay_benchmark, replay_table
    from atari_dqn.bench.timing import check_positive, print_result

    check_positive(capacity=args.capacity, batch=args.batch, reps=args.reps)
    result = replay_benchmark(args.capacity, args.batch, reps=args.reps)
    print_result(result, replay_table, args.json)
    return 0


def bench_run(path: Path) -> tuple[str, Config]:
    """A ``--run`` row: (name, settings) of a run directory or a config file."""
    file = path / "config.toml" if path.is_dir() else path
    if not file.is_file():
        raise ConfigError(f"--run {path}: not a run directory or config file")
    # A run's own config.toml is named by its run directory; another config file by its stem
    # (two files side by side in one folder must not share a row name).
    named = path if path.is_dir() else path.parent if path.name == "config.toml" else None
    name = (named.resolve().name if named else path.stem) or str(path)
    return name, Config(**load_toml(file))


def cmd_bench_train(args: argparse.Namespace) -> int:
    from atari_dqn.bench.timing import check_positive, parse_ints, print_result
    from atari_dqn.bench.train import (
        TrainBenchSettings,
        parse_kinds,
        train_benchmark,
        train_report,
    )

    kinds = parse_kinds(args.replay)
    runs = [bench_run(Path(d.strip())) for d in (args.run or "").split(",") if d.strip()]
    preset_list = args.preset if args.preset is not None else ("" if runs else "course")
    presets = [canonical_preset(p.strip()) for p in preset_list.split(",") if p.strip()]
    for p in presets:
        preset_config(p)  # ConfigError names an unknown preset
    if args.algo is not None:
        algos = [a.strip() for a in args.algo.split(",") if a.strip()]
        for a in algos:
            if a not in ("dqn", "pqn"):
                raise ConfigError(f"unknown algorithm {a!r} in --algo: choose from dqn, pqn")
        chosen = []
        for a in algos:  # in the order given
            given = [p for p in presets if preset_config(p).algo == a]
            chosen += given or (["pqn"] if a == "pqn" else [])
        if not chosen:
            raise ConfigError(f"--algo {args.algo}: none of --preset {args.preset} is one")
        presets = list(dict.fromkeys(chosen))
    try:  # "preset": each preset's own env count (0 below)
        num_envs = [
            0 if n.strip() == "preset" else int(n)
            for n in str(args.num_envs).split(",")
            if n.strip()
        ]
    except ValueError:
        msg = f"--num-envs takes comma-separated integers or 'preset', got {args.num_envs!r}"
        raise ConfigError(msg) from None
    check_positive(steps=args.steps, repeats=args.repeats)
    if not num_envs or min(num_envs) < 0:
        raise ConfigError(f"--num-envs must be positive or 'preset', got {args.num_envs!r}")
    threads = parse_ints(args.threads, "--threads") if args.threads is not None else None
    if not presets and not runs:
        raise ConfigError("--preset needs at least one preset")
    if args.warmup < 0:
        raise ConfigError(f"--warmup must be >= 0, got {args.warmup}")
    check_positive(buffer_size=args.buffer_size)  # None: not given
    settings = TrainBenchSettings(
        steps=args.steps,
        warmup=args.warmup,
        preset=presets[0] if presets else "",  # "": rows of --run alone
        device=args.device,
        buffer_size=args.buffer_size,
        threads=threads[0] if threads else None,
    )
    result = train_benchmark(
        settings,
        presets=presets,
        kinds=kinds,
        num_envs=num_envs,
        repeats=args.repeats,
        bf16=args.bf16,
        course_loop=args.course_loop,
        with_ceilings=args.ceilings,
        threads=threads,
        runs=runs,
    )
    print_result(result, train_report, args.json)
    return 0


def cmd_bench_memory(args: argparse.Namespace) -> int:
    from atari_dqn.bench.memory import memory_config, memory_soak, memory_table
    from atari_dqn.bench.timing import print_result

    config = memory_config(
        args.preset, steps=args.steps, buffer_size=args.buffer_size, device=args.device
    )
    print_result(memory_soak(config), memory_table, args.json)
    return 0


def cmd_bench_checkpoint(args: argparse.Namespace) -> int:
    from atari_dqn.bench.checkpoint import checkpoint_benchmark, checkpoint_table
    from atari_dqn.bench.timing import print_result

    result = checkpoint_benchmark(
        args.capacity,
        more=args.more,
        chunk_slots=args.chunk,
        kind=args.replay,
        envs=args.envs,
        directory=args.dir,
    )
    print_result(result, checkpoint_table, args.json)
    return 0


def cmd_bench_actors(args: argparse.Namespace) -> int:
    from atari_dqn.bench.timing import print_result
    from atari_dqn.build import check_training_input

    for name in ("max_actors", "steps", "block", "buffer_size"):
        if getattr(args, name) <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be positive")
    config = preset_config(args.preset).replace(
        replay=args.replay, buffer_size=args.buffer_size, device="cpu"
    )
    actions, _ = check_training_input(config)
    need_ray("bench actors", args.ray_address)
    from atari_dqn.bench.actors import actor_counts, actors_benchmark, actors_table

    result = actors_benchmark(
        config,
        actions,
        counts=actor_counts(args.max_actors),
        steps=args.steps,
        block=args.block,
        address=args.ray_address,
    )
    print_result(result, actors_table, args.json, indent=2)
    return 0


def cmd_bench_envs(args: argparse.Namespace) -> int:
    from atari_dqn.bench.envs import check_backends, compare_frames, envs_benchmark, envs_report
    from atari_dqn.bench.timing import check_positive, parse_ints, print_result

    num_envs = parse_ints(args.num_envs, "--num-envs")
    backends = check_backends([b.strip() for b in args.backends.split(",") if b.strip()])
    check_positive(steps=args.steps, threads=args.threads, repeats=args.repeats)
    result = envs_benchmark(
        args.env, num_envs, args.steps, backends, args.threads, args.seed, repeats=args.repeats
    )
    if args.check:
        result["frame_check"] = compare_frames(args.env, seed=args.seed)
    print_result(result, envs_report, args.json)
    return 0


def cmd_bench_update(args: argparse.Namespace) -> int:
    from atari_dqn.bench.timing import parse_ints, print_result
    from atari_dqn.bench.update import update_benchmark, update_table

    threads = parse_ints(args.threads, "--threads") if args.threads is not None else None
    if args.device not in ("cpu", "cuda") and not args.device.startswith("cuda:"):
        raise ConfigError(f"--device must be cpu, cuda or cuda:N, got {args.device!r}")
    if args.parts and args.preset is not None:
        raise ConfigError("--parts times its own presets (nature, rainbow-lite, rainbow)")
    result = update_benchmark(preset=args.preset or "course", threads=threads,
                              batch_size=args.batch,
                              rounds=args.rounds, inner=args.inner, compile=args.compile,
                              device=args.device, parts=args.parts)  # fmt: skip
    print_result(result, update_table, args.json)
    return 0
