"""``atari-dqn evaluate``: play full games with a model file and report the score."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Any

import numpy as np

from atari_dqn.config import UsageError


def add_evaluate_parser(sub: Any) -> None:
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


def cmd_evaluate(args: argparse.Namespace) -> int:
    from atari_dqn.artifacts import load_model, resolve_model_path
    from atari_dqn.build import build_policy, resolve_device
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
    policy = build_policy(network, resolve_device(args.device))
    env = make_env(env_id, training=False, actions=actions, max_frames=args.max_frames)
    sink = png_writer(args.frames) if args.frames is not None else None
    with contextlib.ExitStack() as stack:
        video = None
        if args.video is not None:
            from atari_dqn.video import VideoWriter

            video = stack.enter_context(VideoWriter(args.video))
        scores = play_games(
            env,
            policy.act,
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
    if video is not None:
        print(f"video written to {args.video} ({video.frames} frames)")
    return 0
