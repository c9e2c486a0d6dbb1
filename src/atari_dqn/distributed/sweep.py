"""``atari-dqn sweep SPEC.toml``: the spec's trials as ordinary training runs on Ray Tune.

Each trial is an ordinary training run (its :class:`Config` given to the driver's
``start_run``, or ``resume_run``, in the trial's process) with its own run directory
``SWEEP_DIR/trial_NNN``, and the resources the spec asks for. A sweep directory remembers its
spec (``sweep.toml``); running the same spec into it again resumes it: complete trials
(checkpoint at ``total_steps``) are skipped, interrupted ones continue with ``--resume``, the
rest start. At the end: a table of the trials ranked by final evaluation (``trials.csv``), and
``plot``'s curves and group table of the runs grouped by configuration (``curves.png``,
``curves.csv``).
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from atari_dqn.artifacts import RunLock, atomic_write_text
from atari_dqn.distributed.sweep_spec import SpecError, SweepSpec, Trial

SPEC_COPY = "sweep.toml"


@dataclass(frozen=True)
class TrialResult:
    trial: Trial
    run_dir: Path
    final_step: int | None  # of the last evaluation; None: none yet
    final_score: float | None
    best_score: float | None
    status: str  # complete, incomplete, failed


def trial_state(trial: Trial, run_dir: Path) -> tuple[str, int]:
    """``("complete" | "partial" | "new", step)`` from the run directory's checkpoint."""
    from atari_dqn.artifacts import ArtifactError
    from atari_dqn.checkpoint import CHECKPOINT_NAME, read_checkpoint_state

    ckpt = run_dir / CHECKPOINT_NAME
    if not ckpt.is_file():
        return "new", 0
    try:
        step = int(read_checkpoint_state(ckpt)["loop"]["step"])
    except (ArtifactError, KeyError, ValueError):
        return "new", 0
    return ("complete" if step >= trial.config.total_steps else "partial"), step


def run_trial(trial: Trial, run_dir: Path) -> int:
    """A new run of the trial's config, or the resume of an interrupted one; exit status."""
    from atari_dqn import driver

    state, _ = trial_state(trial, run_dir)
    if state == "partial":
        return driver.resume_run(driver.check_resume(run_dir, {}), quiet=True).status
    return driver.start_run(trial.config, run_dir, force=run_dir.exists(), quiet=True).status


def _run_trial(config: dict[str, Any], *, trials: dict[int, Trial], out: str, threads: int) -> None:
    """The Tune trainable: one trial, in the trial's process."""
    import torch
    from ray import tune

    trial = trials[int(config["trial"])]
    run_dir = Path(out) / trial.name
    torch.set_num_threads(threads)
    status = run_trial(trial, run_dir)
    if status != 0:
        raise RuntimeError(f"{trial.name}: training exited with status {status}")
    result = read_result(trial, run_dir)
    tune.report({"final_score": result.final_score, "final_step": result.final_step, "status": 1.0})


def read_result(trial: Trial, run_dir: Path, failed: bool = False) -> TrialResult:
    from atari_dqn.plot import PlotError, read_rewards

    steps, scores = np.zeros(0, dtype=np.int64), np.zeros(0)
    path = run_dir / "rewards.txt"
    if path.is_file():
        try:
            steps, scores = read_rewards(path)
        except PlotError:
            pass
    state, _ = trial_state(trial, run_dir)
    status = "failed" if failed else ("complete" if state == "complete" else "incomplete")
    if len(steps) == 0:
        return TrialResult(trial, run_dir, None, None, None, status)
    return TrialResult(
        trial, run_dir, int(steps[-1]), float(scores[-1]), float(max(scores)), status
    )


def rank(results: list[TrialResult]) -> list[TrialResult]:
    """Best final evaluation first (then best evaluation); trials without one last."""

    def key(r: TrialResult) -> tuple[float, float, int]:
        final = -math.inf if r.final_score is None else r.final_score
        best = -math.inf if r.best_score is None else r.best_score
        return (-final, -best, r.trial.index)

    return sorted(results, key=key)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table_rows(results: list[TrialResult], keys: list[str]) -> list[dict[str, str]]:
    rows = []
    for i, r in enumerate(rank(results), start=1):
        row = {"rank": str(i), "trial": r.trial.name}
        row |= {k: _fmt(r.trial.params.get(k)) for k in keys}
        row |= {
            "seed": str(r.trial.seed),
            "final_step": _fmt(r.final_step),
            "final_score": "-" if r.final_score is None else f"{r.final_score:.1f}",
            "best_score": "-" if r.best_score is None else f"{r.best_score:.1f}",
            "status": r.status,
        }
        rows.append(row)
    return rows


def table_text(rows: list[dict[str, str]]) -> str:
    if not rows:
        return "(no trials)"
    header = list(rows[0])
    widths = [max(len(h), *(len(r[h]) for r in rows)) for h in header]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(r[h].ljust(w) for h, w in zip(header, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def table_csv(rows: list[dict[str, str]]) -> str:
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return buf.getvalue()


def prepare_dir(spec: SweepSpec, out: Path) -> None:
    """Create the sweep directory, or check that it holds this same spec's sweep."""
    copy = out / SPEC_COPY
    if copy.is_file():
        if copy.read_text() != spec.text:
            raise SpecError(
                f"{out} holds a sweep of another spec ({copy} differs); choose another --out"
            )
        return
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SpecError(f"--out {out} exists and is not a sweep directory; choose another")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(copy, spec.text)


def run_sweep(
    spec: SweepSpec,
    out: Path,
    *,
    address: str | None = None,
    say: Callable[[str], None] = print,
) -> int:
    """Run (or resume) the sweep; print the ranked table and the plot's table. Exit status.

    The sweep directory is locked while it runs (a second sweep into it is refused), and each
    trial's run directory by its own training run."""
    out = Path(out).resolve()
    RunLock.check(out)
    prepare_dir(spec, out)
    with RunLock.acquire(out):
        return _run_sweep(spec, out, address=address, say=say)


def _run_sweep(
    spec: SweepSpec, out: Path, *, address: str | None, say: Callable[[str], None]
) -> int:
    states = {t.index: trial_state(t, out / t.name)[0] for t in spec.trials}
    todo = [t for t in spec.trials if states[t.index] != "complete"]
    say(f"sweep {spec.path} -> {out}: {len(spec.trials)} trials, "
        f"{len(spec.trials) - len(todo)} already complete, "
        f"{sum(states[t.index] == 'partial' for t in todo)} to resume")  # fmt: skip
    failed: set[int] = set()
    if todo:
        failed = _tune(spec, out, todo, address=address, say=say)
    results = [read_result(t, out / t.name, t.index in failed) for t in spec.trials]
    keys = spec.swept_keys
    rows = table_rows(results, keys)
    atomic_write_text(out / "trials.csv", table_csv(rows))
    say("\ntrials ranked by final evaluation (trials.csv):")
    say(table_text(rows))
    _plot(results, out, keys, say)
    again = f"atari-dqn sweep {spec.path} --out {out}"
    if failed:
        say(f"{len(failed)} trial(s) failed (Tune's logs: {out / 'tune'}); retry with: {again}")
        return 1
    incomplete = sum(r.status == "incomplete" for r in results)
    if incomplete:
        say(f"{incomplete} trial(s) incomplete (interrupted); resume with: {again}")
        return 130
    return 0


def _plot(results: list[TrialResult], out: Path, keys: list[str], say: Callable) -> None:
    from atari_dqn.plot import PlotError, plot_runs

    runs = [r.run_dir for r in results if r.final_step is not None]
    if not runs:
        say("no plot: no trial has an evaluation yet")
        return
    try:
        _, table, _ = plot_runs(runs, out / "curves.png", label_by=keys, force=True)
    except PlotError as exc:
        say(f"no plot: {exc}")
        return
    say("\nruns grouped by configuration, over seeds (curves.png, curves.csv):")
    say(table)


def _tune(
    spec: SweepSpec,
    out: Path,
    todo: list[Trial],
    *,
    address: str | None,
    say: Callable[[str], None],
) -> set[int]:
    """Run ``todo`` as one Tune experiment; returns the indices of trials that failed."""
    import os

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: no Tune status tables
    import ray
    from ray import tune

    from atari_dqn.distributed.apex import start_ray

    owns_ray = start_ray(address)
    try:
        trainable = tune.with_parameters(
            _run_trial,
            trials={t.index: t for t in todo},
            out=str(out),
            threads=max(1, int(spec.cpu)),
        )
        trainable = tune.with_resources(trainable, {"cpu": spec.cpu, "gpu": spec.gpu})

        class Report(tune.Callback):
            def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any):
                index = int(trial.config["trial"])
                say(f"trial_{index:03d} done")

            def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any):
                index = int(trial.config["trial"])
                say(f"trial_{index:03d} failed (details in {out / 'tune'})")

        tuner = tune.Tuner(
            trainable,
            param_space={"trial": tune.grid_search([t.index for t in todo])},
            tune_config=tune.TuneConfig(
                max_concurrent_trials=spec.max_concurrent or None,
                trial_name_creator=lambda tr: f"trial_{int(tr.config['trial']):03d}",
                trial_dirname_creator=lambda tr: f"trial_{int(tr.config['trial']):03d}",
            ),
            run_config=tune.RunConfig(
                name=time.strftime("%Y%m%d-%H%M%S"),
                storage_path=str(out / "tune"),
                verbose=0,
                callbacks=[Report()],
                failure_config=tune.FailureConfig(max_failures=0),
            ),
        )
        grid = tuner.fit()
        failed: set[int] = set()
        for k in range(len(grid)):
            result = grid[k]
            if result.error is not None and result.config is not None:
                failed.add(int(result.config["trial"]))
        return failed
    finally:
        if owns_ray:
            ray.shutdown()
