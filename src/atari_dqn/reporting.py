"""What a run reports besides its own files: Weights & Biases (``--track``) and videos of its
evaluations (``--capture-video``). Neither changes what the run learns or its curves.

* ``--track``: a W&B run (``--wandb-project``, ``--wandb-entity``) named after the run
  directory, with the resolved config as its config and the TensorBoard scalars synced into it
  (``sync_tensorboard``, as CleanRL does), and each evaluation video uploaded. Its id is kept in
  ``RUN/wandb_id`` so that ``--resume`` continues the same W&B run. W&B keeps its own files where
  it always does (``./wandb``, or ``$WANDB_DIR``), not in the run directory: its TensorBoard sync
  would otherwise watch its own files under the event files' directory.
* ``--capture-video`` (``--video-every K``): the first game of every K-th evaluation, filmed into
  ``RUN/videos/eval_NNN.mp4`` (written under a temporary name, then renamed). The game is played
  again right after the evaluation with the same weights, env seed and ε-noise seed: evaluation
  games are a pure function of those (evaluate.play), so it is that game, frame for frame (the
  log says its score, which equals the evaluation's first score). Its time is not training time.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atari_dqn.artifacts import atomic_write_text
from atari_dqn.config import Config, UsageError
from atari_dqn.evaluate import EvalResult, Game, evaluation_seed, play

if TYPE_CHECKING:
    from atari_dqn.build import LearnerSide

WANDB_ID_NAME = "wandb_id"


@dataclass(frozen=True)
class Reporting:
    """How a run reports beyond its run directory (the ``train`` flags of the same names)."""

    track: bool = False
    wandb_project: str = "atari-dqn"
    wandb_entity: str | None = None
    capture_video: bool = False
    video_every: int = 1

    def check(self) -> None:
        """Bad input (UsageError), before any work."""
        if self.video_every < 1:
            raise UsageError(f"--video-every must be >= 1, got {self.video_every}")
        if self.track and importlib.util.find_spec("wandb") is None:
            raise UsageError(
                "--track needs Weights & Biases: pip install 'atari-dqn[wandb]' (or wandb)"
            )
        if self.track and not self.wandb_project:
            raise UsageError("--wandb-project must not be empty")

    def films(self, index: int) -> bool:
        """Whether evaluation number ``index`` (1, 2, ...) is filmed."""
        return self.capture_video and index % self.video_every == 0


def video_path(run_dir: Path, index: int) -> Path:
    return run_dir / "videos" / f"eval_{index:03d}.mp4"


def film_evaluation(learner: LearnerSide, result: EvalResult, path: Path) -> Game:
    """Play the first game of evaluation ``result`` again, into a video at ``path``."""
    from atari_dqn.video import VideoWriter

    settings = learner.settings
    path.parent.mkdir(exist_ok=True)
    # A resumed run repeats an evaluation a kill interrupted: the same game, filmed again.
    with VideoWriter(path, overwrite=True) as writer:
        [game] = play(
            learner.eval_env,
            learner.agent.act_eval,  # as the evaluation played it (noisy nets: mean weights)
            games=1,
            epsilon=settings.eval_epsilon,
            seed=evaluation_seed(settings.eval_seed, result.index),
            on_scored_frame=writer,
        )
    return game


class Tracker:
    """A W&B run for the length of a training process (``close`` ends it)."""

    def __init__(self, run: Any) -> None:
        self._run = run  # wandb.sdk.wandb_run.Run (wandb is optional, hence not imported here)

    @property
    def id(self) -> str:
        return str(self._run.id)

    def video(self, path: Path, step: int) -> None:
        import wandb

        self._run.log({"videos/eval": wandb.Video(str(path), format="mp4"), "global_step": step})

    def close(self, status: int) -> None:
        self._run.finish(exit_code=status)


def start_tracking(
    reporting: Reporting, config: Config, name: str, run_id: str | None
) -> Tracker | None:
    """The W&B run of ``--track`` (None without it), started before the run's TensorBoard
    writer so that its scalars are synced. A W&B that cannot start is bad input (UsageError:
    not logged in, no network) and is refused before any work."""
    if not reporting.track:
        return None
    import wandb

    try:
        run = wandb.init(
            project=reporting.wandb_project,
            entity=reporting.wandb_entity,
            name=name,
            id=run_id,
            resume="allow",
            config=dataclasses.asdict(config),
            sync_tensorboard=True,
        )
    except Exception as exc:  # noqa: BLE001 - W&B's errors have no common base class
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(
            f"--track: W&B did not start ({first}); run `wandb login`, or set WANDB_MODE=offline"
        ) from None
    return Tracker(run)


def saved_tracking_id(run_dir: Path) -> str | None:
    path = run_dir / WANDB_ID_NAME
    return (path.read_text().strip() or None) if path.is_file() else None


def save_tracking_id(run_dir: Path, tracker: Tracker | None) -> None:
    if tracker is not None:
        atomic_write_text(run_dir / WANDB_ID_NAME, tracker.id + "\n")
