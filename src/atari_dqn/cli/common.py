"""What every command's parser shares: one-line usage errors with exit status 2."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import NoReturn

EXIT_USAGE = 2


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit 2), not a usage dump, and an unknown
    flag gets the closest known one as a suggestion."""

    commands: Mapping[str, argparse.ArgumentParser]  # the sub-commands' parsers, by name

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")

    def option_names(self) -> list[str]:
        """Every ``--flag`` this parser knows (argparse keeps them in its own table)."""
        return [name for name in self._option_string_actions if name.startswith("--")]

    def unknown_flags(self, extras: list[str]) -> NoReturn:
        """Refuse arguments no parser took, suggesting ``--total-steps`` for ``--totl-steps``
        and ``--lr`` for ``--learning-rate``."""
        from atari_dqn.config import did_you_mean

        message = f"unrecognized arguments: {' '.join(extras)}"
        flags = [e.split("=", 1)[0] for e in extras if e.startswith("--")]
        if flags:
            known = {name[2:].replace("-", "_"): name for name in self.option_names()}
            guess = did_you_mean(flags[0][2:].replace("-", "_"), list(known))
            if guess is not None:
                message += f"; did you mean {known[guess]}?"
        self.error(message)


def innermost(parser: Parser, args: argparse.Namespace) -> Parser:
    """The parser of the (sub-)sub-command the user typed, e.g. ``bench train``'s."""
    for dest in ("command", "bench"):
        name = getattr(args, dest, None)
        commands = getattr(parser, "commands", {})
        if name in commands and isinstance(commands[name], Parser):
            parser = commands[name]
    return parser


def need_ray(what: str, address: str | None = None) -> None:
    """Refuse (UsageError) a command that needs Ray where it is not installed, or would start
    a local Ray (no ``address``) open to the network without authentication."""
    import importlib.util

    from atari_dqn.config import UsageError

    if importlib.util.find_spec("ray") is None:
        raise UsageError(f"{what} needs Ray: pip install 'atari-dqn[ray]'")
    from atari_dqn.distributed.settings import check_local_ray

    check_local_ray(address)
