"""``bench envs``: ale-py's AtariVectorEnv vs EnvPool, tiny runs only (the timing is a command)."""

from __future__ import annotations

import argparse
import json

import pytest

from atari_dqn.bench import envs as bench_envs
from atari_dqn.bench.envs import envs_benchmark, envs_table
from atari_dqn.cli import bench as cli_bench
from atari_dqn.config import ConfigError


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="atari-dqn")
    cli_bench.add_bench_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["bench", "envs", *argv])


def test_ale_backend_tiny_run_and_table() -> None:
    result = envs_benchmark(num_envs=[2], steps=200, backends=["ale"], repeats=1)
    (row,) = result["rows"]
    assert (row["backend"], row["num_envs"], row["status"]) == ("ale", 2, "ok")
    assert row["steps_per_s"] > 0 and row["threads"] >= 1
    assert result["ratio"] == {"2": None}
    table = envs_table(result)
    assert "BreakoutNoFrameskip-v4" in table
    line = next(x for x in table.splitlines() if x.startswith("ale "))
    assert f"{row['steps_per_s']:,.0f}" in line
    json.dumps(result)  # --json output is plain JSON


def test_envpool_rows_say_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = {"installed": False, "version": None, "error": "ImportError"}
    monkeypatch.setattr(bench_envs, "envpool_status", lambda: missing)
    result = envs_benchmark(num_envs=[1], steps=50, repeats=1)
    rows = {r["backend"]: r for r in result["rows"]}
    assert rows["envpool"]["status"] == "not installed"
    assert rows["envpool"]["steps_per_s"] is None and rows["ale"]["steps_per_s"] > 0
    assert result["envpool"]["installed"] is False and result["ratio"] == {"1": None}
    assert "not installed" in envs_table(result)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--num-envs", "0"], "--num-envs values must be positive, got 0"),
        (["--num-envs", "1,x"], "--num-envs expects integers"),
        (["--backends", "ale,gym"], "unknown backend 'gym' in --backends"),
        (["--steps", "-5"], "--steps must be positive, got -5"),
        (["--threads", "0"], "--threads must be positive, got 0"),
        (["--env", "Nope-v0"], "unknown environment id"),
    ],
)
def test_bad_input_is_a_one_line_config_error(argv: list[str], message: str) -> None:
    args = _parse(argv)
    assert args.handler is cli_bench.cmd_bench_envs
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(")) as exc:
        args.handler(args)
    assert "\n" not in str(exc.value)


def test_function_rejects_bad_n_and_backend() -> None:
    with pytest.raises(ConfigError, match="must be positive"):
        envs_benchmark(num_envs=[1, -2], steps=10)
    with pytest.raises(ConfigError, match="unknown backend"):
        envs_benchmark(num_envs=[1], steps=10, backends=["ale", "sample-factory"])


def test_envpool_row_and_frames_match() -> None:
    pytest.importorskip("envpool")
    result = envs_benchmark(num_envs=[2], steps=200, repeats=1)
    rows = {r["backend"]: r for r in result["rows"]}
    assert rows["envpool"]["status"] == "ok" and rows["envpool"]["steps_per_s"] > 0
    assert result["ratio"]["2"] == pytest.approx(
        rows["envpool"]["steps_per_s"] / rows["ale"]["steps_per_s"])  # fmt: skip
    assert "x" in next(x for x in envs_table(result).splitlines() if x.startswith("envpool"))
    # Breakout, no no-ops, no sticky actions: both emulators give the same frames.
    check = bench_envs.compare_frames(steps=300)
    assert check["status"] == "ok" and check["frames"] == 301
    assert check["exact"], bench_envs.compare_line(check)
