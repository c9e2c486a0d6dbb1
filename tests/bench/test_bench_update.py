"""``bench update``: one tiny run of every variant; bad input is one line."""

from __future__ import annotations

import pytest

from atari_dqn.bench.update import DQN, PARTS, VARIANTS
from atari_dqn.cli import main


def test_bench_update_times_every_variant_and_compares_it_with_the_plain_path(run_json) -> None:
    result = run_json(
        ["bench", "update", "--threads", "1", "--rounds", "1", "--inner", "1", "--batch", "4",
         "--json"],
    )  # fmt: skip
    rows = {r["variant"]: r for r in result["rows"]}
    assert list(rows) == list(VARIANTS)
    assert all(r["threads"] == 1 and r["ms"] > 0 for r in rows.values())
    plain = rows["per-tensor Adam, NCHW (the course project's)"]
    assert plain["vs_plain"] == 1.0 and plain["loss_rel_diff"] == 0.0
    # Fused Adam changes nothing in the first update; channels-last only float rounding.
    assert rows["fused Adam, NCHW"]["td_max_abs_diff"] == 0.0
    assert rows["fused Adam, channels-last (default)"]["td_max_abs_diff"] < 1e-4
    assert rows["default + --bf16"]["td_max_abs_diff"] > 0.0


def test_bench_update_parts_times_each_part_against_dqn(run_json, capsys) -> None:
    result = run_json(
        ["bench", "update", "--parts", "--threads", "1", "--rounds", "1", "--inner", "1",
         "--batch", "4", "--json"],
    )  # fmt: skip
    assert result["settings"]["parts"] is True
    rows = {r["variant"]: r for r in result["rows"]}
    assert list(rows) == list(PARTS)
    assert all(r["ms"] > 0 and r["vs_plain"] > 0 for r in rows.values())
    assert rows[DQN]["vs_plain"] == 1.0 and rows[DQN]["loss_rel_diff"] == 0.0
    # Other parts learn another loss: nothing to compare it with.
    assert all(r["loss_rel_diff"] is None for name, r in rows.items() if name != DQN)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--threads", "0"], "--threads values must be positive"),
        (["--batch", "0"], "--batch must be positive"),
        (["--preset", "fast"], "unknown preset"),
        (["--threads", "x"], "--threads expects integers"),
        (["--parts", "--preset", "seed"], "--parts times its own presets"),
    ],
)
def test_bench_update_bad_input_is_one_line_exit_2(args, message, capsys) -> None:
    assert main(["bench", "update", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
