"""``bench memory``: a tiny soak; the replay must fill before RSS is watched."""

from __future__ import annotations

import pytest

from atari_dqn.cli import main


@pytest.mark.slow
def test_bench_memory_json(run_json) -> None:
    result = run_json(["bench", "memory", "--steps", "700", "--buffer-size", "300", "--json"])
    assert result["replay_full_at"] == 330
    steps = [p["step"] for p in result["rss"]]
    assert steps == sorted(steps) and steps[0] >= 330 and steps[-1] == 700
    assert all(p["bytes"] > 0 for p in result["rss"])


def test_bench_memory_needs_the_replay_to_fill(capsys) -> None:
    assert main(["bench", "memory", "--steps", "100", "--buffer-size", "300"]) == 2
    assert "must exceed --buffer-size" in capsys.readouterr().err
