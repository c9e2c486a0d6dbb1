"""The local Ray that ``--actors`` starts is never open to the network without authentication:
the listening sockets of a tiny ``--actors 2`` run's processes, read from /proc (Linux)."""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from atari_dqn.cli import main
from tiny import tiny

TINY = [
    *tiny(replay="prioritized", total_steps=200, warmup_steps=100, update_every=None,
         target_update=None, eval_every=200, eval_max_frames=400, batch_size=16, eps_decay=None,
         device="cpu"),
    "--quiet", "--actors", "2", "--actor-block", "20",
]  # fmt: skip


def descendants(root: int) -> set[int]:
    """``root`` and every process under it (Ray's GCS, raylet and workers are)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo += children.get(pid, [])
    return found


def listening(root: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket that the processes under ``root`` listen on."""
    inodes = set()
    for pid in descendants(root):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    found = set()
    for name, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        try:
            lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            address, port = fields[1].split(":")
            raw = bytes.fromhex(address)  # 32-bit words in host (little-endian) order
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.add((socket.inet_ntop(family, raw), int(port, 16)))
    return found


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads /proc (Linux)")
def test_the_local_ray_of_an_actors_run_is_open_only_with_authentication(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "atari_dqn", "train", *TINY, "--out", str(tmp_path / "run")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    seen: set[tuple[str, int]] = set()
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline:
        seen |= listening(proc.pid)
        time.sleep(0.2)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert seen, "no listening socket of Ray seen"
    public = sorted(a for a, _ in seen if not ipaddress.ip_address(a).is_loopback)
    if public:  # Ray's gRPC servers listen on every interface: then only with a token
        assert "Token authentication is enabled for this Ray cluster" in stderr, (public, stderr)


@pytest.mark.parametrize(
    "version, auth, words",
    [
        ("2.58.0", None, "Ray 2.58.0 starts a local cluster that anyone on the network"),
        ("2.60.0", "disabled", "RAY_AUTH_MODE=disabled would let anyone on the network"),
    ],
)
def test_a_local_ray_without_authentication_is_refused_before_any_file(
    version: str, auth: str | None, words: str, tmp_path: Path, monkeypatch, capsys
) -> None:
    pytest.importorskip("ray")
    from importlib import metadata

    real = metadata.version
    monkeypatch.setattr(metadata, "version", lambda n: version if n == "ray" else real(n))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    if auth is not None:
        monkeypatch.setenv("RAY_AUTH_MODE", auth)
    out = tmp_path / "run"
    assert main(["train", *TINY, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("atari-dqn: error: ") and "\n" not in err and words in err, err
    assert not out.exists()
    # Joining a cluster of one's own is the cluster's business, not refused here.
    from atari_dqn.distributed.settings import check_local_ray

    check_local_ray("auto")
