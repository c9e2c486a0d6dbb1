"""The command line: parsing and dispatch only. Nothing imports this package but
``__main__`` (and the ``atari-dqn`` script); building happens in :mod:`atari_dqn.build`, running
in :mod:`atari_dqn.driver`, measuring in :mod:`atari_dqn.bench`."""

from __future__ import annotations

import sys

from atari_dqn import __version__
from atari_dqn.artifacts import ArtifactError, WriteError
from atari_dqn.cli.bench import add_bench_parser
from atari_dqn.cli.common import EXIT_USAGE, Parser, innermost
from atari_dqn.cli.evaluate import add_evaluate_parser
from atari_dqn.cli.results import add_results_parsers
from atari_dqn.cli.train import add_train_parser
from atari_dqn.config import UsageError
from atari_dqn.envs import EnvError
from atari_dqn.loop import NonFiniteLossError

__all__ = ["build_parser", "main"]


def build_parser() -> Parser:
    parser = Parser(
        prog="atari-dqn",
        description="Train and evaluate Deep Q-Network agents on Atari games (Breakout first). "
        "Counts are agent steps: 1 step = 4 emulator frames.",
    )
    parser.add_argument("--version", action="version", version=f"atari-dqn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    parser.commands = sub.choices
    add_train_parser(sub)
    add_evaluate_parser(sub)
    add_results_parsers(sub)
    add_bench_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:
        innermost(parser, args).unknown_flags(extras)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.handler(args)
    except (UsageError, EnvError, ArtifactError) as exc:
        print(f"atari-dqn: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except WriteError as exc:  # a full disk, an I/O error: the run says what is intact
        print(f"atari-dqn: error: {exc}", file=sys.stderr)
        return 1
    except NonFiniteLossError as exc:
        print(
            f"atari-dqn: error: {exc}; the last saved model is the last good one", file=sys.stderr
        )
        return 1
    except MemoryError as exc:  # allocating past what the machine has (after --force-memory)
        print(f"atari-dqn: error: out of memory: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("atari-dqn: interrupted", file=sys.stderr)
        return 130
