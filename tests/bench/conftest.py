"""What the bench tests share: run a ``bench`` command and read its one JSON line."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from atari_dqn.cli import main


@pytest.fixture
def run_json(capsys: pytest.CaptureFixture[str]) -> Callable[[list[str]], dict[str, Any]]:
    """``run_json(argv)``: the JSON object ``atari-dqn argv`` prints (exit 0, nothing else)."""

    def run(args: list[str]) -> dict[str, Any]:
        assert main(args) == 0
        out = capsys.readouterr().out
        assert len(out.strip().splitlines()) == 1  # one JSON object, nothing else on stdout
        return json.loads(out)

    return run
