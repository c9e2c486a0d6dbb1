"""Runs that survive full disks and each other: failed writes, and one process per run.

A failed write is made for real, by the kernel: the training child runs under ``RLIMIT_FSIZE``
(with SIGXFSZ ignored, so a write past the limit fails with EFBIG instead of killing it), set
either from the start, between the sizes of the files so that the first file over it is the one
meant, or at the moment the run opens the temporary file of the write meant (an audit hook in
the child; the code under test is not changed). As root, a few-MB tmpfs also fills up for real
(ENOSPC). Each failure: exit 1, one line naming the file, every earlier file byte-identical, the
last good checkpoint intact; ``--resume`` without the limit then ends exactly as an
uninterrupted run.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from atari_dqn.artifacts import LOCK_NAME, RunInUseError, RunLock, atomic_write_text
from atari_dqn.checkpoint import CHECKPOINT_NAME, read_checkpoint_state
from atari_dqn.cli import main
from tiny import same_run, tiny, weights

TINY = [*tiny(total_steps=None, update_every=None, eval_max_frames=400, buffer_size=400,
             eps_decay=200), "--seed", "3", "--quiet"]  # fmt: skip
TOTAL = 360  # evaluations at 120, 240, 360; the writes made to fail are those of step 240


@pytest.fixture(scope="session")
def reference(shared_runs) -> Path:
    """The uninterrupted run."""
    return shared_runs.get("faults-reference", [*TINY, "--total-steps", str(TOTAL)])


@pytest.fixture(scope="session")
def first_part(shared_runs) -> Path:
    """The same run trained to its first evaluation and checkpoint (step 120)."""
    return shared_runs.get("faults-first-part", [*TINY, "--total-steps", "120"])


def snapshot(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run.iterdir()) if p.is_file()}


# The child: ignore SIGXFSZ; with LIMIT_AT, set RLIMIT_FSIZE to 0 when the process opens a file
# whose name starts with it (the temporary sibling of an atomic write: ".rewards.txt.").
CHILD = textwrap.dedent(
    """
    import os, resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    at = os.environ.get("LIMIT_AT")
    def hook(event, args):
        name = args[0] if event == "open" and isinstance(args[0], str) else ""
        if os.path.basename(name).startswith(at):
            resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))
    if at:
        sys.addaudithook(hook)
    from atari_dqn.cli import main
    raise SystemExit(main(sys.argv[1:]))
    """
)


def train_child(args: list[str], *, fsize: int | None = None, limit_at: str | None = None):
    def limit() -> None:
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, resource.RLIM_INFINITY))

    env = {**os.environ, "LIMIT_AT": limit_at or ""}
    return subprocess.run(
        [sys.executable, "-c", CHILD, "train", *args],
        preexec_fn=limit,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def failed_once(run: Path, proc, name: str) -> None:
    """Exit 1, one line naming ``run/name``, the checkpoint of step 120, no temporary file."""
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert line.startswith(f"atari-dqn: error: cannot write {run / name}: File too large ("), line
    assert " free on its filesystem); " in line, line
    assert "the checkpoint at step 120 are intact" in line, line
    assert line.endswith(f"then continue with: atari-dqn train --resume {run}"), line
    assert read_checkpoint_state(run / CHECKPOINT_NAME)["loop"]["step"] == 120
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
    print(line)


def unchanged_except(before: dict[str, bytes], run: Path, grown: set[str], replaced: set[str]):
    """Every file of ``before`` has its bytes still, except: ``grown`` ones (appended to: the
    old bytes are a prefix), ``replaced`` ones (rewritten whole, by design) and the files every
    resume rewrites (config.toml) or appends to (games.csv, sessions.csv, TensorBoard's)."""
    after = snapshot(run)
    for name, data in before.items():
        if name in replaced or name == "config.toml":
            continue
        if name in grown or name in ("games.csv", "sessions.csv") or name.startswith("events.out"):
            assert after[name].startswith(data), name
        else:
            assert after[name] == data, name


def resumes_to_the_end(run: Path, reference: Path) -> None:
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    same_run(reference, run)


def part(first_part: Path, tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    run = tmp_path / "run"
    shutil.copytree(first_part, run)
    return run, snapshot(run)


def sizes(files: dict[str, bytes]) -> tuple[int, int, int]:
    """Largest model file, largest checkpoint file, largest of the rest."""
    model = max(len(b) for n, b in files.items() if n.startswith("model_"))
    ckpt = max(len(b) for n, b in files.items() if n.startswith("checkpoint"))
    rest = max(len(b) for n, b in files.items() if not n.startswith(("model_", "checkpoint")))
    return model, ckpt, rest


# ---------------------------------------------------------------------- failed writes
@pytest.mark.slow
def test_a_failed_model_write(first_part: Path, reference: Path, tmp_path: Path) -> None:
    run, before = part(first_part, tmp_path)
    model, _, rest = sizes(before)
    limit = model // 2  # every other file of steps 120..240 stays far below it
    assert rest < limit // 100
    proc = train_child(["--resume", str(run), "--total-steps", str(TOTAL), "--quiet"], fsize=limit)
    failed_once(run, proc, "model_002.safetensors")
    assert not (run / "model_002.safetensors").exists()
    assert (run / "rewards.txt").read_text().splitlines()[1].split()[:2] == ["2", "240"]
    unchanged_except(before, run, grown={"rewards.txt"}, replaced=set())
    resumes_to_the_end(run, reference)


@pytest.mark.slow
def test_a_failed_rewards_write(first_part: Path, reference: Path, tmp_path: Path) -> None:
    run, before = part(first_part, tmp_path)
    args = ["--resume", str(run), "--total-steps", str(TOTAL), "--quiet"]
    proc = train_child(args, limit_at=".rewards.txt.")
    failed_once(run, proc, "rewards.txt")
    unchanged_except(before, run, grown=set(), replaced=set())  # rewards.txt too
    assert not (run / "model_002.safetensors").exists()
    resumes_to_the_end(run, reference)


@pytest.mark.slow
def test_a_failed_checkpoint_write(first_part: Path, reference: Path, tmp_path: Path) -> None:
    run, before = part(first_part, tmp_path)
    model, ckpt, _ = sizes(before)
    limit = (model + ckpt) // 2  # the models of step 240 fit, its checkpoint does not
    assert model < limit < ckpt
    proc = train_child(["--resume", str(run), "--total-steps", str(TOTAL), "--quiet"], fsize=limit)
    failed_once(run, proc, CHECKPOINT_NAME)
    assert (run / "model_002.safetensors").is_file()  # written before the checkpoint
    # model_best.safetensors is replaced whole when step 240 scores better (by design).
    unchanged_except(before, run, grown={"rewards.txt"}, replaced={"model_best.safetensors"})
    resumes_to_the_end(run, reference)


@pytest.fixture()
def tmpfs(tmp_path: Path):
    """``tmpfs(size)``: a tmpfs of ``size`` ("12m") mounted for the test (root only)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (the RLIMIT_FSIZE tests cover the rest)")
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        path = tmp_path / f"tmpfs{len(mounted)}"
        path.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)])
        if done.returncode != 0:
            pytest.skip("mount -t tmpfs refused here (a container without CAP_SYS_ADMIN?)")
        mounted.append(path)
        return path

    yield mount
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.mark.slow
def test_a_full_disk(first_part: Path, tmpfs, capsys) -> None:
    """A real ENOSPC: a run on a 12 MB tmpfs fills it with its first models; the message gives
    the free space, and the run directory keeps only whole files."""
    run = tmpfs("12m") / "run"
    code = main(["train", *TINY, "--total-steps", "120", "--out", str(run)])
    err = capsys.readouterr().err
    assert code == 1, err
    assert len(err.strip().splitlines()) == 1, err
    assert "No space left on device (" in err and " free on its filesystem)" in err, err
    assert "no checkpoint to continue from yet; free some space, then start again" in err
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
    assert (run / "config.toml").read_bytes() == (first_part / "config.toml").read_bytes()
    for name in ("model_001.safetensors", "model_best.safetensors"):
        if (run / name).exists():  # whole, or absent (safetensors orders metadata at random)
            assert weights(run / name) == weights(first_part / name), name
    print(err.strip())


def test_a_read_only_filesystem(first_part: Path, tmpfs, capsys) -> None:
    """EROFS: a run on a filesystem remounted read-only cannot resume (its first write is its
    lock's pid); exit 1, one line, every file as it was."""
    mount = tmpfs("128m")
    run = mount / "run"
    shutil.copytree(first_part, run)
    before = snapshot(run)
    if subprocess.run(["mount", "-o", "remount,ro", str(mount)]).returncode != 0:
        pytest.skip("remounting the tmpfs read-only was refused")
    code = main(["train", "--resume", str(run), "--total-steps", "240", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert len(err.strip().splitlines()) == 1, err
    assert f"cannot write {run / LOCK_NAME}: Read-only file system (" in err, err
    assert "the checkpoint at step 120 are intact; make the filesystem writable, then" in err
    assert snapshot(run) == before
    print(err.strip())


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    """atomic_write_text past an 8-byte limit: WriteError naming the file (not its temporary
    sibling), the old content kept, the temporary file gone."""
    path = tmp_path / "rewards.txt"
    atomic_write_text(path, "  1      120 0.0\n")
    code = textwrap.dedent(
        f"""
        import signal, resource
        from atari_dqn.artifacts import WriteError, atomic_write_text
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (8, resource.RLIM_INFINITY))
        try:
            atomic_write_text({str(path)!r}, "  1      120 0.0\\n  2      240 1.0\\n")
        except WriteError as exc:
            print(exc)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"cannot write {path}: File too large ("), done.stdout
    assert path.read_text() == "  1      120 0.0\n"
    assert [p.name for p in tmp_path.iterdir()] == ["rewards.txt"]


# ---------------------------------------------------------------------- one process per run
def hold_lock(run: Path) -> subprocess.Popen:
    """A child process that takes the run's lock and keeps it until it is killed."""
    code = (
        "import sys, time\nfrom atari_dqn.artifacts import RunLock\n"
        f"lock = RunLock.acquire({str(run)!r})\nprint('locked', flush=True)\ntime.sleep(600)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline() == "locked\n"
    return child


def refused(args: list[str], pid: int, capsys) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert f"is in use by process {pid} " in err, err


@pytest.mark.slow
def test_a_run_in_use_is_refused_and_untouched(first_part: Path, tmp_path: Path, capsys) -> None:
    run, before = part(first_part, tmp_path)
    stamps = {p.name: p.stat().st_mtime_ns for p in run.iterdir() if p.name != LOCK_NAME}
    holder = hold_lock(run)
    try:
        assert (run / LOCK_NAME).read_text() == f"{holder.pid}\n"
        refused(
            ["train", "--resume", str(run), "--total-steps", "240", "--quiet"], holder.pid, capsys
        )
        refused(["train", *TINY, "--out", str(run)], holder.pid, capsys)
        refused(["train", *TINY, "--out", str(run), "--force"], holder.pid, capsys)
        with pytest.raises(RunInUseError, match=f"in use by process {holder.pid} "):
            RunLock.acquire(run)
        # Readers need no lock: evaluate and plot a run in progress.
        assert main(["evaluate", str(run), "--episodes", "1", "--max-frames", "200"]) == 0
        png = tmp_path / "curves.png"
        assert main(["plot", str(run), "--out", str(png)]) == 0 and png.is_file()
        capsys.readouterr()
        assert snapshot(run) == {**before, LOCK_NAME: f"{holder.pid}\n".encode()}
        assert {p.name: p.stat().st_mtime_ns for p in run.iterdir() if p.name in stamps} == stamps
    finally:
        holder.kill()  # SIGKILL: the kernel releases the lock
        holder.wait()
    # A killed holder leaves its pid in the file, and no lock: the run resumes.
    assert (run / LOCK_NAME).read_text() == f"{holder.pid}\n"
    RunLock.check(run)
    assert main(["train", "--resume", str(run), "--total-steps", "240", "--quiet"]) == 0
    assert (run / LOCK_NAME).read_text() == ""  # released at the end, pid cleared


@pytest.mark.slow
def test_the_lock_is_held_while_training_and_released_after(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "atari_dqn", "train", *TINY, "--total-steps", "240",
         "--out", str(run)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not (run / "config.toml").exists():  # written under the lock, before training
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGSTOP)  # (so it cannot end before the check)
    try:
        with pytest.raises(RunInUseError, match=f"in use by process {proc.pid} "):
            RunLock.acquire(run)
    finally:
        proc.send_signal(signal.SIGCONT)
        _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    with RunLock.acquire(run) as lock:  # released by the finished run
        assert lock.held and (run / LOCK_NAME).read_text() == f"{os.getpid()}\n"
    assert not lock.held


def test_the_python_api_takes_the_lock_too(first_part: Path, tmp_path: Path) -> None:
    from atari_dqn import check_resume, resume_run, start_run
    from atari_dqn.config import Config

    run, before = part(first_part, tmp_path)
    target = check_resume(run, {"total_steps": 240})
    holder = hold_lock(run)
    try:
        with pytest.raises(RunInUseError, match=f"process {holder.pid} "):
            resume_run(target, quiet=True)
        with pytest.raises(RunInUseError, match=f"process {holder.pid} "):
            check_resume(run, {"total_steps": 240})
        with pytest.raises(RunInUseError, match=f"process {holder.pid} "):
            start_run(Config(total_steps=120), run, force=True, quiet=True)
    finally:
        holder.kill()
        holder.wait()
    assert snapshot(run) == {**before, LOCK_NAME: f"{holder.pid}\n".encode()}


def test_a_sweep_in_progress_is_refused(tmp_path: Path, capsys) -> None:
    pytest.importorskip("ray")
    spec = tmp_path / "s.toml"
    spec.write_text("seeds = [1]\n[train]\ntotal_steps = 100\n[grid]\nlr = [1e-4]\n")
    out = tmp_path / "sweep"
    out.mkdir()
    holder = hold_lock(out)
    try:
        refused(["sweep", str(spec), "--out", str(out)], holder.pid, capsys)
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # no sweep.toml yet
    finally:
        holder.kill()
        holder.wait()
