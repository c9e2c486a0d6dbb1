"""``bench replay``: smoke runs at tiny sizes. The shape of the output only, never the timings."""

from __future__ import annotations

from atari_dqn.cli import main

ROW_KEYS = {
    "replay", "capacity", "frame_shape", "add_us", "draw_us", "gather_us", "sample_us",
    "update_us", "draw_update_us", "tree_draw_update_us", "bytes_per_transition", "fill_s",
}  # fmt: skip


def test_bench_replay_json(run_json) -> None:
    result = run_json(
        ["bench", "replay", "--capacity", "2000", "--batch", "8", "--reps", "3", "--json"]
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
    (course,) = result["course_fenwick"]
    assert course["replay"] == "course Fenwick" and course["capacity"] == 2000
    assert course["draw_us"] > 0 and course["update_us"] > 0 and course["draw_update_us"] > 0
    assert set(result["speedup_vs_course"]) == set(result["tree_speedup_vs_course"]) == {"2000"}
    assert result["speedup_vs_course"]["2000"] > 0
    assert set(result["goals"]) == {"draw_update_us_max", "speedup_min"}


def test_bench_replay_table_labels_every_number(capsys) -> None:
    assert main(["bench", "replay", "--capacity", "1000", "--batch", "4", "--reps", "1"]) == 0
    out = capsys.readouterr().out
    for word in ("add", "draw", "gather", "sample", "update", "B/transition", "course Fenwick"):
        assert word in out
    assert "x faster" in out and "84x84" in out
