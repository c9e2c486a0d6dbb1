"""The training driver: runs any :class:`~atari_dqn.loop.Loop` into a run directory.

Whatever produced the loop (a single process, the Ape-X learner, a sweep's trial), the driver
does the same around it: progress bar, ``rewards.txt``, a model file per evaluation, full
checkpoints (at every evaluation, every ``--checkpoint-every`` steps, at the end and on
SIGINT/SIGTERM), TensorBoard scalars.

:func:`start_run` and :func:`resume_run` are the Python entry points of ``atari-dqn train`` and
``atari-dqn train --resume``: they take a :class:`Config` (not argv), check everything a user
can get wrong before any work starts (UsageError / ArtifactError), then build and drive. Each
holds the run directory's :class:`~atari_dqn.artifacts.RunLock` while it trains (a second
process is refused), and a file that cannot be written ends the run with one
:class:`~atari_dqn.artifacts.WriteError` that says what is intact and how to continue.
"""

from __future__ import annotations

import dataclasses
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol

from atari_dqn.artifacts import (
    ArtifactError,
    ModelInfo,
    RunDir,
    RunLock,
    WriteError,
    load_model,
    save_model,
    writing,
)
from atari_dqn.build import (
    LearnerSide,
    bf16_in_update,
    build_training,
    check_memory,
    check_training_input,
)
from atari_dqn.checkpoint import (
    CHECKPOINT_NAME,
    ReplayOnDisk,
    StatefulReplay,
    load_checkpoint,
    read_checkpoint_state,
    remove_leftovers,
    replay_on_disk,
    save_checkpoint,
)
from atari_dqn.config import (
    RUN_NEUTRAL,
    Config,
    ConfigError,
    RunTables,
    UsageError,
    canonical_settings,
    load_toml,
    to_toml,
)
from atari_dqn.envs import EnvSettings
from atari_dqn.evaluate import EvalResult
from atari_dqn.host import session_record
from atari_dqn.loop import EvalAgent, Loop, Progress
from atari_dqn.metrics import MetricsWriter
from atari_dqn.reporting import (
    Reporting,
    Tracker,
    film_evaluation,
    save_tracking_id,
    saved_tracking_id,
    start_tracking,
    video_path,
)

if TYPE_CHECKING:
    from tqdm import tqdm

# Settings that may differ on --resume: those that do not change what the run is.
RESUME_MAY_CHANGE = RUN_NEUTRAL


class Console:
    """Where a run's messages go: above the progress bar, or plain lines with ``quiet``."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar: tqdm[Any] | None = None

    def say(self, msg: str) -> None:
        """A message outside the bar's life (start, end): stderr, or stdout when quiet."""
        print(msg, file=sys.stdout if self.quiet else sys.stderr, flush=True)

    def log(self, msg: str) -> None:
        """One line per event, readable in a terminal (above the bar) and in a piped log."""
        if self.bar is None or self.quiet:
            print(msg, flush=True)
        else:
            self.bar.write(msg)


class RunReplay(StatefulReplay, Protocol):
    """The replay as the driver sees it: saved in checkpoints, and whether it has priorities
    (the replay itself, or the Ape-X replay server's proxy)."""

    uses_priorities: bool


@dataclass
class Driven:
    """What the driver needs of a built run, whichever loop it is."""

    learner: LearnerSide[EvalAgent]
    loop: Loop
    replay: RunReplay | None  # None: a loop without a replay memory (PQN)
    banner: str | None = None  # one line on how the run is laid out, said when it starts
    # Told the path of each checkpoint once it is saved or loaded (the Ape-X replay server
    # restores a dead server's replay from it).
    on_checkpoint: Callable[[Path], None] | None = None
    # What else makes the run what it is, written into config.toml as tables (Ape-X: [apex]).
    tables: RunTables | None = None


@dataclass(frozen=True)
class Carried:
    """What a run carries over from its earlier processes (a new run: nothing)."""

    train_seconds: float = 0.0  # training wall time before this process, evaluations excluded
    best: tuple[int, float] | None = None  # (step, score) of the best evaluation so far
    replay_on_disk: ReplayOnDisk | None = None  # what the checkpoint holds of the replay


class TrainClock:
    """Wall seconds of training since the run started, across resumes: the time between
    reports, less the evaluations inside it and the driver's own saving after it."""

    def __init__(self, start: float) -> None:
        self.seconds = start
        self._mark = time.perf_counter()

    def lap(self, excluded: float = 0.0) -> float:
        """Add the time since the last mark (less ``excluded``); returns the total."""
        now = time.perf_counter()
        self.seconds += max(0.0, now - self._mark - excluded)
        self._mark = now
        return self.seconds

    def pause_until_now(self) -> None:
        """Leave out the time since the last mark (saving files, not training)."""
        self._mark = time.perf_counter()


class SignalGuard:
    """While entered, SIGINT and SIGTERM ask the run to stop (``signum``) instead of killing
    it; the previous handlers come back on exit. Only the main thread may take signals (a
    sweep's trial trains in another thread): elsewhere it does nothing. ``on_stop`` is called
    at each signal, from the handler (the driver's: ``Loop.request_stop``, so the loop reports
    at its next agent step, even inside an evaluation)."""

    def __init__(self, on_stop: Callable[[], None] | None = None) -> None:
        self.signum: int | None = None
        self._on_stop = on_stop
        self._previous: dict[signal.Signals, Any] = {}

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        del frame
        if self.signum is None:
            self.signum = signum
        if self._on_stop is not None:
            self._on_stop()

    def __enter__(self) -> SignalGuard:
        if threading.current_thread() is threading.main_thread():
            self._previous = {
                sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
            }
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}


class Driver:
    """Drives one loop into one run directory, one method per event: :meth:`progress` (each
    report), :meth:`evaluation`, :meth:`checkpoint`, :meth:`finish`; :meth:`run` is the loop
    over them, with the progress bar, TensorBoard and a :class:`SignalGuard` around it."""

    def __init__(
        self,
        parts: Driven,
        run: RunDir,
        console: Console,
        carried: Carried = Carried(),
        reporting: Reporting | None = None,
        tracker: Tracker | None = None,
    ) -> None:
        self.parts, self.run_dir, self.console = parts, run, console
        self.reporting = reporting or Reporting()
        self.tracker = tracker
        self.config = parts.learner.config
        self.model_info = ModelInfo(
            EnvSettings.of(self.config, parts.learner.actions), seed=self.config.seed
        )
        self.best = carried.best
        self.replay_on_disk = carried.replay_on_disk  # the chunks the next checkpoint may keep
        self.clock = TrainClock(carried.train_seconds)
        self.saved_at: int | None = None  # the step of this process's last checkpoint
        self.next_checkpoint = self._after(parts.loop.step)
        self.postfix: dict[str, str] = {"eps": "1.00", "eval": "-", "loss": "-"}
        self.metrics: MetricsWriter | None = None

    def _after(self, step: int) -> int:
        """The first multiple of --checkpoint-every past ``step`` (0: no such checkpoints)."""
        every = self.config.checkpoint_every
        return (step // every + 1) * every if every else 0

    def _checkpoint_due(self) -> bool:
        return bool(self.next_checkpoint) and self.parts.loop.step >= self.next_checkpoint

    # ------------------------------------------------------------------ events
    def progress(self, progress: Progress) -> None:
        """A report: the games that ended, TensorBoard, the bar."""
        result = progress.evaluation
        seconds = self.clock.lap(excluded=result.seconds if result is not None else 0.0)
        self.run_dir.append_games(
            [
                (step, score, length, seconds)
                for step, score, length in zip(
                    progress.game_steps, progress.game_returns, progress.game_lengths, strict=True
                )
            ]
        )
        bar = self.console.bar
        if bar is not None:
            bar.update(progress.step - bar.n)
        if self.metrics is not None:
            self.metrics.write(progress)
        self.postfix["eps"] = f"{progress.epsilon:.2f}"
        if progress.loss is not None:
            self.postfix["loss"] = f"{progress.loss:.4f}"

    def evaluation(self, result: EvalResult) -> None:
        """An evaluation: rewards.txt, its model file, the best model, a video if asked."""
        online = self.parts.learner.online
        self.run_dir.append_reward(result.index, result.step, result.mean)
        path = self.run_dir.model_path(result.index)
        save_model(path, online, self.model_info.metadata(result.step))
        self.postfix["eval"] = f"{result.mean:.1f}"
        if self.best is None or result.mean > self.best[1]:
            self.best = (result.step, result.mean)
            meta = self.model_info.metadata(result.step, score=result.mean)
            save_model(self.run_dir.best_model_path, online, meta)
        self.console.log(
            f"eval {result.index:3d} at step {result.step}: score {result.mean:.1f} ± "
            f"{result.std:.1f} over {len(result.scores)} games in {result.seconds:.1f} s "
            f"-> {path.name}"
        )
        if self.reporting.films(result.index):
            video = video_path(self.run_dir.path, result.index)
            with writing(video):
                game = film_evaluation(self.parts.learner, result, video)
            self.console.log(
                f"video of evaluation {result.index}'s first game (score "
                f"{game.score:g}, {game.length} steps) -> {video.relative_to(self.run_dir.path)}"
            )
            if self.tracker is not None:
                self.tracker.video(video, result.step)

    def checkpoint(self) -> None:
        """A full checkpoint (agent, replay, loop, this driver's state) and the latest model."""
        parts, run, step = self.parts, self.run_dir, self.parts.loop.step
        self.saved_at = step
        self.next_checkpoint = self._after(step)
        run.sync_games()
        with writing(run.path / CHECKPOINT_NAME):
            info = save_checkpoint(
                run.path / CHECKPOINT_NAME,
                config=dataclasses.asdict(self.config),
                agent=parts.learner.agent,
                replay=parts.replay,
                loop=parts.loop,
                include_replay=self.config.checkpoint_replay and parts.replay is not None,
                extra={
                    "train_seconds": self.clock.seconds,
                    "best": list(self.best) if self.best else None,
                },
                previous=self.replay_on_disk,
                chunk_slots=self.config.checkpoint_chunk,
            )
        self.replay_on_disk = info.replay
        if parts.on_checkpoint is not None:
            parts.on_checkpoint(run.path / CHECKPOINT_NAME)
        # The online network at this checkpoint, for `evaluate RUN --model latest`.
        save_model(run.latest_model_path, parts.learner.online, self.model_info.metadata(step))
        chunks = (
            f" ({info.chunks_written} replay chunks written, {info.chunks_kept} kept)"
            if info.replay is not None
            else ""
        )
        self.console.log(
            f"checkpoint at step {step}: {info.bytes / 1e6:.1f} MB written in "
            f"{info.seconds:.2f} s{chunks}"
        )

    def stopped(self, signum: int) -> int:
        """A signal stopped the run (after its checkpoint): 130 after SIGINT, 0 after SIGTERM."""
        self.console.log(
            f"stopped by {signal.Signals(signum).name} at step {self.parts.loop.step}; "
            f"continue with: atari-dqn train --resume {self.run_dir.path}"
        )
        return 0 if signum == signal.SIGTERM else 130

    def finished_late(self, signum: int, progress: Progress) -> bool:
        """Whether a signal came once every step was done (and its evaluation played): then
        the run has finished, saved, and ends as such (exit status 0: there is nothing to
        continue, a script may go on with its results)."""
        if self.parts.loop.step < self.config.total_steps or progress.evaluation_pending:
            return False
        self.console.log(f"{signal.Signals(signum).name} after the last step: the run is complete")
        return True

    def finish(self) -> int:
        """The loop ran to its end: a last checkpoint unless one was just saved."""
        if self.saved_at != self.parts.loop.step:
            self.checkpoint()
        return 0

    # ------------------------------------------------------------------ the run
    def run(self) -> int:
        """Run the loop to its end or to a signal; returns the exit status: 0, or 130 after
        SIGINT (0 after SIGTERM), with a checkpoint either way. A signal is honoured at the
        loop's next agent step (an evaluation under way is abandoned and played first when the
        run continues), after the checkpoint being written if any; one that arrives once every
        step is done ends the run as finished (0)."""
        from tqdm import tqdm

        loop, learner, config = self.parts.loop, self.parts.learner, self.config
        self.console.say(
            f"run directory: {self.run_dir.path}  ({config.env_id}, preset {config.preset}, "
            f"{len(learner.actions)} actions: {','.join(learner.actions)}, "
            f"device {learner.device})"
        )
        self.run_dir.append_games([])  # the header, so a run's games.csv exists from its start
        bar = tqdm(
            total=config.total_steps,
            initial=loop.step,
            unit="step",
            disable=self.console.quiet,
            dynamic_ncols=True,
            smoothing=0.05,
        )
        self.console.bar = bar
        # TensorBoard event files in the run directory; a resumed run continues after its step.
        self.metrics = MetricsWriter(
            self.run_dir.path,
            start_step=loop.step,
            replay_beta=self.parts.replay is not None and self.parts.replay.uses_priorities,
        )
        failing = False
        try:
            with SignalGuard(on_stop=loop.request_stop) as signals:
                if loop.step == 0:
                    self.metrics.hyperparameters(dataclasses.asdict(config))
                for progress in loop.run():
                    self.progress(progress)
                    if progress.evaluation is not None:
                        self.evaluation(progress.evaluation)
                    bar.set_postfix(self.postfix, refresh=False)
                    stop = signals.signum
                    if progress.evaluation is not None or stop or self._checkpoint_due():
                        self.checkpoint()
                    self.clock.pause_until_now()
                    if stop and self.finished_late(stop, progress):
                        break
                    if stop:
                        return self.stopped(stop)
                status = self.finish()
        except BaseException:
            failing = True
            raise
        finally:
            bar.close()
            self.console.bar = None
            try:
                self.metrics.close()
            except WriteError:
                if not failing:  # (a full disk fails the last events too: one message is enough)
                    raise
        self.console.say(
            f"done: {loop.step} steps, {loop.updates} updates; results in {self.run_dir.path}"
        )
        return status


def drive(
    parts: Driven,
    run: RunDir,
    console: Console,
    reporting: Reporting | None = None,
    tracker: Tracker | None = None,
    carried: Carried = Carried(),
) -> int:
    """Run ``parts`` into ``run`` with a :class:`Driver`; returns the exit status."""
    return Driver(parts, run, console, carried, reporting, tracker).run()


# ---------------------------------------------------------------------- entry points
def default_out(config: Config) -> Path:
    game = config.env_id.split("/")[-1].split("-")[0].replace("NoFrameskip", "").lower()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{game}-{config.preset}-s{config.seed}-{stamp}"


# Builds the parts of a run from its config (and the weights to start from) for as long as the
# context lasts: one process by default; ``distributed.apex.apex_launch`` for an Ape-X run.
Launch = Callable[[Config, Path | None], AbstractContextManager[Driven]]


@contextmanager
def single_process(config: Config, restore: Path | None) -> Iterator[Driven]:
    training = build_training(config, restore=restore)
    yield Driven(training.learner, training.loop, training.replay)


@dataclass(frozen=True)
class Finished:
    """How a training process ended: its run directory and exit status (0, or 130 after
    SIGINT, with a checkpoint either way)."""

    run_dir: Path
    status: int


class Opening(Protocol):
    """How a run directory is opened once its parts are built: a new run's files written, or
    a checkpoint loaded into the parts. Returns the directory and what the run carries."""

    def open(self, parts: Driven, console: Console) -> tuple[RunDir, Carried]: ...


@dataclass(frozen=True)
class NewRun:
    """A new run of ``config`` in ``out`` (``force``: replacing the run files there)."""

    config: Config
    out: Path
    force: bool

    def open(self, parts: Driven, console: Console) -> tuple[RunDir, Carried]:
        del console
        run = RunDir.create(self.out, self.force)
        remove_leftovers(run.path)  # of a killed save in the run --force replaces
        run.write_config(to_toml(self.config, parts.tables))
        return run, Carried()


@dataclass(frozen=True)
class ResumedRun:
    """A checked run continued from its checkpoint."""

    target: Resumable

    def open(self, parts: Driven, console: Console) -> tuple[RunDir, Carried]:
        run, step = self.target.run, self.target.step
        state = load_checkpoint(
            run.path / CHECKPOINT_NAME,
            agent=parts.learner.agent,
            replay=parts.replay,
            loop=parts.loop,
        )
        on_disk = replay_on_disk(state) if state["replay"] is not None else None
        remove_leftovers(run.path, on_disk)  # what a killed save left behind
        if parts.on_checkpoint is not None:
            parts.on_checkpoint(run.path / CHECKPOINT_NAME)
        # Anything written after the checkpoint (a kill between an evaluation and its
        # checkpoint) is replayed exactly by the resumed run, so it is dropped, not duplicated.
        run.truncate_rewards(step)
        run.truncate_games(step)
        extra = self.target.state.get("extra", {})
        best = extra.get("best")
        carried = Carried(
            train_seconds=float(extra.get("train_seconds", 0.0)),
            best=(int(best[0]), float(best[1])) if best is not None else None,
            replay_on_disk=on_disk,
        )
        run.write_config(to_toml(self.target.config, parts.tables))
        console.say(f"resuming {run.path} at step {step}")
        return run, carried


def _launch(
    config: Config,
    opening: Opening,
    console: Console,
    launch: Launch,
    *,
    run_dir: Path,
    reporting: Reporting,
    tracking_id: str | None = None,
    restore: Path | None = None,
) -> Finished:
    """Start the W&B run if asked, build the run, open its run directory, drive it; whatever
    ``launch`` started is stopped after."""
    tracker = start_tracking(reporting, config, run_dir.name, tracking_id)
    status = 1  # an exception: the W&B run ends as failed
    try:
        with launch(config, restore) as parts:
            run, carried = opening.open(parts, console)
            session = session_record(parts.loop.step, parts.learner.device)
            run.append_session(session)
            if config.bf16 == "auto":  # what it chose, where the run's log shows it
                bf16 = bf16_in_update(config, parts.learner.device, session["bf16_native"])
                console.say(f"--bf16 auto: the update runs in {'bf16' if bf16 else 'float32'}")
            save_tracking_id(run.path, tracker)
            if parts.banner:
                console.say(parts.banner)
            status = Driver(parts, run, console, carried, reporting, tracker).run()
            return Finished(run.path, status)
    finally:
        if tracker is not None:
            tracker.close(status)


def start_run(
    config: Config,
    out: Path | str | None = None,
    *,
    force: bool = False,
    restore: Path | None = None,
    quiet: bool = False,
    launch: Launch = single_process,
    reporting: Reporting | None = None,
    force_memory: bool = False,
) -> Finished:
    """Train a new run of ``config`` into ``out`` (default ``runs/<game>-<preset>-s<seed>-<time>``).

    Refuses, before any work, a bad config, an unknown game, a replay and networks larger than
    the available memory (unless ``force_memory``), a missing model to restore and a directory
    that already holds a run (unless ``force``, which replaces only its run files)."""
    reporting = reporting or Reporting()
    reporting.check()
    if config.beta_steps == 0:  # "the whole run", fixed now so a resume that extends it keeps β
        config = config.replace(beta_steps=config.total_steps)
    actions, _ = check_training_input(config)
    if not force_memory:
        check_memory(config, actions)
    for warning in config.warnings():  # legal but pointless: said, and the run goes on
        print(f"atari-dqn: warning: {warning}", file=sys.stderr, flush=True)
    if restore is not None:
        load_model(restore)
    out = Path(out) if out is not None else default_out(config)
    RunLock.check(out)  # (first: "in use by process N" says more than "holds a run")
    RunDir.check_new(out, force)

    with after_write_errors(out), RunLock.acquire(out):
        RunDir.check_new(out, force)  # again, now that no other process can start one here
        return _launch(
            config,
            NewRun(config, out, force),
            Console(quiet),
            launch,
            run_dir=out,
            reporting=reporting,
            restore=restore,
        )


@contextmanager
def after_write_errors(run_dir: Path) -> Iterator[None]:
    """A WriteError of the run in ``run_dir`` gets what the user can do next: what is intact,
    what to fix, and the command that continues the run from its last good checkpoint."""
    try:
        yield
    except WriteError as exc:
        try:
            step = int(read_checkpoint_state(run_dir / CHECKPOINT_NAME)["loop"]["step"])
        except (ArtifactError, KeyError, ValueError):
            raise exc.with_then(
                f"no checkpoint to continue from yet; {exc.advice}, then start again with --force"
            ) from None
        raise exc.with_then(
            f"the files written before it and the checkpoint at step {step} are intact; "
            f"{exc.advice}, then continue with: atari-dqn train --resume {run_dir}"
        ) from None


def train(
    config: Config | None = None,
    out: Path | str | None = None,
    *,
    force: bool = False,
    restore: Path | None = None,
    quiet: bool = True,
    reporting: Reporting | None = None,
) -> Path:
    """Train a new run (``atari_dqn.train``): what ``atari-dqn train`` does, from Python; returns
    the run directory. The course preset when ``config`` is None. Ctrl-C checkpoints the run and
    raises KeyboardInterrupt (continue it with :func:`resume_run`)."""
    finished = start_run(
        config or Config(), out, force=force, restore=restore, quiet=quiet, reporting=reporting
    )
    if finished.status == 130:
        raise KeyboardInterrupt(f"training stopped; its checkpoint is in {finished.run_dir}")
    return finished.run_dir


@dataclass(frozen=True)
class Resumable:
    """A run directory checked for ``--resume``: its config (with the allowed changes), its
    checkpoint's JSON state and the step it continues from."""

    run: RunDir
    config: Config
    state: dict[str, Any]
    step: int


def check_resume(
    run_dir: Path | str, changes: dict[str, Any] | None = None, *, force_memory: bool = False
) -> Resumable:
    """Everything ``--resume`` can refuse, before any work: not a run, an unreadable config or
    checkpoint, a setting in ``changes`` that would change what the run is (only
    ``RESUME_MAY_CHANGE`` may), a checkpoint of another config, a run already at its end, a
    replay larger than the available memory (unless ``force_memory``)."""
    changes = canonical_settings(changes or {})  # old names of values: as Config has them
    run = RunDir(Path(run_dir))
    if not (run.path / "config.toml").is_file():
        raise UsageError(f"--resume {run.path}: not a run directory (no config.toml)")
    RunLock.check(run.path)
    try:
        saved = Config(**load_toml(run.path / "config.toml"))
    except (ConfigError, TypeError) as exc:
        raise UsageError(f"--resume {run.path}: unreadable config.toml ({exc})") from None
    run.check_history()  # a damaged rewards.txt, games.csv: refused before anything is touched
    config = saved
    for f in fields(Config):
        if f.name == "preset" or f.name not in changes:
            continue
        value = changes[f.name]
        if f.name not in RESUME_MAY_CHANGE and value != getattr(saved, f.name):
            raise UsageError(
                f"--{f.name.replace('_', '-')} {value} contradicts the run's config "
                f"({getattr(saved, f.name)}); on --resume only "
                + ", ".join("--" + n.replace("_", "-") for n in RESUME_MAY_CHANGE)
                + " may change"
            )
        config = config.replace(**{f.name: value})
    actions, _ = check_training_input(config)
    ckpt = run.path / CHECKPOINT_NAME
    state = read_checkpoint_state(ckpt)
    theirs = canonical_settings(state["config"])
    if theirs.get("env_id") != config.env_id:
        raise UsageError(
            f"checkpoint {ckpt} is from {theirs.get('env_id')}, but this run is {config.env_id}"
        )
    # A setting newer than the checkpoint (e.g. --distributional) has its default there: the
    # defaults of new settings are what runs did before they existed.
    defaults = dataclasses.asdict(Config())
    for key, value in dataclasses.asdict(config).items():
        if key not in RESUME_MAY_CHANGE and theirs.get(key, defaults[key]) != value:
            raise UsageError(
                f"checkpoint {ckpt} does not match the run's config.toml "
                f"({key}: {theirs.get(key)!r} vs {value!r})"
            )
    step = int(state["loop"]["step"])
    # (a stop that abandoned the evaluation of the last step leaves it due: resuming plays it)
    evaluation_due = int(state["loop"].get("next_eval", step + 1)) <= step
    if step >= config.total_steps and not evaluation_due:
        raise UsageError(
            f"the run is already at step {step} of --total-steps {config.total_steps}; "
            "pass a larger --total-steps to continue it"
        )
    if not force_memory:
        check_memory(config, actions)
    return Resumable(run, config, state, step)


def resume_run(
    target: Resumable,
    *,
    quiet: bool = False,
    launch: Launch = single_process,
    reporting: Reporting | None = None,
) -> Finished:
    """Continue a checked run from its checkpoint (``launch``: as the run was started); with
    ``--track``, the same W&B run as before when it had one."""
    run, config, step = target.run, target.config, target.step
    reporting = reporting or Reporting()
    reporting.check()
    console = Console(quiet)

    with after_write_errors(run.path), RunLock.acquire(run.path):
        if read_checkpoint_state(run.path / CHECKPOINT_NAME)["loop"]["step"] != step:
            raise ArtifactError(f"{run.path} was trained on since it was checked; check it again")
        return _launch(
            config,
            ResumedRun(target),
            console,
            launch,
            run_dir=run.path,
            reporting=reporting,
            tracking_id=saved_tracking_id(run.path),
        )
