"""``bench checkpoint``: the shape of its output on a small replay (never its timings)."""

from __future__ import annotations

from pathlib import Path

from atari_dqn.cli import main

FRAME = 84 * 84


def test_bench_checkpoint_json(run_json, tmp_path: Path) -> None:
    args = ["bench", "checkpoint", "--capacity", "4000", "--more", "500", "--chunk", "512"]
    result = run_json([*args, "--dir", str(tmp_path), "--json"])
    rows = result["rows"]
    assert [r["what"] for r in rows] == [
        "10% full, first save",
        "50% full, first save",
        "100% full, first save",
        "+500 steps, next save",
    ]
    # Only the filled chunks (of 8), then only the 500 steps' (about 1, at most 2 across a
    # boundary, and 1 more when an episode start falls in the next one).
    assert [r["chunks"] for r in rows] == [1, 4, 8, 8]
    assert [r["chunks_written"] for r in rows[:3]] == [1, 4, 8]
    assert 1 <= rows[3]["chunks_written"] <= 2
    # 400 and 4000 exactly; 50%: 1600 steps more and 4 episode starts (one per 400 steps)
    assert [r["filled"] for r in rows[:3]] == [400, 2004, 4000]
    for r in rows:
        # The old layout: every slot's frame, whatever the fill.
        assert r["old_bytes"] > 4000 * FRAME
        assert r["bytes_ratio"] == r["old_bytes"] / r["new_bytes"]
    # The new one, on a first save: the filled slots' frames and the same rest (agent,
    # per-slot arrays) each time, up to the chunk files' headers.
    rest = [r["new_bytes"] - r["filled"] * FRAME for r in rows[:3]]
    assert 0 < rest[0] and max(rest) - min(rest) < 8 * 1024
    assert rows[0]["new_bytes"] < rows[1]["new_bytes"] < rows[2]["new_bytes"]
    assert rows[3]["new_bytes"] < rows[1]["new_bytes"]
    assert list(tmp_path.iterdir()) == []  # the bench's files are gone


def test_bench_checkpoint_with_env_rings(run_json, tmp_path: Path) -> None:
    args = ["bench", "checkpoint", "--capacity", "8192", "--envs", "4", "--more", "400"]
    result = run_json([*args, "--dir", str(tmp_path), "--json"])
    assert (result["envs"], result["chunk_slots"], result["chunk_slots_used"]) == (4, 16384, 1024)
    rows = result["rows"]
    # Rings of 2048 slots, 2 chunks each: 10% is 205 slots a ring (its first chunk); 50%, 1024
    # steps a ring and its episode starts (into its second)
    assert [r["chunks"] for r in rows] == [4, 8, 8, 8]
    # 100 steps an env, 25 more frames than that at most: one chunk a ring, or two across
    assert 4 <= rows[3]["chunks_written"] <= 8
    assert list(tmp_path.iterdir()) == []


def test_bench_checkpoint_refuses_bad_input(tmp_path: Path, capsys) -> None:
    assert main(["bench", "checkpoint", "--capacity", "1000", "--envs", "3"]) == 2
    assert "--capacity 1000 is not a multiple of --envs 3" in capsys.readouterr().err
    assert main(["bench", "checkpoint", "--capacity", "0"]) == 2
    assert "--capacity must be positive" in capsys.readouterr().err
    assert main(["bench", "checkpoint", "--capacity", "10000000000000"]) == 2
    assert "GB is available" in capsys.readouterr().err
    assert main(["bench", "checkpoint", "--dir", str(tmp_path / "nowhere")]) == 2
    assert "is not a directory" in capsys.readouterr().err
