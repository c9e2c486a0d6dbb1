"""Memory checked before allocating: the estimate, worked by hand, and the refusal."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from atari_dqn import build
from atari_dqn.cli import main
from atari_dqn.config import Config
from atari_dqn.replay.storage import FrameStorage
from atari_dqn.replay.sum_tree import SumTree
from tiny import TINY_RUN


def test_estimates_match_what_is_allocated() -> None:
    # 84*84 = 7056 bytes of frame plus actions, boot, terminal, pos, ready (1 each), returns (4)
    assert FrameStorage.nbytes_for(1000) == 1000 * 7065 == FrameStorage(1000).nbytes
    assert (
        FrameStorage.nbytes_for(50, (6, 5))
        == 50 * 39
        == FrameStorage(50, frame_shape=(6, 5)).nbytes
    )
    # 2 * 2^10 float64 nodes for 1000 leaves (rounded up to 1024), and exactly 2^10 for 1024
    assert SumTree.nbytes_for(1000) == 16384 == SumTree(1000).nbytes
    assert SumTree.nbytes_for(1024) == SumTree(1024).nbytes == 16384
    assert SumTree.nbytes_for(1025) == SumTree(1025).nbytes == 32768


def test_memory_need_of_a_1m_replay() -> None:
    net = build.build_network(Config(), 3)
    weights = sum(p.numel() * 4 for p in net.parameters())
    need = build.memory_need(Config(buffer_size=1_000_000), 3)
    assert need.replay == 7_065_000_000 and need.networks == 5 * weights
    prioritized = build.memory_need(Config(buffer_size=1_000_000, replay="prioritized"), 3)
    assert prioritized.replay == 7_065_000_000 + 2 * 2**20 * 8
    # With 3 envs the capacity is rounded down to a multiple of 3, as build_replay does.
    assert build.memory_need(Config(buffer_size=1000, num_envs=3), 3).replay == 999 * 7065


def test_available_memory_reads_meminfo() -> None:
    available = build.available_memory()
    if not Path("/proc/meminfo").exists():
        pytest.skip("no /proc/meminfo on this system: nothing is refused")
    assert available is not None and available > 0


GB = r"(\d+\.\d) GB"


def test_a_replay_larger_than_memory_is_refused_before_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setattr(build, "available_memory", lambda: 24_000_000_000)
    out = tmp_path / "run"
    code = main(["train", *TINY_RUN, "--buffer-size", "10000000", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    m = re.search(f"--buffer-size 10000000 needs {GB} of memory .* but {GB} is available", err)
    assert m is not None, err
    assert m.groups() == ("70.7", "24.0")  # 10^7 slots x 7065 bytes, plus 34 MB of networks
    assert "--force-memory" in err
    assert not out.exists()


def test_force_memory_starts_anyway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build, "available_memory", lambda: 1_000)  # less than any run needs
    out = tmp_path / "run"
    args = ["train", *TINY_RUN, "--total-steps", "40", "--eval-every", "40", "--out", str(out)]
    assert main([*args, "--quiet"]) == 2 and not out.exists()
    assert main([*args, "--quiet", "--force-memory"]) == 0
    assert (out / "rewards.txt").is_file()
    resume = ["train", "--resume", str(out), "--total-steps", "80", "--quiet"]
    assert main(resume) == 2  # resume is checked too
    assert main([*resume, "--force-memory"]) == 0


def test_oversized_replay_in_a_real_process_exits_2(tmp_path: Path) -> None:
    """As a user types it: 10^9 slots (7 TB) on any machine; exit 2, one line, no run dir."""
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "atari_dqn", "train", "--buffer-size", "1000000000"]
        + ["--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert re.fullmatch(
        f"atari-dqn: error: --buffer-size 1000000000 needs 7065.0 GB of memory \\(replay "
        f"7065.0 GB, networks 33.7 MB\\) but {GB} is available; .*--force-memory.*\n",
        proc.stderr,
    ), proc.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("bf16", "device", "native", "algo", "runs_in_bf16"),
    [
        ("off", "cpu", True, "dqn", False),
        ("on", "cpu", False, "dqn", True),  # asked for: emulated, slow, but what was asked
        ("auto", "cpu", True, "dqn", True),
        ("auto", "cpu", False, "dqn", False),
        ("auto", "cpu", None, "dqn", False),  # /proc/cpuinfo unreadable: float32
        ("auto", "cuda", True, "dqn", False),  # not measured on a GPU: float32
        ("auto", "cpu", True, "pqn", False),  # PQN's update has no bf16 path
    ],
)
def test_bf16_auto_is_bf16_only_on_a_cpu_that_does_it_in_hardware(
    bf16: str, device: str, native: bool | None, algo: str, runs_in_bf16: bool
) -> None:
    config = Config(bf16=bf16, algo=algo)
    assert build.bf16_in_update(config, torch.device(device), native) is runs_in_bf16


def test_the_agent_is_built_with_the_precision_auto_chose(monkeypatch) -> None:
    for native in (True, False):
        monkeypatch.setattr(build, "host_info", lambda native=native: {"bf16_native": native})
        agent = build.build_agent(Config(bf16="auto"), 4, torch.device("cpu"))
        assert agent.bf16 is native
