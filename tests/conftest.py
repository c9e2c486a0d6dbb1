"""Suite-wide fixtures and guards: the shared reference runs, the torch thread count, Ray's
tests kept on one xdist worker."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from filelock import FileLock

from atari_dqn.cli import main
from tiny import TINY_RUN

if os.environ.get("PYTEST_XDIST_WORKER"):
    # One torch (OpenMP) thread per xdist worker, in it and in the processes its tests start:
    # as many workers as cores, each with torch's default of a thread per core, oversubscribe
    # the cores, and OpenMP threads that wait for each other then spin instead of working.
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _torch_threads_restored() -> Iterator[None]:
    """Each test starts with the process's torch thread count.

    Float sums depend on how many threads split them, so a test that compares an in-process run
    with a subprocess run (same seed) needs both at the default count; some code under test sets
    the count for its own process (an Ape-X actor: one thread) and would leak it into the
    next test on the same xdist worker.
    """
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The Ray tests share one Ray (a module fixture) and its 2 CPUs: one worker runs them all
    (``--dist loadgroup``; every other test goes to whichever worker is free)."""
    for item in items:
        if item.get_closest_marker("ray") is not None:
            item.add_marker(pytest.mark.xdist_group("ray"))


class SharedRuns:
    """Reference runs trained once per test session, by whichever xdist worker asks first; the
    others wait on a file lock and read the same directory. Read-only: copy one to change it."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def get(self, name: str, argv: list[str]) -> Path:
        out = self.root / name
        done = self.root / f"{name}.done"
        with FileLock(str(self.root / f"{name}.lock")):
            if done.exists():
                if done.read_text() != " ".join(argv):
                    raise AssertionError(f"shared run {name!r} asked for with other flags")
            else:
                if out.exists():  # a worker that died half-way
                    shutil.rmtree(out)
                assert main(["train", *argv, "--quiet", "--out", str(out)]) == 0
                done.write_text(" ".join(argv))
        return out


@pytest.fixture(scope="session")
def shared_runs(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> SharedRuns:
    base = tmp_path_factory.getbasetemp()
    # Under xdist each worker's base is a folder of the session's; alone, the base is the session's.
    root = (base.parent if worker_id != "master" else base) / "shared-runs"
    root.mkdir(exist_ok=True)
    return SharedRuns(root)


@pytest.fixture(scope="session")
def tiny_run(shared_runs: SharedRuns) -> Path:
    """The tiny run, seed 1: two evaluations (120, 240), models, a checkpoint with its replay."""
    return shared_runs.get("tiny-s1", [*TINY_RUN, "--seed", "1"])
