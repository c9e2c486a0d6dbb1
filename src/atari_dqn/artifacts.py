"""The run directory: rewards.txt, config.toml, model files; every write atomic; its lock.

A kill at any instant leaves either the old or the new version of a file, never a truncated one:
files are written to a temporary sibling, flushed, fsynced, then renamed over the target. A
write that fails (disk full, I/O error, read-only filesystem, file-size limit) removes its
temporary file, leaves the target as it was and raises :class:`WriteError`, one line naming the
file and the free space there. Model files are safetensors (tensors plus string metadata):
loading one never unpickles code. :class:`RunLock` keeps a second process out of a run directory
that one is training.
"""

from __future__ import annotations

import csv
import errno
import fcntl
import io
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_save

from atari_dqn.config import (
    ATOMS_LIMIT,
    NUM_ACTIONS_LIMIT,
    UsageError,
    sigma0_problem,
    support_problem,
)
from atari_dqn.killpoints import kill_point
from atari_dqn.networks import QNetwork

if TYPE_CHECKING:
    from atari_dqn.envs import EnvSettings

MODEL_FORMAT = "atari-dqn-model"
MODEL_VERSION = "1"
MODEL_SUFFIX = ".safetensors"
_MODEL_RE = re.compile(r"^model_(\d{3,})\.safetensors$")
# Files that mark a directory as holding a run (and that --force replaces).
LATEST_MODEL = "model_latest.safetensors"  # the online network at the last checkpoint
BEST_MODEL = "model_best.safetensors"  # the best evaluation so far (step, score in metadata)
SESSIONS = "sessions.csv"
RUN_MARKERS = ("config.toml", "rewards.txt", "games.csv", SESSIONS, LATEST_MODEL, BEST_MODEL)
# One line per start or resume of a run: where its wall-clock figures (games.csv's
# train_seconds) were measured. A run resumed on another machine has two hosts.
SESSION_FIELDS = (
    "step", "started_utc", "cpu", "cores", "bf16_native", "torch", "torch_cpu_isa",
    "torch_threads", "device",
)  # fmt: skip
GAMES_HEADER = "step,score,length,train_seconds\n"


class ArtifactError(UsageError, ValueError):
    """A user-supplied path is not what it should be; the message is one line."""


# What to do about a failed write, by errno (the rest: the error's own words say it).
_WRITE_ADVICE = {
    errno.ENOSPC: "free some space",
    errno.EDQUOT: "free some space (disk quota)",
    errno.EFBIG: "raise the file-size limit (ulimit -f)",
    errno.EROFS: "make the filesystem writable",
    errno.EIO: "check the disk",
}


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError  # unreachable


def free_space(path: Path) -> int | None:
    """Free bytes on the filesystem holding ``path`` (its nearest existing parent)."""
    for candidate in (Path(path), *Path(path).parents):
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            continue
    return None


class WriteError(Exception):
    """A file could not be written (ENOSPC, EIO, EROFS, EFBIG, ...): not a bug, and not bad
    input, so exit status 1 rather than 2. ``path`` is the file the caller meant to write (not
    its temporary sibling); ``then`` is what the user can do next (the driver adds it)."""

    def __init__(self, path: Path, error: OSError, then: str | None = None) -> None:
        self.path = Path(path)
        self.error = error
        self.errno = error.errno
        self.free = free_space(self.path.parent)
        self.then = then
        super().__init__(self._message())

    def _message(self) -> str:
        reason = self.error.strerror or str(self.error) or type(self.error).__name__
        free = "unknown" if self.free is None else _human_bytes(self.free)
        text = f"cannot write {self.path}: {reason} ({free} free on its filesystem)"
        if self.then:
            text += f"; {self.then}"
        return text

    @property
    def advice(self) -> str:
        """What to fix, by the kind of failure: "free some space", "check the disk", ..."""
        return _WRITE_ADVICE.get(self.errno or 0, "fix that")

    def with_then(self, then: str) -> WriteError:
        return WriteError(self.path, self.error, then)


def _os_error_of(exc: BaseException) -> OSError | None:
    """The OSError behind ``exc``: itself, or the I/O error a safetensors writer reports as a
    ``SafetensorError`` ("... I/O error: No space left on device (os error 28)")."""
    if isinstance(exc, OSError):
        return exc
    if isinstance(exc, SafetensorError):
        found = re.search(r"\(os error (\d+)\)", str(exc))
        if found:
            code = int(found.group(1))
            return OSError(code, os.strerror(code))
    return None


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """Report a failed write of ``path`` as one :class:`WriteError` naming it (an OSError, or a
    safetensors writer's I/O error); anything else goes through unchanged."""
    try:
        yield
    except WriteError:
        raise
    except (OSError, SafetensorError) as exc:
        error = _os_error_of(exc)
        if error is None:
            raise
        raise WriteError(path, error) from exc


def file_mode() -> int:
    """The mode a newly created file gets under the process's umask (0o644 under 022): what
    ``open()`` gives, so the temporary files of atomic writes (0o600) are set to it too."""
    try:  # Linux: read it without changing it (os.umask would, for the whole process)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_replace(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary sibling of ``path``, fsync it, rename it over ``path``.

    The file ends with the mode the user's umask gives new files (mkstemp's is 0o600). A write
    that fails raises :class:`WriteError` naming ``path``; the temporary file is removed and
    ``path`` keeps its old content (or stays absent)."""
    path = Path(path)
    with writing(path):
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        tmp = Path(name)
        try:
            write(tmp)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.chmod(tmp, file_mode())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes, *, point: str | None = None) -> None:
    """``data`` into ``path`` atomically; ``point``: a kill point (killpoints.py) reached when
    the temporary file is written and not yet renamed."""

    def write(tmp: Path) -> None:
        tmp.write_bytes(data)
        if point is not None:
            kill_point(point)

    atomic_replace(path, write)


def atomic_write_text(path: Path, text: str, *, point: str | None = None) -> None:
    atomic_write_bytes(path, text.encode(), point=point)


_INTERRUPTED_RE = re.compile(r"^\.(.+)\.[A-Za-z0-9_]+\.tmp$")  # atomic_replace's temporaries


def remove_interrupted_writes(directory: Path) -> list[Path]:
    """Delete the temporary files that killed atomic writes of run files left in ``directory``
    (``.NAME.XXXXXXXX.tmp`` for a run file NAME); nothing else. Returns what was deleted."""
    gone = []
    for p in Path(directory).glob(".*.tmp"):
        m = _INTERRUPTED_RE.match(p.name)
        if m and _is_run_file(m.group(1)) and p.is_file():
            p.unlink(missing_ok=True)
            gone.append(p)
    return gone


def _is_run_file(name: str) -> bool:
    return (
        name in RUN_MARKERS
        or name == "checkpoint.safetensors"
        or _MODEL_RE.match(name) is not None
        or re.fullmatch(r"frames_\d+\.g\d+\.safetensors", name) is not None
    )


def fsync_dir(directory: Path) -> None:
    """Make a rename durable (best effort: some filesystems refuse a directory fsync)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# A line of rewards.txt: ``index step score`` (the seed's format; plot reads it too).
REWARD_LINE = re.compile(r"^\s*(\d+)\s+(\d+)\s+(-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*$")


def read_utf8(path: Path, error: type[ArtifactError] = ArtifactError) -> str:
    """A run file's text; ``error`` (one line, naming the file and the line) where it is not
    UTF-8."""
    data = Path(path).read_bytes()
    try:
        return data.decode()
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise error(f"{path}:{line}: not UTF-8 text (byte {exc.start})") from None


def games_row(line: str) -> tuple[int, float, int, float] | None:
    """A ``step,score,length,train_seconds`` line of games.csv, or None if it is not one."""
    parts = line.split(",")
    if len(parts) != 4:
        return None
    try:
        return int(parts[0]), float(parts[1]), int(parts[2]), float(parts[3])
    except ValueError:
        return None


def format_reward_line(index: int, step: int, score: float) -> str:
    """The course project's exact line format."""
    return f"{index:3d} {step:8d} {score:.1f}\n"


class RunDir:
    """Owns the files of one training run."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @staticmethod
    def holds_run(path: Path) -> bool:
        path = Path(path)
        return any((path / name).exists() for name in RUN_MARKERS) or any(
            _MODEL_RE.match(p.name) for p in path.glob("model_*")
        )

    @classmethod
    def check_new(cls, path: Path, force: bool) -> None:
        """Refuse (ArtifactError) to start a run where one already is, unless ``force``."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise ArtifactError(f"--out {path} exists and is not a directory")
        if path.exists() and cls.holds_run(path) and not force:
            raise ArtifactError(
                f"run directory {path} already holds a run; choose another --out or pass --force"
            )

    @classmethod
    def create(cls, path: Path, force: bool) -> RunDir:
        cls.check_new(path, force)
        path = Path(path)
        with writing(path):
            path.mkdir(parents=True, exist_ok=True)
        if force:
            # Replace only what an earlier run wrote; anything else of the user's stays.
            for name in RUN_MARKERS:
                (path / name).unlink(missing_ok=True)
            for p in path.glob("model_*"):
                if _MODEL_RE.match(p.name):
                    p.unlink()
            for p in path.glob("events.out.tfevents.*"):  # TensorBoard's (metrics.py)
                p.unlink()
        return cls(path)

    @property
    def rewards_path(self) -> Path:
        return self.path / "rewards.txt"

    def write_config(self, text: str) -> None:
        atomic_write_text(self.path / "config.toml", text)

    def append_reward(self, index: int, step: int, score: float) -> None:
        """Add one line to rewards.txt by rewriting it atomically (it is small)."""
        old = self.rewards_path.read_text() if self.rewards_path.exists() else ""
        line = format_reward_line(index, step, score)
        atomic_write_text(self.rewards_path, old + line, point="write.rewards")

    def check_history(self) -> None:
        """Refuse (ArtifactError naming the file and the line) a rewards.txt, games.csv or
        sessions.csv that --resume could not rewrite: not UTF-8, a line that is not the file's
        format (games.csv: but an unterminated last line, a killed append). Reads only, so a
        damaged run is refused before it is locked or touched."""
        if self.rewards_path.exists():
            for number, line in enumerate(read_utf8(self.rewards_path).splitlines(), start=1):
                if line.strip() and REWARD_LINE.match(line) is None:
                    raise ArtifactError(
                        f"{self.rewards_path}:{number}: not an 'index step score' line: "
                        f"{line.strip()[:60]!r}"
                    )
        if self.games_path.exists():
            lines = read_utf8(self.games_path).splitlines(keepends=True)
            if not lines or lines[0] != GAMES_HEADER:
                raise ArtifactError(
                    f"{self.games_path}:1: expected the header {GAMES_HEADER.strip()!r}"
                )
            for number, line in enumerate(lines[1:], start=2):
                if line.endswith("\n") and line.strip() and games_row(line) is None:
                    raise ArtifactError(
                        f"{self.games_path}:{number}: not a 'step,score,length,train_seconds'"
                        f" line: {line.strip()[:60]!r}"
                    )
        if self.sessions_path.exists():
            read_utf8(self.sessions_path)

    def truncate_rewards(self, last_step: int) -> None:
        """Keep only the lines of rewards.txt at or before ``last_step`` (and blank ones);
        :meth:`check_history` first."""
        if not self.rewards_path.exists():
            return
        lines = read_utf8(self.rewards_path).splitlines(keepends=True)

        def keep(line: str) -> bool:
            match = REWARD_LINE.match(line)
            return line.endswith("\n") and (match is None or int(match.group(2)) <= last_step)

        kept = [ln for ln in lines if keep(ln)]
        if kept != lines:
            atomic_write_text(self.rewards_path, "".join(kept))

    @property
    def games_path(self) -> Path:
        return self.path / "games.csv"

    def append_games(self, rows: list[tuple[int, float, int, float]]) -> None:
        """Append finished training games ``(step, score, length, train_seconds)``.

        Append-only, one write of whole lines per call (the file grows by a line per game, too
        often to rewrite); a kill can leave at most an unterminated last line, which readers
        skip and :meth:`truncate_games` removes on resume."""
        if not self.games_path.exists():
            atomic_write_text(self.games_path, GAMES_HEADER)
        if not rows:
            return
        text = "".join(f"{s},{score:g},{n},{t:.3f}\n" for s, score, n, t in rows)
        with writing(self.games_path), self.games_path.open("a") as fh:
            fh.write(text)
            fh.flush()

    def sync_games(self) -> None:
        """Make what games.csv holds durable (called with each checkpoint)."""
        if self.games_path.exists():
            with writing(self.games_path), self.games_path.open("rb+") as fh:
                os.fsync(fh.fileno())

    def truncate_games(self, last_step: int) -> None:
        """Keep the header and the whole lines of games at or before ``last_step`` (resume:
        the games after the checkpoint are played again, so they are not kept twice)."""
        if not self.games_path.exists():
            return
        text = read_utf8(self.games_path)
        lines = text.splitlines(keepends=True)
        kept = [GAMES_HEADER] + [
            ln
            for ln in lines[1:]
            if ln.endswith("\n") and (not ln.strip() or int(ln.split(",", 1)[0]) <= last_step)
        ]
        if "".join(kept) != text:
            atomic_write_text(self.games_path, "".join(kept))

    @property
    def sessions_path(self) -> Path:
        return self.path / SESSIONS

    def append_session(self, session: Mapping[str, object]) -> None:
        """Add a line (the fields of SESSION_FIELDS) to sessions.csv: rewritten atomically, as
        it holds a line per start or resume. Earlier lines are history and stay, even those of
        a session whose steps a resume replays."""
        old = self.sessions_path.read_text() if self.sessions_path.exists() else ""
        out = io.StringIO()
        writer = csv.DictWriter(out, SESSION_FIELDS, lineterminator="\n")
        if not old:
            writer.writeheader()
        writer.writerow({k: session[k] for k in SESSION_FIELDS})
        atomic_write_text(self.sessions_path, old + out.getvalue())

    def sessions(self) -> list[dict[str, str]]:
        """The lines of sessions.csv (none for a run made before it existed)."""
        if not self.sessions_path.exists():
            return []
        with self.sessions_path.open(newline="") as fh:
            return list(csv.DictReader(fh))

    def model_path(self, index: int) -> Path:
        return self.path / f"model_{index:03d}{MODEL_SUFFIX}"

    @property
    def latest_model_path(self) -> Path:
        return self.path / LATEST_MODEL

    @property
    def best_model_path(self) -> Path:
        return self.path / BEST_MODEL

    def models(self) -> list[Path]:
        numbered = [(m, p) for p in self.path.glob("model_*") if (m := _MODEL_RE.match(p.name))]
        return [p for m, p in sorted(numbered, key=lambda mp: int(mp[0].group(1)))]


@dataclass(frozen=True)
class ModelInfo:
    """What a run's model files record besides the network (whose keys are
    :meth:`QNetwork.architecture`'s): the game as :class:`EnvSettings` records it, the run's
    seed, and per file the training step (and the score, for the best model)."""

    env: EnvSettings
    seed: int

    def metadata(self, step: int, score: float | None = None) -> dict[str, str]:
        meta = {**self.env.metadata(), "seed": str(self.seed), "step": str(step)}
        if score is not None:
            meta["score"] = f"{score:g}"
        return meta


def save_model(path: Path, network: QNetwork, metadata: dict[str, str]) -> None:
    """Weights plus what is needed to rebuild the network and its action set. A noisy layer's
    weights are its means μ (and σ): never a noise sample."""
    meta = {"format": MODEL_FORMAT, "version": MODEL_VERSION, **network.architecture()}
    meta.update({k: str(v) for k, v in metadata.items()})
    tensors = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    atomic_write_bytes(path, safetensors_save(tensors, metadata=meta), point="write.model")


def resolve_model_path(path: Path, which: str | None = None) -> Path:
    """A model file, or one of a run directory's: ``which`` is ``latest`` (the last
    checkpoint's), ``best`` (the best evaluation's), an evaluation number ``N``, or None for the
    newest evaluation's model."""
    path = Path(path)
    if not path.is_dir():
        if which is not None:
            raise ArtifactError(f"--model {which} needs a run directory, and {path} is a file")
        if not path.exists():
            raise ArtifactError(f"no such model file or run directory: {path}")
        return path
    run = RunDir(path)
    if which in ("latest", "best"):
        chosen = run.latest_model_path if which == "latest" else run.best_model_path
        if not chosen.is_file():
            raise ArtifactError(f"no {chosen.name} in {path} (runs before this version lack it)")
        return chosen
    if which is not None:
        if not which.isdigit() or int(which) < 1:
            raise ArtifactError(f"--model {which!r}: expected latest, best or an evaluation number")
        chosen = run.model_path(int(which))
        if not chosen.is_file():
            raise ArtifactError(f"no model of evaluation {which} in {path} ({chosen.name})")
        return chosen
    models = run.models()
    if not models:
        raise ArtifactError(f"no model files (model_NNN{MODEL_SUFFIX}) in {path}")
    return models[-1]


def load_model(path: Path) -> tuple[QNetwork, dict[str, str]]:
    """Rebuild a QNetwork from a model file; ArtifactError if it is not a valid one."""
    path = resolve_model_path(path)
    invalid = f"{path} is not a valid atari-dqn model file"
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError):
        raise ArtifactError(invalid) from None
    if meta.get("format") != MODEL_FORMAT:
        raise ArtifactError(invalid)
    _check_architecture(meta, invalid)
    try:
        network = QNetwork.from_architecture(meta)
        network.load_state_dict(tensors)
    except (KeyError, ValueError, RuntimeError):
        raise ArtifactError(f"{invalid} (its tensors do not match its architecture)") from None
    # A diverged network saved as a model (NaN or inf weights) plays nonsense: refused.
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ArtifactError(f"{path}: its weights are not all finite ({name} holds NaN or inf)")
    return network, meta


MAX_IN_FRAMES = 64  # frames stacked per network input (4 in every run)


def _check_architecture(meta: Mapping[str, str], invalid: str) -> None:
    """ArtifactError (one line) where a model file's architecture is out of bounds: more
    actions than the ALE has, more stacked frames than :data:`MAX_IN_FRAMES`, a support or
    noise scale float32 cannot hold. Files from before the distributional and noisy heads lack
    those keys: plain heads (:meth:`QNetwork.from_architecture` reads them the same way)."""
    _meta_int(meta, "num_actions", 1, NUM_ACTIONS_LIMIT, invalid)
    _meta_int(meta, "in_frames", 1, MAX_IN_FRAMES, invalid)
    if meta.get("distributional", "false") == "true":
        atoms = _meta_int(meta, "atoms", 2, ATOMS_LIMIT, invalid)
        v_min, v_max = _meta_float(meta, "v_min", invalid), _meta_float(meta, "v_max", invalid)
        problem = support_problem(v_min, v_max, atoms)
        if problem is not None:
            raise ArtifactError(f"{invalid} (its metadata: {problem.replace('--', '')})")
    if meta.get("noisy", "false") == "true":
        problem = sigma0_problem(_meta_float(meta, "noisy_sigma0", invalid))
        if problem is not None:
            raise ArtifactError(f"{invalid} (its metadata: {problem.replace('--', '')})")


def _meta_int(meta: Mapping[str, str], key: str, low: int, high: int, invalid: str) -> int:
    """A whole number in [low, high] of a model file's metadata, or ArtifactError."""
    raw = meta.get(key)
    try:
        value = int(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ArtifactError(f"{invalid} ({key} = {raw!r} is not a whole number)") from None
    if not low <= value <= high:
        raise ArtifactError(f"{invalid} ({key} = {raw!r} is not between {low} and {high})")
    return value


def _meta_float(meta: Mapping[str, str], key: str, invalid: str) -> float:
    raw = meta.get(key)
    try:
        return float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ArtifactError(f"{invalid} ({key} = {raw!r} is not a number)") from None


def load_weights_into(network: QNetwork, path: Path) -> dict[str, str]:
    """Copy a model file's weights into ``network`` (for --restore); shapes must match."""
    loaded, meta = load_model(path)
    theirs, ours = loaded.architecture(), network.architecture()
    if theirs != ours:
        keys = ["dueling"] + [k for k in (ours | theirs) if theirs.get(k) != ours.get(k)]
        keys = list(dict.fromkeys(k for k in keys if k != "num_actions"))
        have = ", ".join(f"{k}={theirs.get(k, '-')}" for k in keys)
        need = ", ".join(f"{k}={ours.get(k, '-')}" for k in keys)
        raise ArtifactError(
            f"model {path} has {meta['num_actions']} actions ({have}),"
            f" but this run needs {network.num_actions} ({need})"
        )
    network.load_state_dict(loaded.state_dict())
    return meta


# ---------------------------------------------------------------------- one process per run
LOCK_NAME = ".lock"  # in the run directory: the pid of the process training it


class RunInUseError(ArtifactError):
    """Another process holds the run directory's lock (exit 2, before any file is touched)."""


def _holder(lock_path: Path) -> str:
    try:
        pid = lock_path.read_text().strip()
    except OSError:
        pid = ""
    return f"process {pid}" if pid.isdigit() else "another process"


def _refuse(directory: Path) -> RunInUseError:
    return RunInUseError(
        f"{directory} is in use by {_holder(directory / LOCK_NAME)} "
        f"(it holds {directory / LOCK_NAME}); wait for it to end or stop it first"
    )


class RunLock:
    """An exclusive ``flock`` on ``RUN/.lock``, held while a process trains or resumes the run.

    The kernel releases it when the process ends, however it ends (SIGKILL too), so a stale lock
    file never blocks anyone: a lock is held only while its holder lives. The file holds the
    holder's pid, for the message that refuses a second process. Only writers lock; ``evaluate``
    and ``plot`` read a run in progress without it. The descriptor is not inherited by child
    processes (Python's default), so only this process holds the lock.
    """

    def __init__(self, directory: Path, fd: int) -> None:
        self.directory = Path(directory)
        self._fd: int | None = fd

    @staticmethod
    def check(directory: Path) -> None:
        """Refuse (RunInUseError) if a live process holds the lock; reads only, creates
        nothing (the early check, before a command's other checks and any work)."""
        lock_path = Path(directory) / LOCK_NAME
        try:
            fd = os.open(lock_path, os.O_RDONLY)
        except OSError:
            return  # no lock file (or none readable): nobody to wait for
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _refuse(Path(directory)) from None
        finally:
            os.close(fd)  # (closing releases the probe's shared lock)

    @classmethod
    def acquire(cls, directory: Path) -> RunLock:
        """Create ``directory`` if needed, take its lock and write this pid into it; refuse
        (RunInUseError) if a live process holds it."""
        directory = Path(directory)
        lock_path = directory / LOCK_NAME
        with writing(lock_path):
            directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, file_mode())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise _refuse(directory) from None
        try:
            with writing(lock_path):
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
        except BaseException:
            os.close(fd)
            raise
        return cls(directory, fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Let another process in (the file stays: removing it would race a new holder)."""
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)  # no pid of a process that no longer trains the run
            except OSError:
                pass
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
