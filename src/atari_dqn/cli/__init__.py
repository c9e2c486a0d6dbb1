"""Command line: the one place that builds every part and wires them together."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from atari_dqn import __version__
from atari_dqn.config import (
    PRESET_HELP,
    PRESETS,
    Config,
    ConfigError,
    load_toml,
    preset_config,
    to_toml,
)

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input: reported as one line on stderr with exit status 2, before any work."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit 2), not a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


# ---------------------------------------------------------------------- parser
def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per Config field; defaults are SUPPRESSed so we know what the user typed."""
    defaults = Config()
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in fields(Config):
        if f.name == "preset":
            continue
        group_name = _group_of(f.name)
        if group_name not in groups:
            groups[group_name] = parser.add_argument_group(group_name)
        default = getattr(defaults, f.name)
        kwargs: dict[str, Any] = {
            "dest": f.name,
            "default": argparse.SUPPRESS,
            "help": f"{f.metadata['help']} [seed preset: {default}]",
        }
        if isinstance(default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = type(default)
            kwargs["metavar"] = {int: "N", float: "X", str: "S"}[type(default)]
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]
            kwargs.pop("metavar", None)
        groups[group_name].add_argument("--" + f.name.replace("_", "-"), **kwargs)


_GROUPS = {
    "environment": ("env_id", "actions", "noop_max", "frame_skip", "sticky_actions", "num_envs"),
    "run": (
        "seed",
        "device",
        "total_steps",
        "warmup_steps",
        "update_every",
        "target_update",
        "checkpoint_replay",
    ),
    "replay": (
        "buffer_size",
        "batch_size",
        "replay",
        "alpha",
        "beta0",
        "beta_steps",
        "priority_eps",
        "n_step",
    ),
    "learning": (
        "lr",
        "adam_eps",
        "fused_adam",
        "channels_last",
        "bf16",
        "gamma",
        "grad_clip",
        "double",
        "dueling",
    ),  # fmt: skip
    "exploration": ("eps_start", "eps_end", "eps_decay"),
    "evaluation": ("eval_every", "eval_games", "eval_epsilon", "eval_max_frames"),
}


def _group_of(name: str) -> str:
    for group, names in _GROUPS.items():
        if name in names:
            return group
    return "other"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="atari-dqn",
        description="Train and evaluate Deep Q-Network agents on Atari games (Breakout first). "
        "Counts are agent steps: 1 step = 4 emulator frames.",
    )
    parser.add_argument("--version", action="version", version=f"atari-dqn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    train = sub.add_parser(
        "train",
        help="train an agent (default: Breakout with the seed's settings)",
        description="Train a DQN agent. Settings come from --preset, then --config FILE.toml, "
        "then flags (each later source overrides). Counts are agent steps (1 step = 4 frames).",
    )
    train.add_argument(
        "--preset",
        default=None,
        choices=list(PRESETS),
        help="starting point for every setting (see `atari-dqn presets`) [default: seed]",
    )
    train.add_argument("--config", type=Path, metavar="FILE", help="TOML file of settings")
    train.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="run directory [default: runs/<game>-<preset>-s<seed>-<time>]",
    )
    train.add_argument(
        "--force", action="store_true", help="replace the run already in --out (its files only)"
    )
    train.add_argument(
        "--restore", type=Path, metavar="MODEL", help="start from the weights of a model file"
    )
    train.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue a run from its checkpoint, with its config (only --total-steps, "
        "--device and --checkpoint-replay may change)",
    )
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_config_flags(train)
    _add_apex_flags(train)
    train.set_defaults(handler=cmd_train)

    ev = sub.add_parser(
        "evaluate",
        help="play full games with a trained model and report the score",
        description="Play full games (all lives, raw score) with a model file, or with the "
        "newest model of a run directory, and print the mean and standard deviation.",
    )
    ev.add_argument("model", type=Path, metavar="RUN_DIR_OR_MODEL")
    ev.add_argument("--episodes", type=int, default=10, help="games to play [default: 10]")
    ev.add_argument("--epsilon", type=float, default=0.05, help="ε during play [default: 0.05]")
    ev.add_argument("--seed", type=int, default=0, help="seed of the games [default: 0]")
    ev.add_argument(
        "--env-id", default=None, help="game to play [default: the one the model was trained on]"
    )
    ev.add_argument(
        "--max-frames",
        type=int,
        default=108_000,
        help="cap per game, in emulator frames [default: 108000]",
    )
    ev.add_argument("--frames", type=Path, metavar="DIR", help="write every frame as PNG here")
    ev.add_argument(
        "--video",
        type=Path,
        metavar="FILE",
        help="record the games, in colour at 210x160 with the score, as FILE.mp4 or FILE.gif",
    )
    ev.add_argument("--device", default="auto", help="torch device [default: auto]")
    ev.set_defaults(handler=cmd_evaluate)

    pr = sub.add_parser("presets", help="list the presets and what each sets")
    pr.set_defaults(handler=cmd_presets)

    pl = sub.add_parser(
        "plot",
        help="learning curves of runs (mean over seeds, 95%% bootstrap CI) and a table",
        description="Plot the evaluation scores (rewards.txt) of run directories against agent "
        "steps. Runs whose config.toml agree except for the seed and the run length are one "
        "group, drawn as the mean over its runs with a 95%% bootstrap confidence band. Prints a "
        "table per group (runs, final score mean ± std, best, IQM of the final scores) and "
        "writes it as CSV next to the PNG. Runs still training are fine.",
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
        "--size", default="1000x600", metavar="WxH", help="image size in pixels [default: 1000x600]"
    )
    pl.add_argument("--force", action="store_true", help="replace an existing image and CSV")
    pl.set_defaults(handler=cmd_plot)
    _add_sweep_parser(sub)
    add_bench_parser(sub)
    return parser


# ---------------------------------------------------------------------- train
def resolve_config(args: argparse.Namespace) -> Config:
    """Preset, then TOML file, then flags; validated."""
    changes = load_toml(args.config) if args.config is not None else {}
    config = preset_config(args.preset or changes.pop("preset", "seed"))
    changes.pop("preset", None)
    config = config.replace(**changes)
    flags = {
        f.name: getattr(args, f.name)
        for f in fields(Config)
        if f.name != "preset" and hasattr(args, f.name)
    }
    config = config.replace(**flags)
    config.validate()
    return config


def build_replay(config: Config, rng: np.random.Generator, num_streams: int = 1) -> Any:
    """The replay memory the config asks for, over frame-deduplicated storage."""
    from atari_dqn.replay.prioritized import PrioritizedReplay
    from atari_dqn.replay.storage import FrameStorage
    from atari_dqn.replay.uniform import UniformReplay

    capacity = config.buffer_size // num_streams * num_streams  # equal rings, one per env
    storage = FrameStorage(
        capacity, n_step=config.n_step, gamma=config.gamma, num_streams=num_streams
    )
    if config.replay == "prioritized":
        return PrioritizedReplay(storage, rng, alpha=config.alpha, priority_eps=config.priority_eps)
    return UniformReplay(storage, rng)


def _default_out(config: Config) -> Path:
    game = config.env_id.split("/")[-1].split("-")[0].replace("NoFrameskip", "").lower()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{game}-{config.preset}-s{config.seed}-{stamp}"


def _device(name: str) -> Any:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available on this machine")
    return torch.device(name)


@dataclass
class Training:
    """Every part of a training run, built and wired, not yet started."""

    config: Config
    actions: tuple[str, ...]
    device: Any  # torch.device
    agent: Any  # DQNAgent
    replay: Any  # UniformReplay | PrioritizedReplay
    loop: Any  # TrainLoop


def check_training_input(config: Config) -> tuple[tuple[str, ...], Any]:
    """Everything about a config a user can get wrong that needs more than the config itself."""
    from atari_dqn.envs import check_env_id, resolve_actions

    config.validate()
    check_env_id(config.env_id)
    return resolve_actions(config.env_id, config.actions), _device(config.device)


def build_training(config: Config, *, restore: Path | None = None) -> Training:
    """Construct env, eval env, networks, optimiser, replay, schedules and the loop."""
    import torch

    from atari_dqn.agent import DQNAgent
    from atari_dqn.artifacts import load_weights_into
    from atari_dqn.envs import make_env
    from atari_dqn.loop import LoopSettings, TrainLoop
    from atari_dqn.networks import QNetwork
    from atari_dqn.perf import tune_allocator
    from atari_dqn.schedules import LinearSchedule
    from atari_dqn.vector import AtariVector, SingleEnv

    actions, device = check_training_input(config)
    # One seed, split into independent streams for each random component.
    seeds = np.random.SeedSequence(config.seed).spawn(5)
    env_seed, eval_seed = (int(s.generate_state(1)[0] >> 1) for s in seeds[:2])
    torch_gen = torch.Generator().manual_seed(int(seeds[2].generate_state(1)[0]))
    tune_allocator()
    layout = {"dueling": config.dueling, "channels_last": config.channels_last}
    online = QNetwork(len(actions), generator=torch_gen, **layout)
    if restore is not None:
        load_weights_into(online, restore)
    online = online.to(device)
    target = QNetwork(len(actions), **layout).to(device)
    optimizer = torch.optim.Adam(
        online.parameters(), lr=config.lr, eps=config.adam_eps, fused=config.fused_adam
    )
    agent = DQNAgent(
        online,
        target,
        optimizer,
        num_actions=len(actions),
        device=device,
        double=config.double,
        grad_clip=config.grad_clip,
        bf16=config.bf16,
    )
    sticky = None if config.sticky_actions < 0 else config.sticky_actions
    env_kwargs = dict(
        actions=actions,
        noop_max=config.noop_max,
        frame_skip=config.frame_skip,
        repeat_action_probability=sticky,
    )
    if config.num_envs == 1:
        env: Any = SingleEnv(make_env(config.env_id, training=True, **env_kwargs))
    else:
        env = AtariVector(config.env_id, config.num_envs, **env_kwargs)
    eval_env = make_env(
        config.env_id, training=False, max_frames=config.eval_max_frames, **env_kwargs
    )
    replay = build_replay(config, np.random.default_rng(seeds[3]), config.num_envs)
    beta = LinearSchedule(config.beta0, 1.0, config.beta_steps or config.total_steps)
    epsilon = LinearSchedule(
        config.eps_start, config.eps_end, config.eps_decay, begin=config.warmup_steps
    )
    loop = TrainLoop(
        env,
        eval_env,
        agent,
        replay,
        epsilon,
        beta=beta,
        rng=np.random.default_rng(seeds[4]),
        settings=LoopSettings(
            total_steps=config.total_steps,
            warmup_steps=config.warmup_steps,
            update_every=config.update_every,
            target_update=config.target_update,
            batch_size=config.batch_size,
            eval_every=config.eval_every,
            eval_games=config.eval_games,
            eval_epsilon=config.eval_epsilon,
            eval_seed=eval_seed,
            env_seed=env_seed,
        ),
    )
    return Training(config, actions, device, agent, replay, loop)


def cmd_train(args: argparse.Namespace) -> int:
    from atari_dqn.artifacts import RunDir, load_model

    if args.resume is not None:
        return _resume(args)
    # ---- everything a user can get wrong is checked before any work starts
    config = resolve_config(args)
    if config.beta_steps == 0:  # "the whole run", fixed now so a resume that extends it keeps β
        config = config.replace(beta_steps=config.total_steps)
    check_training_input(config)
    apex = _apex_settings(args, config)
    if args.restore is not None:
        load_model(args.restore)
    out = args.out if args.out is not None else _default_out(config)
    RunDir.check_new(out, args.force)

    def new_run(training: Training) -> RunDir:
        del training
        run = RunDir.create(out, args.force)
        run.write_config(to_toml(config))
        return run

    if apex is not None:
        return _train_apex(args, config, apex, new_run, restore=args.restore)
    training = build_training(config, restore=args.restore)
    return _train(args, training, new_run(training))


# Settings that may differ on --resume without changing what the run is.
RESUME_MAY_CHANGE = ("total_steps", "device", "checkpoint_replay")


def _resume(args: argparse.Namespace) -> int:
    """Continue the run in ``args.resume`` from its checkpoint, with its own config."""
    from atari_dqn.artifacts import RunDir
    from atari_dqn.checkpoint import CHECKPOINT_NAME, load_checkpoint, read_checkpoint_state

    for flag, given in (
        ("--out", args.out is not None),
        ("--force", args.force),
        ("--restore", args.restore is not None),
        ("--preset", args.preset is not None),
        ("--config", args.config is not None),
    ):
        if given:
            raise UsageError(f"{flag} cannot be combined with --resume (the run keeps its own)")
    run = RunDir(args.resume)
    if not (run.path / "config.toml").is_file():
        raise UsageError(f"--resume {run.path}: not a run directory (no config.toml)")
    try:
        saved = Config(**load_toml(run.path / "config.toml"))
    except (ConfigError, TypeError) as exc:
        raise UsageError(f"--resume {run.path}: unreadable config.toml ({exc})") from None
    config = saved
    for f in fields(Config):
        if f.name == "preset" or not hasattr(args, f.name):
            continue
        value = getattr(args, f.name)
        if f.name not in RESUME_MAY_CHANGE and value != getattr(saved, f.name):
            raise UsageError(
                f"--{f.name.replace('_', '-')} {value} contradicts the run's config "
                f"({getattr(saved, f.name)}); on --resume only "
                + ", ".join("--" + n.replace("_", "-") for n in RESUME_MAY_CHANGE)
                + " may change"
            )
        config = config.replace(**{f.name: value})
    check_training_input(config)
    ckpt = run.path / CHECKPOINT_NAME
    state = read_checkpoint_state(ckpt)
    theirs = state["config"]
    if theirs.get("env_id") != config.env_id:
        raise UsageError(
            f"checkpoint {ckpt} is from {theirs.get('env_id')}, but this run is {config.env_id}"
        )
    for key, value in dataclasses.asdict(config).items():
        if key not in RESUME_MAY_CHANGE and theirs.get(key) != value:
            raise UsageError(
                f"checkpoint {ckpt} does not match the run's config.toml "
                f"({key}: {theirs.get(key)!r} vs {value!r})"
            )
    step = int(state["loop"]["step"])
    if step >= config.total_steps:
        raise UsageError(
            f"the run is already at step {step} of --total-steps {config.total_steps}; "
            "pass a larger --total-steps to continue it"
        )
    apex = _resumed_apex_settings(args, state, config)

    def resume(training: Training) -> Any:
        load_checkpoint(ckpt, agent=training.agent, replay=training.replay, loop=training.loop)
        # Anything written after the checkpoint (a kill between an evaluation and its
        # checkpoint) is replayed exactly by the resumed run, so it is dropped, not duplicated.
        run.truncate_rewards(step)
        run.write_config(to_toml(config))
        _say(args, f"resuming {run.path} at step {step}")
        return run

    if apex is not None:
        return _train_apex(args, config, apex, resume)
    training = build_training(config)
    return _train(args, training, resume(training))


def _train(args: argparse.Namespace, training: Training, run: Any) -> int:
    """Run the loop: progress bar, rewards.txt, models and checkpoints; stop cleanly on signals."""
    import signal
    import threading

    from tqdm import tqdm

    from atari_dqn.artifacts import save_model
    from atari_dqn.checkpoint import CHECKPOINT_NAME, save_checkpoint

    config, loop, online = training.config, training.loop, training.agent.online
    actions = training.actions
    model_meta = {"env_id": config.env_id, "actions": ",".join(actions), "seed": config.seed}
    _say(args, f"run directory: {run.path}  ({config.env_id}, preset {config.preset}, "
         f"{len(actions)} actions: {','.join(actions)}, device {training.device})")  # fmt: skip

    saved_at: list[int] = []

    def checkpoint() -> None:
        saved_at.append(loop.step)
        info = save_checkpoint(
            run.path / CHECKPOINT_NAME,
            config=dataclasses.asdict(config),
            agent=training.agent,
            replay=training.replay,
            loop=loop,
            include_replay=config.checkpoint_replay,
        )
        _log(args, bar, f"checkpoint at step {loop.step}: {info.bytes / 1e6:.1f} MB "
             f"in {info.seconds:.2f} s")  # fmt: skip

    stop: list[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        del frame
        stop.append(signum)

    # Only the main thread may take signals (a sweep's trial trains in another thread).
    previous = (
        {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        if threading.current_thread() is threading.main_thread()
        else {}
    )
    bar = tqdm(
        total=config.total_steps,
        initial=loop.step,
        unit="step",
        disable=args.quiet,
        dynamic_ncols=True,
        smoothing=0.05,
    )
    # TensorBoard event files in the run directory; a resumed run continues after its step.
    from atari_dqn.metrics import MetricsWriter

    metrics = MetricsWriter(
        run.path, start_step=loop.step, replay_beta=config.replay == "prioritized"
    )
    postfix: dict[str, str] = {"eps": "1.00", "eval": "-", "loss": "-"}
    try:
        for progress in loop.run():
            bar.update(progress.step - bar.n)
            metrics.write(progress)
            postfix["eps"] = f"{progress.epsilon:.2f}"
            if progress.loss is not None:
                postfix["loss"] = f"{progress.loss:.4f}"
            result = progress.evaluation
            if result is not None:
                run.append_reward(result.index, result.step, result.mean)
                path = run.model_path(result.index)
                save_model(path, online, {**model_meta, "step": result.step})
                postfix["eval"] = f"{result.mean:.1f}"
                _log(args, bar, f"eval {result.index:3d} at step {result.step}: score "
                     f"{result.mean:.1f} ± {result.std:.1f} over {len(result.scores)} games "
                     f"-> {path.name}")  # fmt: skip
            bar.set_postfix(postfix, refresh=False)
            if result is not None or stop:
                checkpoint()
            if stop:
                name = signal.Signals(stop[0]).name
                _log(args, bar, f"stopped by {name} at step {loop.step}; continue with: "
                     f"atari-dqn train --resume {run.path}")  # fmt: skip
                return 0 if stop[0] == signal.SIGTERM else 130
        if not saved_at or saved_at[-1] != loop.step:
            checkpoint()
    finally:
        bar.close()
        metrics.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    _say(args, f"done: {loop.step} steps, {loop.updates} updates; results in {run.path}")
    return 0


def _log(args: argparse.Namespace, bar: Any, msg: str) -> None:
    """One line per event, readable in a terminal (above the bar) and in a piped log."""
    if args.quiet:
        print(msg, flush=True)
    else:
        bar.write(msg)


def _say(args: argparse.Namespace, msg: str) -> None:
    print(msg, file=sys.stderr if not args.quiet else sys.stdout, flush=True)


# ---------------------------------------------------------------------- distributed (Ray)
_APEX_FLAGS = ("envs_per_actor", "publish_every", "actor_block", "ray_address")


def _add_apex_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("distributed (Ape-X on Ray)")
    group.add_argument(
        "--actors", type=int, default=None, metavar="N",
        help="collect with N Ray actors, Ape-X style: each actor env explores with a fixed "
        "ε_i = 0.4^(1 + 7i/(N-1)) and computes its transitions' initial priorities; a replay "
        "server holds the replay; this process learns [default: one process, no Ray]",
    )  # fmt: skip
    group.add_argument("--envs-per-actor", type=int, default=None, metavar="N",
                       help="envs per actor, stepped as one AtariVector [default: 1]")  # fmt: skip
    group.add_argument("--publish-every", type=int, default=None, metavar="K",
                       help="learner updates between weight publications "
                       "[default: 100]")  # fmt: skip
    group.add_argument("--actor-block", type=int, default=None, metavar="N",
                       help="steps per env an actor ships as one block [default: 50]")  # fmt: skip
    group.add_argument(
        "--ray-address", default=None, metavar="ADDR",
        help="join this Ray cluster ('auto': the one `ray start` runs on this machine) "
        "[default: start a local Ray with this machine's CPUs]",
    )  # fmt: skip


def _need_ray(what: str) -> None:
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise UsageError(f"{what} needs Ray: pip install 'atari-dqn[ray]'")


def _apex_settings(args: argparse.Namespace, config: Config) -> Any:
    """The ApexSettings of a new ``--actors`` run, or None for a single-process run."""
    from atari_dqn.distributed.settings import ApexSettings

    if args.actors is None:
        for name in _APEX_FLAGS:
            if getattr(args, name) is not None:
                raise UsageError(f"--{name.replace('_', '-')} needs --actors")
        return None
    apex = ApexSettings(
        actors=args.actors,
        envs_per_actor=args.envs_per_actor or 1,
        publish_every=args.publish_every or 100,
        block=args.actor_block or 50,
    )
    if args.envs_per_actor == 0 or args.publish_every == 0 or args.actor_block == 0:
        raise UsageError("--envs-per-actor, --publish-every and --actor-block must be positive")
    apex.validate(config)
    _need_ray("--actors")
    return apex


def _resumed_apex_settings(args: argparse.Namespace, state: dict, config: Config) -> Any:
    """The ApexSettings saved in a checkpoint (None: a single-process run), with the flags that
    may change on --resume (--publish-every, --actor-block, --ray-address) applied."""
    from atari_dqn.distributed.settings import ApexSettings

    saved = state["loop"].get("apex")
    if saved is None:
        for name in ("actors", *_APEX_FLAGS):
            if getattr(args, name) is not None:
                raise UsageError(
                    f"--{name.replace('_', '-')}: {args.resume} is a single-process run"
                )
        return None
    apex = ApexSettings.from_dict(saved)
    for name, value in (("actors", apex.actors), ("envs_per_actor", apex.envs_per_actor)):
        given = getattr(args, name)
        if given is not None and given != value:
            raise UsageError(
                f"--{name.replace('_', '-')} {given} contradicts the run's checkpoint ({value})"
            )
    apex = dataclasses.replace(
        apex,
        publish_every=args.publish_every or apex.publish_every,
        block=args.actor_block or apex.block,
    )
    apex.validate(config)
    _need_ray("resuming an --actors run")
    return apex


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
    _need_ray("sweep")
    from atari_dqn.distributed.sweep import run_sweep

    # Each trial is `atari-dqn train` itself, called in the trial's process.
    return run_sweep(spec, out, train=main, address=args.ray_address)


def _train_apex(
    args: argparse.Namespace,
    config: Config,
    apex: Any,
    open_run: Any,
    *,
    restore: Path | None = None,
) -> int:
    """An ``--actors`` run: the learner's parts as build_training makes them (its own env and
    replay stay unused), actors and a replay server on Ray around them, then ``_train``."""
    import functools

    from atari_dqn.distributed.apex import start_apex

    training = build_training(config, restore=restore)
    loop = training.loop
    ray_run = start_apex(
        config,
        apex,
        actions=training.actions,
        agent=training.agent,
        eval_env=loop.eval_env,
        settings=loop.s,
        beta=loop.beta,
        rng=loop.rng,
        make_replay=functools.partial(build_replay, config, training.replay.rng, apex.streams),
        address=args.ray_address,
    )
    try:
        training = dataclasses.replace(training, replay=ray_run.replay, loop=ray_run.loop)
        run = open_run(training)
        _say(args, f"Ape-X: {apex.actors} actors x {apex.envs_per_actor} env(s), weights "
             f"published every {apex.publish_every} updates, blocks of {apex.block} "
             "steps")  # fmt: skip
        return _train(args, training, run)
    finally:
        ray_run.close()


# ---------------------------------------------------------------------- evaluate
def cmd_evaluate(args: argparse.Namespace) -> int:
    import torch

    from atari_dqn.agent import DQNAgent
    from atari_dqn.artifacts import load_model, resolve_model_path
    from atari_dqn.envs import check_env_id, make_env, resolve_actions
    from atari_dqn.evaluate import play_games, png_writer

    if args.episodes <= 0:
        raise UsageError(f"--episodes must be positive, got {args.episodes}")
    if not 0.0 <= args.epsilon <= 1.0:
        raise UsageError(f"--epsilon must be in [0, 1], got {args.epsilon}")
    if args.max_frames <= 0:
        raise UsageError(f"--max-frames must be positive, got {args.max_frames}")
    if args.frames is not None and args.frames.exists() and any(args.frames.iterdir()):
        raise UsageError(f"--frames {args.frames} is not empty; choose a new directory")
    if args.video is not None:
        from atari_dqn.video import check_video_path

        check_video_path(args.video)
    path = resolve_model_path(args.model)
    network, meta = load_model(path)
    env_id = args.env_id or meta.get("env_id", "BreakoutNoFrameskip-v4")
    check_env_id(env_id)
    if meta.get("actions"):
        actions = tuple(meta["actions"].split(","))
    else:
        actions = resolve_actions(env_id, "minimal")
    if len(actions) != network.num_actions:
        raise UsageError(
            f"model {path} has {network.num_actions} outputs but {len(actions)} actions"
        )
    device = _device(args.device)
    network = network.to(device).eval()
    agent = DQNAgent(
        network,
        network,
        torch.optim.SGD(network.parameters(), lr=0.0),
        num_actions=len(actions),
        device=device,
    )
    env = make_env(env_id, training=False, actions=actions, max_frames=args.max_frames)
    sink = png_writer(args.frames) if args.frames is not None else None
    with contextlib.ExitStack() as stack:
        video = None
        if args.video is not None:
            from atari_dqn.video import VideoWriter

            video = stack.enter_context(VideoWriter(args.video))
        scores = play_games(
            env,
            agent.act,
            games=args.episodes,
            epsilon=args.epsilon,
            seed=args.seed,
            on_frame=sink,
            on_scored_frame=video,
        )
    print(f"model: {path}  ({env_id}, step {meta.get('step', '?')})")
    print("scores: " + " ".join(f"{s:.0f}" for s in scores))
    print(f"mean {np.mean(scores):.1f} ± {np.std(scores):.1f} over {len(scores)} games")
    if args.frames is not None:
        print(f"frames written to {args.frames}")
    if args.video is not None:
        print(f"video written to {args.video} ({video.frames} frames)")
    return 0


# ---------------------------------------------------------------------- presets
def cmd_presets(args: argparse.Namespace) -> int:
    del args
    for name, changes in PRESETS.items():
        print(f"{name}: {PRESET_HELP[name]}")
        for key, value in changes.items():
            flag = key.replace("_", "-")
            if isinstance(value, bool):
                print(f"    --{flag}" if value else f"    --no-{flag}")
            else:
                print(f"    --{flag} {value}")
    return 0


# ---------------------------------------------------------------------- plot
def cmd_plot(args: argparse.Namespace) -> int:
    from atari_dqn.plot import parse_size, plot_runs

    label_by = [k.strip().replace("-", "_") for v in args.label_by for k in v.split(",") if k]
    _, table, skipped = plot_runs(
        args.runs, args.out, label_by=label_by, size=parse_size(args.size), force=args.force
    )
    for path in skipped:
        print(f"skipped {path}: no evaluation in its rewards.txt yet", file=sys.stderr)
    print(table)
    print(f"wrote {args.out} and {args.out.with_suffix('.csv')}")
    return 0


# ---------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    from atari_dqn.artifacts import ArtifactError
    from atari_dqn.envs import EnvError
    from atari_dqn.loop import NonFiniteLossError

    try:
        return args.handler(args)
    except (UsageError, ConfigError, EnvError, ArtifactError) as exc:
        print(f"atari-dqn: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except NonFiniteLossError as exc:
        print(
            f"atari-dqn: error: {exc}; the last saved model is the last good one", file=sys.stderr
        )
        return 1
    except KeyboardInterrupt:
        print("atari-dqn: interrupted", file=sys.stderr)
        return 130
