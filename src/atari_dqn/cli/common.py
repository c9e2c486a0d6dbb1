"""What every command's parser shares: one-line usage errors with exit status 2."""

from __future__ import annotations

import argparse
from typing import NoReturn

EXIT_USAGE = 2


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit 2), not a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def need_ray(what: str) -> None:
    """Refuse (UsageError) a command that needs Ray where it is not installed."""
    import importlib.util

    from atari_dqn.config import UsageError

    if importlib.util.find_spec("ray") is None:
        raise UsageError(f"{what} needs Ray: pip install 'atari-dqn[ray]'")
