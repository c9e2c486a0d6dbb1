"""`atari-dqn bench`: smoke runs at tiny sizes. The shape of the output only, never the timings."""

from __future__ import annotations

import json

import pytest

from atari_dqn import bench
from atari_dqn.bench import Row, TrainBenchSettings, run_rows, train_result, train_table
from atari_dqn.cli import main
from atari_dqn.updatebench import VARIANTS

ROW_KEYS = {
    "replay", "capacity", "frame_shape", "add_us", "draw_us", "gather_us", "sample_us",
    "update_us", "draw_update_us", "tree_draw_update_us", "bytes_per_transition", "fill_s",
}  # fmt: skip


def run_json(args: list[str], capsys) -> dict:
    assert main(args) == 0
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 1  # one JSON object, nothing else on stdout
    return json.loads(out)


def test_bench_replay_json(capsys) -> None:
    result = run_json(
        ["bench", "replay", "--capacity", "2000", "--batch", "8", "--reps", "3", "--json"], capsys
    )
    assert result["batch"] == 8 and result["reps"] == 3
    rows = result["rows"]
    assert [(r["replay"], r["capacity"]) for r in rows] == [
        ("uniform", 2000),
        ("prioritized", 2000),
    ]
    for r in rows:
        assert set(r) == ROW_KEYS
        assert r["frame_shape"] == [84, 84]
        for key in ROW_KEYS - {"replay", "capacity", "frame_shape", "tree_draw_update_us"}:
            assert r[key] > 0, key
    assert rows[0]["tree_draw_update_us"] is None and rows[1]["tree_draw_update_us"] > 0
    # The sum tree's bytes are on top of the storage's; 84x84 frames dominate both.
    assert 84 * 84 < rows[0]["bytes_per_transition"] < rows[1]["bytes_per_transition"] < 7200
    (seed,) = result["seed_fenwick"]
    assert seed["replay"] == "seed Fenwick" and seed["capacity"] == 2000
    assert seed["draw_us"] > 0 and seed["update_us"] > 0 and seed["draw_update_us"] > 0
    assert set(result["speedup_vs_seed"]) == set(result["tree_speedup_vs_seed"]) == {"2000"}
    assert result["speedup_vs_seed"]["2000"] > 0
    assert set(result["goals"]) == {"draw_update_us_max", "speedup_min"}


def test_bench_replay_table_labels_every_number(capsys) -> None:
    assert main(["bench", "replay", "--capacity", "1000", "--batch", "4", "--reps", "1"]) == 0
    out = capsys.readouterr().out
    for word in ("add", "draw", "gather", "sample", "update", "B/transition", "seed Fenwick"):
        assert word in out
    assert "x faster" in out and "84x84" in out


def test_bench_train_json(capsys) -> None:
    result = run_json(
        ["bench", "train", "--steps", "100", "--warmup", "0", "--buffer-size", "1000",
         "--threads", "1", "--json"],
        capsys,
    )  # fmt: skip
    s = result["settings"]
    assert s["steps"] == 100 and s["warmup"] == 0 and s["device"] == "cpu" and s["threads"] == 1
    assert s["measure_from"] == 100  # the first report at least 100 learning steps in
    assert [r["name"] for r in result["rows"]] == ["uniform", "prioritized"]
    for r in result["rows"]:
        assert r["steps_per_s"] > 0 and len(r["repeats"]) == 1
    assert set(result["ratios"]) == {"prioritized/uniform"}
    assert result["ratios"]["prioritized/uniform"] > 0


def test_train_rows_are_an_open_list(monkeypatch) -> None:
    """Other rows (the seed's loop, vector envs) join the same table as segment iterators."""
    clock = [0.0]  # a fake perf_counter: each row's segments advance it by their own cost
    monkeypatch.setattr(bench.time, "perf_counter", lambda: clock[0])
    order = []

    def row(name: str, seconds_per_step: float, warmup_segments: int = 1) -> Row:
        def segments():
            for _ in range(warmup_segments):
                order.append(name)
                clock[0] += 5.0  # building, warm-up: not counted
                yield 0
            for _ in range(3):
                order.append(name)
                clock[0] += 10 * seconds_per_step
                yield 10

        return Row(name, segments)

    rows = [row("a", 0.001), row("b", 0.002, warmup_segments=2), row("c", 0.0005)]
    result = train_result(TrainBenchSettings(steps=10, warmup=0), run_rows(rows, repeats=2))
    assert order[:6] == ["a", "b", "c", "a", "b", "c"]  # side by side, a segment each in turn
    assert [r["steps_per_s"] for r in result["rows"]] == pytest.approx([1000, 500, 2000])
    assert result["rows"][1]["repeats"] == pytest.approx([500, 500])
    assert result["ratios"] == pytest.approx({"b/a": 0.5, "c/a": 2.0})
    table = train_table(result)
    assert "vs a" in table and "0.500" in table and "2.000" in table


def test_child_segments_run_in_their_own_process_and_report_its_errors() -> None:
    import os

    assert list(bench.child_segments(bench.once, {"fn": os.getpid, "kwargs": {}})) != [os.getpid()]
    assert list(bench.child_segments(bench.once, {"fn": dict, "kwargs": {"a": 1}})) == [{"a": 1}]
    with pytest.raises(RuntimeError, match="bench row failed in its process: TypeError"):
        list(bench.child_segments(bench.once, {"fn": int, "kwargs": {"x": "z", "base": 10}}))


def test_bench_config_measures_learning_only() -> None:
    c = TrainBenchSettings(steps=3000, warmup=1000).config("prioritized")
    assert c.replay == "prioritized" and c.warmup_steps == 1000
    assert c.total_steps == 1100 + 3000 and c.eval_every > c.total_steps


@pytest.mark.parametrize(
    "args, message",
    [
        (["replay", "--capacity", "0"], "--capacity must be positive"),
        (["replay", "--batch", "-3"], "--batch must be positive"),
        (["replay", "--capacity", "100", "--batch", "64"], "too small for --batch"),
        (["train", "--steps", "0"], "--steps must be positive"),
        (["train", "--warmup", "-1"], "--warmup must be >= 0"),
        (["train", "--replay", "uniform,fifo"], "unknown replay kind 'fifo'"),
        (["train", "--replay", ","], "--replay needs at least one of"),
        (["train", "--device", "tpu"], "--device must be auto, cpu, cuda or cuda:N"),
    ],
)
def test_bench_bad_input_is_one_line_exit_2(args: list[str], message: str, capsys) -> None:
    assert main(["bench", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_bench_needs_a_subcommand(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["bench"])
    assert exc.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_bench_train_seed_loop_env_counts_and_ceilings_json(capsys) -> None:
    result = run_json(
        ["bench", "train", "--seed-loop", "--replay", "uniform", "--num-envs", "1,2",
         "--steps", "100", "--warmup", "100", "--buffer-size", "2000", "--ceilings", "--json"],
        capsys,
    )  # fmt: skip
    assert [r["name"] for r in result["rows"]] == ["seed loop", "atari-dqn N=1", "atari-dqn N=2"]
    assert all(r["steps_per_s"] > 0 for r in result["rows"])
    assert set(result["ratios"]) == {"atari-dqn N=1/seed loop", "atari-dqn N=2/seed loop"}
    c = result["ceilings"]
    assert set(c["env_steps_per_s"]) == {"N=1", "N=2"}
    assert set(c["update_ms"]) == {"per-tensor Adam, NCHW", "fused Adam, channels-last"}


def test_bench_update_times_every_variant_and_compares_it_with_the_plain_path(capsys) -> None:
    result = run_json(
        ["bench", "update", "--threads", "1", "--rounds", "1", "--inner", "1", "--batch", "4",
         "--json"],
        capsys,
    )  # fmt: skip
    rows = {r["variant"]: r for r in result["rows"]}
    assert list(rows) == list(VARIANTS)
    assert all(r["threads"] == 1 and r["ms"] > 0 for r in rows.values())
    plain = rows["per-tensor Adam, NCHW (the seed's)"]
    assert plain["vs_plain"] == 1.0 and plain["loss_rel_diff"] == 0.0
    # Fused Adam changes nothing in the first update; channels-last only float rounding.
    assert rows["fused Adam, NCHW"]["td_max_abs_diff"] == 0.0
    assert rows["fused Adam, channels-last (default)"]["td_max_abs_diff"] < 1e-4
    assert rows["default + --bf16"]["td_max_abs_diff"] > 0.0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--threads", "0"], "--threads values must be positive"),
        (["--batch", "0"], "--batch must be positive"),
        (["--preset", "fast"], "unknown preset"),
        (["--threads", "x"], "--threads expects integers"),
    ],
)
def test_bench_update_bad_input_is_one_line_exit_2(args, message, capsys) -> None:
    assert main(["bench", "update", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_seed_loop_counts_only_steps_after_measure_from() -> None:
    counted = list(
        bench.seed_loop_segments(
            env_id="BreakoutNoFrameskip-v4", warmup=50, measure_from=200, total=450, epsilon=0.1
        )
    )
    # Segments of 100 steps end at 100, 200, 300, 400 and the last 50 at 450.
    assert counted == [0, 0, 100, 100, 50]


def test_bench_memory_json(capsys) -> None:
    result = run_json(
        ["bench", "memory", "--steps", "700", "--buffer-size", "300", "--json"], capsys
    )
    assert result["replay_full_at"] == 330
    steps = [p["step"] for p in result["rss"]]
    assert steps == sorted(steps) and steps[0] >= 330 and steps[-1] == 700
    assert all(p["bytes"] > 0 for p in result["rss"])


def test_bench_memory_needs_the_replay_to_fill(capsys) -> None:
    assert main(["bench", "memory", "--steps", "100", "--buffer-size", "300"]) == 2
    assert "must exceed --buffer-size" in capsys.readouterr().err
