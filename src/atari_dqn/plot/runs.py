"""Reading run directories: config.toml, rewards.txt (evaluations), games.csv (training games
and the training clock) and sessions.csv (the hosts that clock ran on) into a :class:`Run`.

Runs still training are fine: a last line being written right now (unterminated) is left out.
"""

from __future__ import annotations

import csv
import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from atari_dqn.artifacts import GAMES_HEADER, REWARD_LINE, ArtifactError, RunDir, read_utf8
from atari_dqn.config import Config, canonical_settings


class PlotError(ArtifactError):
    """Bad input to ``atari-dqn plot``; the message is one line."""


@dataclass(frozen=True)
class Games:
    """games.csv: one row per finished training game, in the order they ended."""

    steps: np.ndarray  # (m,) int64, agent step at which each game ended, non-decreasing
    scores: np.ndarray  # (m,) float64, raw full-game score
    lengths: np.ndarray  # (m,) int64, agent steps
    seconds: np.ndarray  # (m,) float64, training wall seconds at its end, non-decreasing

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def has_clock(self) -> bool:
        return len(self.steps) > 0 and int(self.steps[-1]) > 0

    def minutes(self, steps: np.ndarray) -> np.ndarray:
        """Training minutes at ``steps``: interpolated over the rows with (0, 0) prepended,
        beyond the last row extrapolated at the mean rate up to it."""
        if not self.has_clock:
            raise PlotError("games.csv has no game yet: no clock to tell minutes")
        xp = np.concatenate([[0], self.steps]).astype(np.float64)
        fp = np.concatenate([[0.0], self.seconds])
        last = np.append(xp[1:] != xp[:-1], True)  # one row per step: its last
        xp, fp = xp[last], fp[last]
        at = np.asarray(steps, dtype=np.float64)
        seconds = np.where(at > xp[-1], at * (fp[-1] / xp[-1]), np.interp(at, xp, fp))
        return np.asarray(seconds / 60.0, dtype=np.float64)


@dataclass(frozen=True)
class Run:
    path: Path
    config: dict[str, Any]  # config.toml as read (today's defaults and names of values)
    steps: np.ndarray  # (n,) int64, agent steps of each evaluation, increasing
    scores: np.ndarray  # (n,) float64, mean raw score of each evaluation
    games: Games | None = None  # games.csv, where the run has one (and it was read)
    rate: float | None = None  # agent steps/s for minutes instead of games.csv's clock
    hosts: tuple[str, ...] = ()  # where its clock ran (sessions.csv): CPU and torch threads
    passed: int = 0  # a step the run is known to have got to (by --until), beyond its last game

    @property
    def seed(self) -> Any:
        return self.config.get("seed", "?")

    @property
    def has_clock(self) -> bool:
        return self.rate is not None or (self.games is not None and self.games.has_clock)

    def until(self, step: int) -> Run:
        """The run as it stood at agent step ``step`` (``--until``): its evaluations and games
        up to it, and a ``total_steps`` of at most ``step``, so that its last window counts as
        ended there, as for a run that stopped at ``step``."""
        games = self.games
        later = bool((self.steps > step).any())  # the run got past ``step``
        if games is not None:
            later = later or bool((games.steps > step).any())
            keep = games.steps <= step
            games = Games(games.steps[keep], games.scores[keep], games.lengths[keep],
                          games.seconds[keep])  # fmt: skip
        total = min(int(self.config.get("total_steps", step)), step)
        # An evaluation counts at the multiple of eval_every it was due at (with N envs it comes
        # a few steps later: 300,005 is the evaluation of 300k).
        every = int(self.config.get("eval_every", 0) or 0)
        due = self.steps // every * every if every > 0 else self.steps
        evals = due <= step
        return dataclasses.replace(
            self, config={**self.config, "total_steps": total}, steps=self.steps[evals],
            scores=self.scores[evals], games=games, passed=step if later else self.passed,
        )  # fmt: skip

    def minutes(self, steps: np.ndarray) -> np.ndarray:
        """Training minutes at ``steps``: at the given rate, else games.csv's clock."""
        if self.rate is not None:
            return np.asarray(steps, dtype=np.float64) / self.rate / 60.0
        if self.games is None:
            raise PlotError(f"{self.path} has no games.csv: no clock to tell minutes")
        return self.games.minutes(steps)


_EMPTY_STEPS = np.zeros(0, dtype=np.int64)
_EMPTY = np.zeros(0, dtype=np.float64)


# ---------------------------------------------------------------------- reading runs


def read_rewards(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Steps and scores of rewards.txt (``index step score`` per line, the course project's
    format)."""
    steps: list[int] = []
    scores: list[float] = []
    lines = read_utf8(path, PlotError).splitlines(keepends=True)
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        match = REWARD_LINE.match(line)
        if match is None:
            if number == len(lines) and not line.endswith("\n"):
                break  # a line being written right now by a running training
            raise PlotError(f"{path}:{number}: not an 'index step score' line: {line.strip()!r}")
        step = int(match.group(2))
        if steps and step <= steps[-1]:
            raise PlotError(f"{path}:{number}: step {step} does not follow step {steps[-1]}")
        steps.append(step)
        scores.append(float(match.group(3)))
    return np.array(steps, dtype=np.int64), np.array(scores, dtype=np.float64)


def read_games(path: Path) -> Games:
    """games.csv: its header, then ``step,score,length,train_seconds`` lines. An unterminated
    last line (being written right now by a running training) is left out."""
    lines = read_utf8(path, PlotError).splitlines(keepends=True)
    if lines and lines[0].strip() != GAMES_HEADER.strip():
        raise PlotError(f"{path}:1: expected the header {GAMES_HEADER.strip()!r}")
    rows: list[tuple[int, float, int, float]] = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.endswith("\n"):
            break  # the last line, unterminated: a game being written right now
        if not line.strip():
            continue
        parts = line.split(",")
        try:
            if len(parts) != 4:
                raise ValueError(line)
            row = (int(parts[0]), float(parts[1]), int(parts[2]), float(parts[3]))
        except ValueError:
            raise PlotError(
                f"{path}:{number}: not a 'step,score,length,train_seconds' line: {line.strip()!r}"
            ) from None
        before = rows[-1] if rows else (0, 0.0, 0, 0.0)
        if row[0] < before[0]:
            raise PlotError(f"{path}:{number}: step {row[0]} comes before step {before[0]}")
        if row[3] < before[3]:
            raise PlotError(f"{path}:{number}: train_seconds {row[3]:g} comes before {before[3]:g}")
        rows.append(row)
    columns = list(zip(*rows, strict=True)) if rows else [(), (), (), ()]
    return Games(
        np.array(columns[0], dtype=np.int64),
        np.array(columns[1], dtype=np.float64),
        np.array(columns[2], dtype=np.int64),
        np.array(columns[3], dtype=np.float64),
    )


GamesNeed = Literal["no", "optional", "required"]


def load_run(
    path: Path, *, rewards: bool = True, games: GamesNeed = "optional", why: str = ""
) -> Run:
    """The run directory's config.toml, rewards.txt (unless not ``rewards``: then none is read)
    and games.csv (read where there is one, unless ``games="no"``; ``"required"``: a run without
    one is an error, naming ``why``, the flag that needs it)."""
    path = Path(path)
    if not path.is_dir():
        raise PlotError(f"{path} is not a run directory")
    config_path, rewards_path = path / "config.toml", path / "rewards.txt"
    games_path = path / "games.csv"
    if not config_path.is_file():
        raise PlotError(f"{path} is not a run directory (no config.toml)")
    if rewards and not rewards_path.is_file():
        raise PlotError(f"{path} has no rewards.txt (no evaluation yet?)")
    if games == "required" and not games_path.is_file():
        raise PlotError(
            f"{path} has no games.csv (a run from before games.csv?); {why or 'this'} needs it"
        )
    try:
        config = tomllib.loads(config_path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PlotError(f"{config_path} is not valid TOML: {exc}") from None
    # Keys a run's version did not have yet take today's defaults, and old names of values
    # (preset and actions "seed") today's names, so old and new runs group.
    config = canonical_settings({**dataclasses.asdict(Config()), **config})
    if config.get("beta_steps") == config.get("total_steps"):
        config["beta_steps"] = 0  # "anneal over the whole run", however the run saved it
    steps, scores = read_rewards(rewards_path) if rewards else (_EMPTY_STEPS, _EMPTY)
    played = read_games(games_path) if games != "no" and games_path.is_file() else None
    return Run(path, config, steps, scores, played, hosts=read_hosts(RunDir(path)))


def read_hosts(run: RunDir) -> tuple[str, ...]:
    """The distinct hosts (CPU, torch threads) of a run's sessions.csv, in order; none where it
    has no such file or one that cannot be read (it only feeds a note)."""
    try:
        sessions = run.sessions()
    except (OSError, UnicodeDecodeError, csv.Error):
        return ()
    hosts = (f"{s.get('cpu') or '?'}, {s.get('torch_threads') or '?'} threads" for s in sessions)
    return tuple(dict.fromkeys(hosts))
