"""``atari-dqn train``: its flags (one per Config field), and the checks of what a user typed
before the driver builds and runs anything."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import fields
from pathlib import Path
from typing import Any

from atari_dqn import driver
from atari_dqn.cli.common import need_ray
from atari_dqn.config import (
    PRESETS,
    Config,
    UsageError,
    canonical_preset,
    load_toml,
    preset_config,
)
from atari_dqn.distributed.settings import ApexSettings
from atari_dqn.reporting import Reporting


def add_train_parser(sub: Any) -> None:
    train = sub.add_parser(
        "train",
        help="train an agent (default: Breakout with the course project's settings)",
        description="Train a DQN agent. Settings come from --preset, then --config FILE.toml, "
        "then flags (each later source overrides). Counts are agent steps (1 step = 4 frames).",
    )
    train.add_argument(
        "--preset",
        default=None,
        type=canonical_preset,  # an old name (seed) is read as today's (course)
        choices=list(PRESETS),
        help="starting point for every setting (see `atari-dqn presets`) [default: course]",
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
        "--device and the --checkpoint-* settings may change)",
    )
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument(
        "--force-memory",
        action="store_true",
        help="start even if the replay and networks need more memory than is available "
        "(on a machine with swap)",
    )
    add_config_flags(train)
    add_reporting_flags(train)
    add_apex_flags(train)
    train.set_defaults(handler=cmd_train)


def add_config_flags(parser: argparse.ArgumentParser) -> None:
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
            "help": f"{f.metadata['help']} [default: {default}]",
        }
        if isinstance(default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif "bare" in f.metadata:  # a choice that was a yes/no flag: `--bf16` alone is 'on'
            kwargs.update(nargs="?", const=f.metadata["bare"], type=str)
        else:
            kwargs["type"] = type(default)
            kwargs["metavar"] = {int: "N", float: "X", str: "S"}[type(default)]
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]
            kwargs.pop("metavar", None)
        groups[group_name].add_argument("--" + f.name.replace("_", "-"), **kwargs)
        if "negated" in f.metadata:
            groups[group_name].add_argument(
                "--no-" + f.name.replace("_", "-"),
                dest=f.name,
                action="store_const",
                const=f.metadata["negated"],
                default=argparse.SUPPRESS,
                help=f"--{f.name.replace('_', '-')} {f.metadata['negated']}",
            )


_GROUPS = {
    "environment": ("env_id", "actions", "noop_max", "frame_skip", "sticky_actions", "num_envs"),
    "run": (
        "algo",
        "seed",
        "device",
        "total_steps",
        "warmup_steps",
        "update_every",
        "target_update",
        "checkpoint_replay",
        "checkpoint_chunk",
        "checkpoint_every",
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
        "one_pass_double",
        "dueling",
        "distributional",
        "atoms",
        "v_min",
        "v_max",
        "noisy",
        "noisy_sigma0",
        "layer_norm",
        "augment",
    ),  # fmt: skip
    "PQN (--algo pqn)": ("rollout_steps", "epochs", "minibatches", "q_lambda", "max_grad_norm"),
    "exploration": ("eps_start", "eps_end", "eps_decay"),
    "evaluation": ("eval_every", "eval_games", "eval_epsilon", "eval_max_frames"),
}


def add_reporting_flags(parser: argparse.ArgumentParser) -> None:
    """How the run reports beyond its directory; not part of its config (may differ on
    --resume)."""
    group = parser.add_argument_group("tracking and videos")
    group.add_argument(
        "--track", action="store_true",
        help="log to Weights & Biases (pip install 'atari-dqn[wandb]'): the TensorBoard "
        "scalars, the config and the videos; `wandb login` first, or WANDB_MODE=offline",
    )  # fmt: skip
    group.add_argument("--wandb-project", default=None, metavar="NAME",
                       help="W&B project [default: atari-dqn]")  # fmt: skip
    group.add_argument("--wandb-entity", default=None, metavar="NAME",
                       help="W&B team or user [default: yours]")  # fmt: skip
    group.add_argument(
        "--capture-video", action="store_true",
        help="film the first game of every --video-every'th evaluation into "
        "RUN/videos/eval_NNN.mp4",
    )  # fmt: skip
    group.add_argument("--video-every", type=int, default=None, metavar="K",
                       help="with --capture-video: every K-th evaluation [default: 1]")  # fmt: skip


def reporting_of(args: argparse.Namespace) -> Reporting:
    """The Reporting the flags ask for; a flag that needs another is bad input."""
    for flag, value, needs, given in (
        ("--wandb-project", args.wandb_project, "--track", args.track),
        ("--wandb-entity", args.wandb_entity, "--track", args.track),
        ("--video-every", args.video_every, "--capture-video", args.capture_video),
    ):
        if value is not None and not given:
            raise UsageError(f"{flag} needs {needs}")
    reporting = Reporting(
        track=args.track,
        wandb_project=args.wandb_project if args.wandb_project is not None else "atari-dqn",
        wandb_entity=args.wandb_entity,
        capture_video=args.capture_video,
        video_every=args.video_every if args.video_every is not None else 1,
    )
    reporting.check()
    return reporting


def _group_of(name: str) -> str:
    for group, names in _GROUPS.items():
        if name in names:
            return group
    return "other"


def resolve_config(args: argparse.Namespace) -> Config:
    """Preset, then TOML file, then flags; validated."""
    changes = load_toml(args.config) if args.config is not None else {}
    preset = args.preset or changes.pop("preset", None)
    if preset is None:  # --algo pqn alone starts from PQN's settings, not DQN's defaults
        algo = getattr(args, "algo", changes.get("algo", "dqn"))
        preset = "pqn" if algo == "pqn" else "course"
    config = preset_config(preset)
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


def cmd_train(args: argparse.Namespace) -> int:
    if args.resume is not None:
        return _resume(args)
    config = resolve_config(args)  # ---- everything a user can get wrong, before any work
    apex = _apex_settings(args, config)
    reporting = reporting_of(args)
    return driver.start_run(
        config,
        args.out,
        force=args.force,
        restore=args.restore,
        quiet=args.quiet,
        launch=_launcher(apex, args.ray_address),
        reporting=reporting,
        force_memory=args.force_memory,
    ).status


def _launcher(apex: ApexSettings | None, address: str | None) -> driver.Launch:
    """One process, or an Ape-X run on Ray (imported only then)."""
    if apex is None:
        return driver.single_process
    from atari_dqn.distributed.apex import apex_launch

    return apex_launch(apex, address)


def _resume(args: argparse.Namespace) -> int:
    """Continue the run in ``args.resume`` from its checkpoint, with its own config."""
    for flag, given in (
        ("--out", args.out is not None),
        ("--force", args.force),
        ("--restore", args.restore is not None),
        ("--preset", args.preset is not None),
        ("--config", args.config is not None),
    ):
        if given:
            raise UsageError(f"{flag} cannot be combined with --resume (the run keeps its own)")
    changes = {f.name: getattr(args, f.name) for f in fields(Config) if hasattr(args, f.name)}
    reporting = reporting_of(args)
    target = driver.check_resume(args.resume, changes, force_memory=args.force_memory)
    apex = _resumed_apex_settings(args, target.state, target.config)
    return driver.resume_run(
        target, quiet=args.quiet, launch=_launcher(apex, args.ray_address), reporting=reporting
    ).status


# ---------------------------------------------------------------------- distributed (Ray)
_APEX_FLAGS = ("envs_per_actor", "publish_every", "actor_block", "ray_address")


def add_apex_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("distributed (Ape-X on Ray)")
    group.add_argument(
        "--actors", type=int, default=None, metavar="N",
        help="collect with N Ray actors, Ape-X style: each actor env explores with a fixed "
        "ε_i = 0.4^(1 + 7i/(N-1)) (ε 0 with --noisy: each actor's own noise explores) and "
        "computes its transitions' initial priorities; a replay "
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


def _apex_settings(args: argparse.Namespace, config: Config) -> ApexSettings | None:
    """The ApexSettings of a new ``--actors`` run, or None for a single-process run."""
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
    need_ray("--actors", args.ray_address)
    return apex


def _resumed_apex_settings(
    args: argparse.Namespace, state: dict[str, Any], config: Config
) -> ApexSettings | None:
    """The ApexSettings saved in a checkpoint (None: a single-process run), with the flags that
    may change on --resume (--publish-every, --actor-block, --ray-address) applied."""
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
    need_ray("resuming an --actors run", args.ray_address)
    return apex
