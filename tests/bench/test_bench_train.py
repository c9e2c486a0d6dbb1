"""``bench train``: smoke runs at tiny sizes. The shape of the output only, never the timings."""

from __future__ import annotations

import pytest

from atari_dqn.bench import train as train_bench
from atari_dqn.bench.course_loop import course_loop_segments
from atari_dqn.bench.train import (
    Counted,
    Row,
    TrainBenchSettings,
    child_segments,
    config_rows,
    once,
    run_rows,
    train_result,
    train_table,
)
from atari_dqn.config import Config, to_toml


@pytest.mark.slow
def test_bench_train_json(run_json) -> None:
    result = run_json(
        ["bench", "train", "--steps", "100", "--warmup", "0", "--buffer-size", "1000",
         "--threads", "1", "--json"],
    )  # fmt: skip
    s = result["settings"]
    assert s["steps"] == 100 and s["warmup"] == 0 and s["device"] == "cpu" and s["threads"] == 1
    assert s["measure_from"] == 100  # the first report at least 100 learning steps in
    assert [r["name"] for r in result["rows"]] == ["uniform", "prioritized"]
    for r in result["rows"]:
        assert r["steps_per_s"] > 0 and len(r["repeats"]) == 1
        assert r["replay_ratio"] == 8  # the seed preset: batch 32 / update every 4
        # the breakdown: every phase, none negative, their sum at most the measured total
        us = r["us_per_step"]
        assert set(us) == {"total", *result["phases"]}
        assert all(v >= 0 for v in us.values())
        assert us["update"] > 0 and us["eval"] == 0  # no evaluation inside the measurement
        parts = sum(v for k, v in us.items() if k not in ("total", "other"))
        assert parts <= us["total"] * (1 + 1e-9)
        assert parts + us["other"] == pytest.approx(us["total"])
    assert set(result["ratios"]) == {"prioritized/uniform"}
    assert result["ratios"]["prioritized/uniform"] > 0


def test_a_pqn_row_measures_whole_rollouts_after_its_first() -> None:
    """PQN reports once a rollout (here 4 envs x 32 steps = 128 steps): the clock starts at the
    first report past warm-up and ramp and runs whole rollouts covering ``steps``."""
    settings = TrainBenchSettings(steps=300, warmup=0)
    config = settings.config("preset", "pqn", 4)
    assert (config.num_envs, config.rollout_steps) == (4, 32)
    assert settings.window(config) == (128, 128 + 3 * 128)
    assert config.total_steps == 512
    assert config.eval_every == 512 + 128  # past the last rollout, which may end beyond 512
    late = TrainBenchSettings(steps=100, warmup=1000)  # 1000 + ramp 100 -> the report at 1152
    assert late.window(late.config("preset", "pqn", 4)) == (1152, 1280)
    dqn = settings.config("uniform", "laptop", 4)
    assert settings.window(dqn) == (100, 400)  # DQN reports every 100 steps
    # A row measures the preset as it trains ('auto' chosen on the host), or in one precision.
    assert dqn.bf16 == "auto"
    assert [settings.config("uniform", "laptop", 4, bf16=b).bf16 for b in (False, True)] == [
        "off",
        "on",
    ]


def test_a_run_row_measures_the_run_as_configured(tmp_path) -> None:
    """``--run DIR``: the run's own settings (replay, env count, n-step...), with only what the
    measurement needs changed (its length, no evaluation inside, ε at its end)."""
    own = Config(replay="prioritized", n_step=3, num_envs=8, lr=2e-4, buffer_size=5000)
    settings = TrainBenchSettings(steps=300, warmup=100)
    config = settings.config("preset", num_envs=0, base=own)
    assert (config.replay, config.n_step, config.num_envs, config.lr) == ("prioritized", 3, 8, 2e-4)
    assert (config.warmup_steps, config.total_steps, config.eps_decay) == (100, 500, 1)
    rows = config_rows(settings, presets=["laptop"], kinds=["uniform"], num_envs=[0],
                       runs=[("mine", own)])  # fmt: skip
    assert [r.name for r in rows] == ["laptop", "mine"]
    assert rows[1].note.startswith("run=mine replay=prioritized envs=8 ")


@pytest.mark.slow
def test_bench_train_of_a_run_directory(run_json, tmp_path) -> None:
    run = tmp_path / "my-run"
    run.mkdir()
    (run / "config.toml").write_text(to_toml(Config(buffer_size=1000, num_envs=2)))
    result = run_json(
        ["bench", "train", "--run", str(run), "--num-envs", "preset", "--steps", "100",
         "--warmup", "0", "--threads", "1", "--json"],
    )  # fmt: skip
    (row,) = result["rows"]
    assert row["name"] == "my-run"
    assert row["note"].startswith("run=my-run replay=uniform envs=2 ") and row["steps_per_s"] > 0


@pytest.mark.slow
def test_bench_train_runs_pqn_beside_dqn(run_json) -> None:
    result = run_json(
        ["bench", "train", "--algo", "pqn,dqn", "--preset", "laptop", "--replay", "preset",
         "--num-envs", "4", "--steps", "128", "--warmup", "0", "--buffer-size", "1000",
         "--threads", "1", "--json"],
    )  # fmt: skip
    rows = {r["name"]: r for r in result["rows"]}
    assert len(rows) == 2
    assert all(r["steps_per_s"] > 0 for r in rows.values())
    (pqn,) = [r for r in result["rows"] if "pqn" in r["note"]]
    assert "clock from step 128 to 256" in pqn["note"]
    assert pqn["us_per_step"]["eval"] == 0  # no evaluation inside the measurement
    assert pqn["replay_ratio"] == 2  # its epochs


def test_train_rows_are_an_open_list(monkeypatch) -> None:
    """Other rows (the course project's loop, vector envs) join the same table as segment
    iterators."""
    clock = [0.0]  # a fake perf_counter: each row's segments advance it by their own cost
    monkeypatch.setattr(train_bench.time, "perf_counter", lambda: clock[0])
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


def test_the_breakdown_is_per_step_and_leaves_the_rest_as_other(monkeypatch) -> None:
    """Rows that report their phases (Counted) get µs per step of each; the rest is other."""
    clock = [0.0]
    monkeypatch.setattr(train_bench.time, "perf_counter", lambda: clock[0])
    phases = {"act": 0.1, "env": 0.3, "sample": 0.0, "update": 0.4, "store": 0.05, "eval": 0.0}

    def segments():
        clock[0] += 5.0  # warm-up, not counted: its phases are not either
        yield Counted(0, dict.fromkeys(phases, 1.0))
        for _ in range(2):  # 100 steps in 1 s, of which 0.85 s in the phases
            clock[0] += 1.0
            yield Counted(100, phases)

    (res,) = run_rows([Row("a", segments, replay_ratio=8.0)])
    # 200 steps in 2 s: 10,000 µs a step; act 2 x 0.1 s / 200 = 1000 µs; other 0.15 s / 100
    assert res.steps_per_s == pytest.approx(100)
    assert res.us_per_step == pytest.approx({"total": 10_000, "act": 1000, "env": 3000,
                                             "sample": 0, "update": 4000, "store": 500,
                                             "eval": 0, "other": 1500})  # fmt: skip
    table = train_table(train_result(TrainBenchSettings(steps=10, warmup=0), [res]))
    assert "bound by" in table and "update 40%" in table


def test_child_segments_run_in_their_own_process_and_report_its_errors() -> None:
    import os

    assert list(child_segments(once, {"fn": os.getpid, "kwargs": {}})) != [os.getpid()]
    assert list(child_segments(once, {"fn": dict, "kwargs": {"a": 1}})) == [{"a": 1}]
    with pytest.raises(RuntimeError, match="bench row failed in its process: TypeError"):
        list(child_segments(once, {"fn": int, "kwargs": {"x": "z", "base": 10}}))


def test_bench_config_measures_learning_only() -> None:
    c = TrainBenchSettings(steps=3000, warmup=1000).config("prioritized")
    assert c.replay == "prioritized" and c.warmup_steps == 1000
    assert c.total_steps == 1100 + 3000 and c.eval_every > c.total_steps
    # N envs may end up to N - 1 steps past the total: still no evaluation
    c8 = TrainBenchSettings(steps=3000, warmup=1000).config("uniform", num_envs=8)
    assert c8.eval_every > c8.total_steps + 7


@pytest.mark.slow
def test_bench_train_course_loop_env_counts_and_ceilings_json(run_json) -> None:
    result = run_json(
        ["bench", "train", "--course-loop", "--replay", "uniform", "--num-envs", "1,2",
         "--steps", "100", "--warmup", "100", "--buffer-size", "2000", "--ceilings", "--json"],
    )  # fmt: skip
    assert [r["name"] for r in result["rows"]] == ["course loop", "atari-dqn N=1", "atari-dqn N=2"]
    assert all(r["steps_per_s"] > 0 for r in result["rows"])
    assert set(result["ratios"]) == {"atari-dqn N=1/course loop", "atari-dqn N=2/course loop"}
    c = result["ceilings"]
    assert set(c["env_steps_per_s"]) == {"N=1", "N=2"}
    assert set(c["update_ms"]) == {"per-tensor Adam, NCHW", "fused Adam, channels-last"}


def test_course_loop_counts_only_steps_after_measure_from() -> None:
    counted = list(
        course_loop_segments(
            env_id="BreakoutNoFrameskip-v4", warmup=50, measure_from=200, total=450, epsilon=0.1
        )
    )
    # Segments of 100 steps end at 100, 200, 300, 400 and the last 50 at 450.
    assert counted == [0, 0, 100, 100, 50]
