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
    RunDir,
    RunLock,
    WriteError,
    load_model,
    save_model,
    writing,
)
from atari_dqn.build import Learner, build_training, check_memory, check_training_input
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
from atari_dqn.config import Config, ConfigError, UsageError, load_toml, to_toml
from atari_dqn.host import session_record
from atari_dqn.loop import Loop
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

# Settings that may differ on --resume without changing what the run is.
RESUME_MAY_CHANGE = (
    "total_steps",
    "device",
    "checkpoint_replay",
    "checkpoint_chunk",
    "checkpoint_every",
)


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

    learner: Learner
    loop: Loop
    replay: RunReplay
    train_seconds: float = 0.0  # training wall time before this process (resume), evals excluded
    best: tuple[int, float] | None = None  # (step, score) of the best evaluation so far (resume)
    banner: str | None = None  # one line on how the run is laid out, said when it starts
    replay_on_disk: ReplayOnDisk | None = None  # what the checkpoint holds of the replay (resume)
    # Told the path of each checkpoint once it is saved or loaded (the Ape-X replay server
    # restores a dead server's replay from it).
    on_checkpoint: Callable[[Path], None] | None = None


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


def drive(
    parts: Driven,
    run: RunDir,
    console: Console,
    reporting: Reporting | None = None,
    tracker: Tracker | None = None,
) -> int:
    """Run the loop: progress bar, rewards.txt, models and checkpoints; stop cleanly on signals;
    evaluation videos as ``reporting`` asks, also sent to the W&B run ``tracker`` if any.

    Returns the exit status: 0, or 130 after SIGINT (0 after SIGTERM), with a checkpoint. A
    signal is honoured at the loop's next agent step (an evaluation under way is abandoned and
    played first when the run continues), after the checkpoint being written if any; one that
    arrives once every step is done ends the run as finished (0)."""
    from tqdm import tqdm

    reporting = reporting or Reporting()
    learner, loop = parts.learner, parts.loop
    config, actions, online = learner.config, learner.actions, learner.online
    model_meta = {
        "env_id": config.env_id,
        "actions": ",".join(actions),
        "seed": str(config.seed),
        # What evaluate needs to rebuild the run's env.
        "noop_max": str(config.noop_max),
        "frame_skip": str(config.frame_skip),
        "sticky_actions": str(config.sticky_actions),
        "eval_max_frames": str(config.eval_max_frames),
    }
    console.say(
        f"run directory: {run.path}  ({config.env_id}, preset {config.preset}, "
        f"{len(actions)} actions: {','.join(actions)}, device {learner.device})"
    )
    saved_at: list[int] = []
    on_disk = parts.replay_on_disk  # the replay chunks the next checkpoint may keep
    best = parts.best
    clock = TrainClock(parts.train_seconds)
    every = config.checkpoint_every  # 0: checkpoints only at evaluations, the end and signals

    def after(step: int) -> int:  # the first multiple of --checkpoint-every past ``step``
        return (step // every + 1) * every if every else 0

    next_checkpoint = after(loop.step)
    run.append_games([])  # the header, so a run's games.csv exists from its start

    def checkpoint() -> None:
        nonlocal on_disk, next_checkpoint
        saved_at.append(loop.step)
        next_checkpoint = after(loop.step)
        run.sync_games()
        with writing(run.path / CHECKPOINT_NAME):
            info = save_checkpoint(
                run.path / CHECKPOINT_NAME,
                config=dataclasses.asdict(config),
                agent=learner.agent,
                replay=parts.replay,
                loop=loop,
                include_replay=config.checkpoint_replay,
                extra={"train_seconds": clock.seconds, "best": list(best) if best else None},
                previous=on_disk,
                chunk_slots=config.checkpoint_chunk,
            )
        on_disk = info.replay
        if parts.on_checkpoint is not None:
            parts.on_checkpoint(run.path / CHECKPOINT_NAME)
        # The online network at this checkpoint, for `evaluate RUN --model latest`.
        save_model(run.latest_model_path, online, {**model_meta, "step": str(loop.step)})
        chunks = (
            f" ({info.chunks_written} replay chunks written, {info.chunks_kept} kept)"
            if info.replay is not None
            else ""
        )
        console.log(
            f"checkpoint at step {loop.step}: {info.bytes / 1e6:.1f} MB written in "
            f"{info.seconds:.2f} s{chunks}"
        )

    stop: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        del frame
        stop.append(signum)
        loop.request_stop()  # the loop reports at its next step, even inside an evaluation

    # Only the main thread may take signals (a sweep's trial trains in another thread).
    previous = (
        {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        if threading.current_thread() is threading.main_thread()
        else {}
    )
    bar = tqdm(
        total=config.total_steps,
        initial=loop.step,
        unit="step",
        disable=console.quiet,
        dynamic_ncols=True,
        smoothing=0.05,
    )
    console.bar = bar
    # TensorBoard event files in the run directory; a resumed run continues after its step.
    metrics = MetricsWriter(
        run.path, start_step=loop.step, replay_beta=parts.replay.uses_priorities
    )
    postfix: dict[str, str] = {"eps": "1.00", "eval": "-", "loss": "-"}
    failing = False
    try:
        if loop.step == 0:
            metrics.hyperparameters(dataclasses.asdict(config))
        for progress in loop.run():
            result = progress.evaluation
            seconds = clock.lap(excluded=result.seconds if result is not None else 0.0)
            run.append_games(
                [
                    (step, score, length, seconds)
                    for step, score, length in zip(
                        progress.game_steps,
                        progress.game_returns,
                        progress.game_lengths,
                        strict=True,
                    )
                ]
            )
            bar.update(progress.step - bar.n)
            metrics.write(progress)
            postfix["eps"] = f"{progress.epsilon:.2f}"
            if progress.loss is not None:
                postfix["loss"] = f"{progress.loss:.4f}"
            if result is not None:
                run.append_reward(result.index, result.step, result.mean)
                path = run.model_path(result.index)
                save_model(path, online, {**model_meta, "step": str(result.step)})
                postfix["eval"] = f"{result.mean:.1f}"
                if best is None or result.mean > best[1]:
                    best = (result.step, result.mean)
                    meta = {**model_meta, "step": str(result.step), "score": f"{result.mean:g}"}
                    save_model(run.best_model_path, online, meta)
                console.log(
                    f"eval {result.index:3d} at step {result.step}: score {result.mean:.1f} ± "
                    f"{result.std:.1f} over {len(result.scores)} games in {result.seconds:.1f} s "
                    f"-> {path.name}"
                )
                if reporting.films(result.index):
                    video = video_path(run.path, result.index)
                    with writing(video):
                        game = film_evaluation(learner, result, video)
                    console.log(
                        f"video of evaluation {result.index}'s first game (score "
                        f"{game.score:g}, {game.length} steps) -> {video.relative_to(run.path)}"
                    )
                    if tracker is not None:
                        tracker.video(video, result.step)
            bar.set_postfix(postfix, refresh=False)
            if result is not None or stop or (every and loop.step >= next_checkpoint):
                checkpoint()
            clock.pause_until_now()
            if stop and loop.step >= config.total_steps and not progress.evaluation_pending:
                # A late signal: every step is done and saved, so the run has finished (exit
                # status 0: there is nothing to continue, a script may go on with its results).
                name = signal.Signals(stop[0]).name
                console.log(f"{name} after the last step: the run is complete")
                break
            if stop:
                name = signal.Signals(stop[0]).name
                console.log(
                    f"stopped by {name} at step {loop.step}; continue with: "
                    f"atari-dqn train --resume {run.path}"
                )
                return 0 if stop[0] == signal.SIGTERM else 130
        if not saved_at or saved_at[-1] != loop.step:
            checkpoint()
    except BaseException:
        failing = True
        raise
    finally:
        bar.close()
        console.bar = None
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        try:
            metrics.close()
        except WriteError:
            if not failing:  # (a full disk fails the last events too: one message is enough)
                raise
    console.say(f"done: {loop.step} steps, {loop.updates} updates; results in {run.path}")
    return 0


# ---------------------------------------------------------------------- entry points
def default_out(config: Config) -> Path:
    game = config.env_id.split("/")[-1].split("-")[0].replace("NoFrameskip", "").lower()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{game}-{config.preset}-s{config.seed}-{stamp}"


OpenRun = Callable[[Driven], RunDir]
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


def _launch(
    config: Config,
    open_run: OpenRun,
    console: Console,
    launch: Launch,
    *,
    run_dir: Path,
    reporting: Reporting,
    tracking_id: str | None = None,
    restore: Path | None = None,
) -> Finished:
    """Start the W&B run if asked, build the run, open its run directory with ``open_run``
    (which may load a checkpoint into the parts), drive it; whatever ``launch`` started is
    stopped after."""
    tracker = start_tracking(reporting, config, run_dir.name, tracking_id)
    status = 1  # an exception: the W&B run ends as failed
    try:
        with launch(config, restore) as parts:
            run = open_run(parts)
            run.append_session(session_record(parts.loop.step, parts.learner.device))
            save_tracking_id(run.path, tracker)
            if parts.banner:
                console.say(parts.banner)
            status = drive(parts, run, console, reporting, tracker)
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

    def new_run(parts: Driven) -> RunDir:
        del parts
        run = RunDir.create(out, force)
        remove_leftovers(run.path)  # of a killed save in the run --force replaces
        run.write_config(to_toml(config))
        return run

    with after_write_errors(out), RunLock.acquire(out):
        RunDir.check_new(out, force)  # again, now that no other process can start one here
        return _launch(
            config,
            new_run,
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
    the run directory. The seed preset when ``config`` is None. Ctrl-C checkpoints the run and
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
    changes = changes or {}
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
    theirs = state["config"]
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

    def resume(parts: Driven) -> RunDir:
        state = load_checkpoint(
            run.path / CHECKPOINT_NAME,
            agent=parts.learner.agent,
            replay=parts.replay,
            loop=parts.loop,
        )
        parts.replay_on_disk = replay_on_disk(state) if state["replay"] is not None else None
        remove_leftovers(run.path, parts.replay_on_disk)  # what a killed save left behind
        # Anything written after the checkpoint (a kill between an evaluation and its
        # checkpoint) is replayed exactly by the resumed run, so it is dropped, not duplicated.
        if parts.on_checkpoint is not None:
            parts.on_checkpoint(run.path / CHECKPOINT_NAME)
        run.truncate_rewards(step)
        run.truncate_games(step)
        extra = target.state.get("extra", {})
        parts.train_seconds = float(extra.get("train_seconds", 0.0))
        if extra.get("best") is not None:
            parts.best = (int(extra["best"][0]), float(extra["best"][1]))
        run.write_config(to_toml(config))
        console.say(f"resuming {run.path} at step {step}")
        return run

    with after_write_errors(run.path), RunLock.acquire(run.path):
        if read_checkpoint_state(run.path / CHECKPOINT_NAME)["loop"]["step"] != step:
            raise ArtifactError(f"{run.path} was trained on since it was checked; check it again")
        return _launch(
            config,
            resume,
            console,
            launch,
            run_dir=run.path,
            reporting=reporting,
            tracking_id=saved_tracking_id(run.path),
        )
