"""``atari-dqn evaluate``: play full games with a model file and report the score."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from atari_dqn.config import UsageError


def add_evaluate_parser(sub: Any) -> None:
    ev = sub.add_parser(
        "evaluate",
        help="play full games with a trained model and report the score",
        description="Play full games (all lives, raw score) with a model file, or with the "
        "newest model of a run directory, and print the mean and standard deviation. The "
        "network is rebuilt from the file (dueling, distributional, noisy); noisy layers play "
        "with their mean weights, noise off, as Dopamine evaluates.",
    )
    ev.add_argument("model_path", type=Path, metavar="RUN_DIR_OR_MODEL")
    ev.add_argument("--episodes", type=int, default=10, help="games to play [default: 10]")
    ev.add_argument("--epsilon", type=float, default=0.05, help="ε during play [default: 0.05]")
    ev.add_argument("--seed", type=int, default=0, help="seed of the games [default: 0]")
    ev.add_argument(
        "--env-id", default=None, help="game to play [default: the one the model was trained on]"
    )
    ev.add_argument(
        "--model",
        default=None,
        metavar="latest|best|N",
        help="which model of a run directory: latest (the last checkpoint's), best (the best "
        "evaluation's) or evaluation N [default: the newest evaluation's]",
    )
    ev.add_argument(
        "--max-frames",
        type=int,
        default=None,
        help="cap per game, in emulator frames [default: the run's, else 108000]",
    )
    ev.add_argument("--noop-max", type=int, default=None, metavar="N",
                    help="random no-ops at a game start [default: the run's]")  # fmt: skip
    ev.add_argument("--frame-skip", type=int, default=None, metavar="N",
                    help="emulator frames per agent step [default: the run's]")  # fmt: skip
    ev.add_argument("--sticky-actions", type=float, default=None, metavar="X",
                    help="sticky-action probability, -1 for the env id's default "
                    "[default: the run's]")  # fmt: skip
    ev.add_argument("--json", action="store_true", help="print one JSON object instead")
    ev.add_argument("--frames", type=Path, metavar="DIR", help="write every frame as PNG here")
    ev.add_argument(
        "--video",
        type=Path,
        metavar="FILE",
        help="record the games, in colour at 210x160 with the score, as FILE.mp4 or FILE.gif",
    )
    ev.add_argument("--force", action="store_true", help="replace the --video FILE if it exists")
    ev.add_argument("--device", default="auto", help="torch device [default: auto]")
    ev.set_defaults(handler=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from atari_dqn.scoring import score_model

    if args.episodes <= 0:
        raise UsageError(f"--episodes must be positive, got {args.episodes}")
    if not 0.0 <= args.epsilon <= 1.0:
        raise UsageError(f"--epsilon must be in [0, 1], got {args.epsilon}")
    for flag, value in (("--max-frames", args.max_frames), ("--frame-skip", args.frame_skip)):
        if value is not None and value <= 0:
            raise UsageError(f"{flag} must be positive, got {value}")
    if args.noop_max is not None and args.noop_max < 0:
        raise UsageError(f"--noop-max must be >= 0, got {args.noop_max}")
    sticky = args.sticky_actions
    if sticky is not None and sticky != -1.0 and not 0.0 <= sticky <= 1.0:
        raise UsageError(f"--sticky-actions must be in [0, 1] or -1, got {sticky}")
    if args.frames is not None and args.frames.exists() and not args.frames.is_dir():
        raise UsageError(f"--frames {args.frames} exists and is not a directory")
    if args.frames is not None and args.frames.exists() and any(args.frames.iterdir()):
        raise UsageError(f"--frames {args.frames} is not empty; choose a new directory")
    if args.video is not None:
        from atari_dqn.video import check_video_path

        check_video_path(args.video, overwrite=args.force)
    elif args.force:
        raise UsageError("--force replaces a --video file; there is no --video")
    result = score_model(
        args.model_path,
        which=args.model,
        episodes=args.episodes,
        epsilon=args.epsilon,
        seed=args.seed,
        env_id=args.env_id,
        overrides={
            "noop_max": args.noop_max,
            "frame_skip": args.frame_skip,
            "sticky_actions": args.sticky_actions,
            "eval_max_frames": args.max_frames,
        },
        device=args.device,
        frames=args.frames,
        video=args.video,
        overwrite_video=args.force,
    )
    if args.json:
        print(json.dumps(result.to_json(args.epsilon, args.seed)))
        return 0
    env = result.env
    print(f"model: {result.model}  ({result.env_id}, step {result.step or '?'})")
    print(
        f"env: noop_max {env['noop_max']:g}, frame_skip {env['frame_skip']:g}, "
        f"sticky_actions {env['sticky_actions']:g} (-1: the env id's default), "
        f"max frames {env['eval_max_frames']:g}"
    )
    for note in result.notes:
        print(note)
    print("scores: " + " ".join(f"{s:.0f}" for s in result.scores))
    print(f"mean {result.mean:.1f} ± {result.std:.1f} over {len(result.scores)} games")
    if args.frames is not None:
        print(f"frames written to {args.frames}")
    if result.video_frames is not None:
        print(f"video written to {args.video} ({result.video_frames} frames)")
    return 0
