"""Learning curves across runs and seeds, from each run directory's rewards.txt and config.toml.

Runs whose configurations are equal once the seed and the run-length-like keys are set aside
(:data:`IGNORED_KEYS`) form a group. A group is drawn as the mean evaluation score across its
runs at each step, with a 95% bootstrap confidence band (the runs resampled with replacement,
:data:`BOOTSTRAP_RESAMPLES` times, from a generator with a fixed seed, so a plot is reproducible).
Runs may have different lengths or still be running: at each step, the runs that have an
evaluation at that step count. A group's "final" score is each run's last evaluation.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from atari_dqn.artifacts import ArtifactError, atomic_write_bytes, atomic_write_text
from atari_dqn.config import Config

# Keys that do not change what a run is, only how long it ran or where: not used for grouping.
IGNORED_KEYS = ("seed", "total_steps", "device", "checkpoint_replay")
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95
DEFAULT_SIZE = (1000, 600)  # pixels
_DPI = 100
_MIN_SIDE, _MAX_SIDE = 100, 10_000


class PlotError(ArtifactError):
    """Bad input to ``atari-dqn plot``; the message is one line."""


@dataclass(frozen=True)
class Run:
    path: Path
    config: dict[str, Any]  # config.toml as read
    steps: np.ndarray  # (n,) int64, agent steps of each evaluation, increasing
    scores: np.ndarray  # (n,) float64, mean raw score of each evaluation

    @property
    def seed(self) -> Any:
        return self.config.get("seed", "?")


@dataclass(frozen=True)
class Group:
    label: str
    runs: tuple[Run, ...]

    def curve(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``steps, mean, low, high`` at every step any run has, over the runs that have it."""
        steps = np.unique(np.concatenate([r.steps for r in self.runs]))
        rng = np.random.default_rng(BOOTSTRAP_SEED)
        mean, low, high = (np.empty(len(steps)) for _ in range(3))
        for i, step in enumerate(steps):
            values = np.array([r.scores[r.steps == step][0] for r in self.runs if step in r.steps])
            mean[i] = values.mean()
            low[i], high[i] = bootstrap_ci(values, rng)
        return steps, mean, low, high

    def summary(self) -> dict[str, Any]:
        final = np.array([r.scores[-1] for r in self.runs])
        final_steps = [int(r.steps[-1]) for r in self.runs]
        return {
            "group": self.label,
            "runs": len(self.runs),
            "seeds": " ".join(str(r.seed) for r in self.runs),
            "final_step_min": min(final_steps),
            "final_step_max": max(final_steps),
            "final_mean": float(final.mean()),
            "final_std": float(final.std()),
            "best": float(max(r.scores.max() for r in self.runs)),
            "iqm": interquartile_mean(final),
        }


def bootstrap_ci(
    values: np.ndarray,
    rng: np.random.Generator,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    confidence: float = CONFIDENCE,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (the seeds resampled)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 1:
        return float(values[0]), float(values[0])
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def interquartile_mean(values: np.ndarray) -> float:
    """Mean of the middle 50%: drop ``floor(n/4)`` values at each end (as rliable's IQM,
    ``scipy.stats.trim_mean(x, 0.25)``). For fewer than 4 values this is the plain mean."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    cut = int(math.floor(0.25 * len(x)))
    return float(x[cut : len(x) - cut].mean())


# ---------------------------------------------------------------------- reading runs
_LINE = re.compile(r"^\s*(\d+)\s+(\d+)\s+(-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*$")


def read_rewards(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Steps and scores of rewards.txt (``index step score`` per line, the seed's format)."""
    steps: list[int] = []
    scores: list[float] = []
    lines = path.read_text().splitlines(keepends=True)
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        match = _LINE.match(line)
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


def load_run(path: Path) -> Run:
    path = Path(path)
    if not path.is_dir():
        raise PlotError(f"{path} is not a run directory")
    config_path, rewards_path = path / "config.toml", path / "rewards.txt"
    if not config_path.is_file():
        raise PlotError(f"{path} is not a run directory (no config.toml)")
    if not rewards_path.is_file():
        raise PlotError(f"{path} has no rewards.txt (no evaluation yet?)")
    try:
        config = tomllib.loads(config_path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PlotError(f"{config_path} is not valid TOML: {exc}") from None
    # Keys a run's version did not have yet take today's defaults, so old and new runs group.
    config = {**dataclasses.asdict(Config()), **config}
    if config.get("beta_steps") == config.get("total_steps"):
        config["beta_steps"] = 0  # "anneal over the whole run", however the run saved it
    steps, scores = read_rewards(rewards_path)
    return Run(path, config, steps, scores)


# ---------------------------------------------------------------------- grouping
def _key(config: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, repr(v)) for k, v in config.items() if k not in IGNORED_KEYS))


def group_runs(runs: Sequence[Run], label_by: Sequence[str] = ()) -> list[Group]:
    """Runs grouped by configuration (seed and run length aside), in order of first appearance.

    A group's label names the ``label_by`` keys, or else the keys whose values differ between
    groups (``preset`` when there is a single group).
    """
    buckets: dict[tuple[tuple[str, str], ...], list[Run]] = {}
    for run in runs:
        buckets.setdefault(_key(run.config), []).append(run)
    members = [tuple(sorted(b, key=_seed_order)) for b in buckets.values()]
    configs = [m[0].config for m in members]
    all_keys = sorted({k for c in configs for k in c} - set(IGNORED_KEYS))
    differ = [k for k in all_keys if len({repr(c.get(k)) for c in configs}) > 1]
    if label_by:
        known = {k for c in configs for k in c}
        for key in label_by:
            if key not in known:
                raise PlotError(f"--label-by {key}: no such key in the runs' config.toml")
        keys = list(label_by)
    else:
        keys = differ or ["preset"]
    labels = [", ".join(f"{k}={c.get(k, '-')}" for k in keys) for c in configs]
    if len(set(labels)) < len(labels):
        raise PlotError(
            f"--label-by {','.join(keys)} does not tell the groups apart; "
            f"they differ in: {', '.join(differ)}"
        )
    return [Group(label, m) for label, m in zip(labels, members, strict=True)]


def _seed_order(run: Run) -> tuple[bool, int, str]:
    seed = run.seed
    number = isinstance(seed, int) and not isinstance(seed, bool)
    return (not number, seed if number else 0, str(seed))


# ---------------------------------------------------------------------- output
def parse_size(text: str) -> tuple[int, int]:
    """``"WxH"`` in pixels."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if match is None:
        raise PlotError(f"--size {text!r}: expected WIDTHxHEIGHT in pixels, e.g. 1000x600")
    return check_size(int(match.group(1)), int(match.group(2)))


def check_size(width: int, height: int) -> tuple[int, int]:
    for name, value in (("width", width), ("height", height)):
        if not _MIN_SIDE <= value <= _MAX_SIDE:
            raise PlotError(f"plot {name} {value} px is out of range [{_MIN_SIDE}, {_MAX_SIDE}]")
    return width, height


def output_paths(png: Path, force: bool) -> tuple[Path, Path]:
    """The PNG and its CSV (same stem); refuses to overwrite either unless ``force``."""
    png = Path(png)
    if png.suffix.lower() != ".png":
        raise PlotError(f"-o {png}: the output must be a .png file")
    if not png.parent.is_dir():
        raise PlotError(f"-o {png}: directory {png.parent} does not exist")
    csv_path = png.with_suffix(".csv")
    for path in (png, csv_path):
        if path.exists() and not force:
            raise PlotError(f"{path} already exists; pass --force to replace it")
    return png, csv_path


TABLE_COLUMNS = (
    "group", "runs", "seeds", "final_step_min", "final_step_max",
    "final_mean", "final_std", "best", "iqm",
)  # fmt: skip


def table_csv(rows: Sequence[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=TABLE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})
    return out.getvalue()


def table_text(rows: Sequence[dict[str, Any]]) -> str:
    header = ("group", "runs", "final step", "final mean ± std", "best", "IQM")
    body = [
        (
            r["group"],
            str(r["runs"]),
            str(r["final_step_min"])
            if r["final_step_min"] == r["final_step_max"]
            else f"{r['final_step_min']}-{r['final_step_max']}",
            f"{r['final_mean']:.1f} ± {r['final_std']:.1f}",
            f"{r['best']:.1f}",
            f"{r['iqm']:.1f}",
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in (header, *body)) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in (header, *body)
    ]
    return "\n".join(line.rstrip() for line in lines)


def draw(groups: Sequence[Group], size: tuple[int, int], title: str) -> bytes:
    """The figure as PNG bytes of exactly ``size`` pixels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width, height = size
    fig, ax = plt.subplots(figsize=(width / _DPI, height / _DPI), dpi=_DPI, layout="constrained")
    try:
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for i, group in enumerate(groups):
            color = colors[i % len(colors)]
            for run in group.runs:
                ax.plot(run.steps, run.scores, color=color, alpha=0.25, linewidth=0.8)
            steps, mean, low, high = group.curve()
            ax.plot(steps, mean, color=color, linewidth=2, marker="o", markersize=3,
                    label=f"{group.label} (n={len(group.runs)})")  # fmt: skip
            ax.fill_between(steps, low, high, color=color, alpha=0.2, linewidth=0)
        ax.set_xlabel("env steps (agent steps; 1 step = 4 emulator frames)")
        ax.set_ylabel("evaluation score (full game, raw)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize="small")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=_DPI)
    finally:
        plt.close(fig)
    return buf.getvalue()


def plot_runs(
    run_dirs: Sequence[Path],
    out: Path,
    *,
    label_by: Sequence[str] = (),
    size: tuple[int, int] = DEFAULT_SIZE,
    force: bool = False,
) -> tuple[list[Group], str, list[Path]]:
    """Read the runs, write ``out`` (PNG) and its CSV.

    Returns the groups, the table as text, and the runs left out for having no evaluation yet.
    """
    png, csv_path = output_paths(out, force)
    check_size(*size)
    runs = [load_run(Path(p)) for p in dict.fromkeys(Path(p).resolve() for p in run_dirs)]
    skipped = [r.path for r in runs if not len(r.steps)]
    runs = [r for r in runs if len(r.steps)]
    if not runs:
        raise PlotError("nothing to plot: no run has an evaluation in its rewards.txt yet")
    groups = group_runs(runs, label_by)
    rows = [g.summary() for g in groups]
    envs = sorted({str(r.config.get("env_id", "?")) for r in runs})
    title = f"{', '.join(envs)}: mean over seeds, {CONFIDENCE:.0%} bootstrap CI"
    atomic_write_bytes(png, draw(groups, size, title))
    atomic_write_text(csv_path, table_csv(rows))
    return groups, table_text(rows), skipped
