"""``atari-dqn bench train``: env steps per second while learning, one row per run.

A row is a name and its run cut into segments (:class:`Row`): the course project's one-file loop
(:mod:`atari_dqn.bench.course_loop`), atari-dqn at each preset, replay kind, env count and
precision, each built by :func:`atari_dqn.build.build_training`. Rows take turns, one segment
each, so a slow spell of a shared machine hits every row alike, and each runs in a process of
its own, set up as it would be when run for real. ``ceilings`` are what the trainer cannot beat:
random-play env steps/s and one update alone.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from typing import Any, TypeVar

import numpy as np
import torch

from atari_dqn.bench.course_loop import course_loop_segments
from atari_dqn.bench.timing import Result, median_us
from atari_dqn.bench.update import Variant, fixed_batch, variant_agent
from atari_dqn.build import Training, build_env, build_training
from atari_dqn.config import Config, ConfigError, preset_config
from atari_dqn.envs import resolve_actions
from atari_dqn.perf import tune_allocator

T = TypeVar("T")
REPLAY_KINDS = ("uniform", "prioritized")


def parse_kinds(text: str) -> list[str]:
    """``--replay``: replay kinds, or ``preset`` for each preset's own; one-line ConfigError."""
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    if not kinds:
        raise ConfigError("--replay needs at least one of: " + ", ".join(REPLAY_KINDS))
    for k in kinds:
        if k not in (*REPLAY_KINDS, "preset"):
            raise ConfigError(f"unknown replay kind {k!r} in --replay: choose from "
                              + ", ".join(REPLAY_KINDS))  # fmt: skip
    return kinds


@dataclass(frozen=True)
class Row:
    """One line of ``bench train``: a name and the run it measures, in segments.

    ``segments()`` returns an iterator; each ``next()`` runs the row a little further (about
    100 env steps for a training loop) and returns how many env steps of that call count
    (0 while warming up). The runner times each call and advances all rows in turn, one
    segment each, so a slow spell of a shared machine hits every row alike. A row that cannot
    pause (a subprocess, say) may do all its work in one segment.
    """

    name: str
    segments: Callable[[], Iterator[int]]
    note: str = ""


@dataclass
class RowResult:
    name: str
    steps_per_s: float  # median over repeats
    repeats: list[float] = field(default_factory=list)  # env steps/s of each repeat
    note: str = ""


@dataclass(frozen=True)
class TrainBenchSettings:
    """How each training row is run: warm-up, then a 100-step ramp, then ``steps`` measured."""

    steps: int
    warmup: int
    preset: str = "course"
    device: str = "cpu"
    buffer_size: int | None = None  # None: the preset's
    threads: int | None = None  # torch CPU threads; None: torch's default
    ramp: int = 100  # learning steps after warm-up before the clock starts (first updates)

    def config(
        self, replay: str, preset: str | None = None, num_envs: int = 1, bf16: bool = False
    ) -> Config:
        """The run a row measures: the preset, with evaluation pushed past the end."""
        base = preset_config(preset or self.preset)
        start = self.measure_from()
        total = start + self.steps
        changes: dict[str, Any] = {
            "bf16": bf16,
            "num_envs": num_envs,
            "device": self.device,
            "warmup_steps": self.warmup,
            "total_steps": total,
            "eval_every": total + 1,  # no evaluation inside the measured run
            "eval_games": 1,
            # ε at its final value, so acting runs the network as in most of a real run.
            "eps_decay": 1,
        }
        if self.buffer_size is not None:
            changes["buffer_size"] = self.buffer_size
        if replay != "preset":  # "preset": the preset's own replay
            changes["replay"] = replay
        config = base.replace(**changes)
        config.validate()
        return config

    def measure_from(self) -> int:
        """The step whose progress report starts the clock (reports come every 100 steps)."""
        return -(-(self.warmup + self.ramp) // 100) * 100


def loop_segments(build: Callable[[], Training], measure_from: int) -> Iterator[int]:
    """A training run as segments: one per progress report (100 steps); steps count once the
    report at ``measure_from`` has passed. ``build()`` runs inside the first, unmeasured one."""
    training = build()
    prev = None
    for report in training.loop.run():
        yield report.step - prev if prev is not None and prev >= measure_from else 0
        prev = report.step


def config_segments(config: Config, measure_from: int) -> Iterator[int]:
    """:func:`loop_segments` of the run ``config`` builds, from arguments a child process can
    receive (the run is built in the child)."""
    return loop_segments(lambda: build_training(config), measure_from)


def _segment_server(
    conn: Connection,
    factory: Callable[..., Iterable[object]],
    kwargs: dict[str, Any],
    threads: int | None,
) -> None:
    """Child side of :func:`child_segments`: one segment per request, its count sent back."""
    if threads is not None:
        torch.set_num_threads(threads)
    segments: Iterator[object] | None = None
    while conn.recv():
        try:
            if segments is None:
                segments = iter(factory(**kwargs))
            value = next(segments)
        except StopIteration:
            conn.send(("done", None))
            return
        except BaseException as exc:  # reported by the parent, which owns the terminal
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
            return
        conn.send(("segment", value))


def child_segments(
    factory: Callable[..., Iterable[T]], kwargs: dict[str, Any], threads: int | None = None
) -> Iterator[T]:
    """``factory(**kwargs)``'s segments, each run in a fresh process of the row's own.

    Each row lives in a process as it would when run for real: its allocator, threads and
    warm caches are its own (a training process tunes its allocator, the course project's script
    does not), and no row inherits another's state. The parent asks for one segment at a time and
    waits, so only one row runs at any moment. ``factory`` and ``kwargs`` must be picklable.
    """
    import multiprocessing as mp

    # Forked from a clean server (no fork of a process that holds torch's threads), which has
    # imported what every row needs, so a row starts in a fraction of a second.
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "atari_dqn.build", "atari_dqn.bench.train"])
    parent, child = ctx.Pipe()
    process = ctx.Process(target=_segment_server, args=(child, factory, kwargs, threads))
    process.daemon = True
    process.start()
    child.close()
    try:
        while True:
            parent.send(True)
            try:
                kind, value = parent.recv()
            except EOFError:
                process.join(timeout=5)
                msg = f"bench row process died (exit code {process.exitcode})"
                raise RuntimeError(msg) from None
            if kind == "done":
                return
            if kind == "error":
                raise RuntimeError(f"bench row failed in its process: {value}")
            yield value
    finally:
        try:
            parent.send(False)
        except OSError:
            pass
        process.join(timeout=30)
        if process.is_alive():
            process.kill()
            process.join()
        parent.close()


def config_rows(
    settings: TrainBenchSettings,
    *,
    presets: list[str],
    kinds: list[str],
    num_envs: list[int],
    bf16: tuple[bool, ...] = (False,),
) -> list[Row]:
    """One row per (preset, replay kind, env count, precision); names show what varies. Each row
    runs in its own process (:func:`child_segments`)."""
    start = settings.measure_from()
    rows = []
    for preset in presets:
        for kind in kinds:
            for n in num_envs:
                for half in bf16:
                    parts = [preset] if len(presets) > 1 else []
                    parts += [kind] if len(kinds) > 1 else []
                    parts += [f"N={n}"] if len(num_envs) > 1 else []
                    name = " ".join(parts) or f"atari-dqn {kind} N={n}"
                    if len(presets) == 1 and len(kinds) == 1 and len(num_envs) > 1:
                        name = f"atari-dqn N={n}"
                    name += " --bf16" if half else ""
                    config = settings.config(kind, preset, n, bf16=half)
                    kwargs = {"config": config, "measure_from": start}

                    def segments(kwargs: dict[str, Any] = kwargs) -> Iterator[int]:
                        return child_segments(config_segments, kwargs, settings.threads)

                    note = f"preset={preset} replay={kind} envs={n} bf16={half}"
                    rows.append(Row(name, segments, note=note))
    return rows


def course_loop_row(settings: TrainBenchSettings, env_id: str) -> Row:
    """The baseline: the course project's single-file loop, at the same warm-up, ε and length, in a
    process of its own with the defaults a plain ``python main.py`` gets."""
    start = settings.measure_from()
    total = start + settings.steps
    kwargs = {"env_id": env_id, "warmup": settings.warmup, "measure_from": start, "total": total,
              "epsilon": 0.1}  # fmt: skip
    return Row(
        "course loop",
        lambda: child_segments(course_loop_segments, kwargs, settings.threads),
        note="single-file transcription of the course project's main.py "
        "(atari_dqn.bench.course_loop)",
    )


def run_rows(rows: list[Row], repeats: int = 1) -> list[RowResult]:
    """Run all rows side by side, one segment each in turn, ``repeats`` times; env steps/s.

    Only the time inside a row's own segments counts toward its figure.
    """
    results = [RowResult(r.name, 0.0, [], r.note) for r in rows]
    for _ in range(repeats):
        running = {i: iter(r.segments()) for i, r in enumerate(rows)}
        steps = [0] * len(rows)
        seconds = [0.0] * len(rows)
        while running:
            for i, it in list(running.items()):
                start = time.perf_counter()
                try:
                    counted = next(it)
                except StopIteration:
                    del running[i]
                    continue
                if counted:
                    seconds[i] += time.perf_counter() - start
                    steps[i] += counted
        for i, res in enumerate(results):
            if steps[i] == 0:
                raise RuntimeError(f"row {res.name!r} ended before its measurement began")
            res.repeats.append(steps[i] / seconds[i])
        gc.collect()
    for res in results:
        res.steps_per_s = statistics.median(res.repeats)
    return results


def train_result(settings: TrainBenchSettings, results: list[RowResult]) -> Result:
    """The figures of ``bench train``: settings, rows, ratios to the first row, goals."""
    by_name = {r.name: r.steps_per_s for r in results}
    ratios = {f"{r.name}/{results[0].name}": r.steps_per_s / results[0].steps_per_s
              for r in results[1:]}  # fmt: skip
    if "prioritized" in by_name and "uniform" in by_name:
        ratios["prioritized/uniform"] = by_name["prioritized"] / by_name["uniform"]
    return {
        "settings": {**asdict(settings), "measure_from": settings.measure_from()},
        "rows": [asdict(r) for r in results],
        "ratios": ratios,
        "goals": {"prioritized/uniform_min": 0.9},
    }


def train_table(result: Result) -> str:
    s = result["settings"]
    first = result["rows"][0]
    vs = "vs " + first["name"]
    name_w = max(28, 2 + max(len(r["name"]) for r in result["rows"]))
    ratio_w = max(16, len(vs))
    lines = [
        f"bench train: preset {s['preset']}, device {s['device']} "
        f"({s['threads'] or 'default'} torch threads), warm-up {s['warmup']} steps, "
        f"clock from step {s['measure_from']}, {s['steps']} learning steps measured per run; "
        "rows run side by side, 100 steps at a time, each in its own process",
        f"{'row':<{name_w}}{'env steps/s':>12}  {vs:>16}   runs (steps/s)",
    ]
    for r in result["rows"]:
        runs = " ".join(f"{x:.1f}" for x in r["repeats"])
        ratio = r["steps_per_s"] / first["steps_per_s"]
        lines.append(
            f"{r['name']:<{name_w}}{r['steps_per_s']:>12.1f}  {ratio:>{ratio_w}.3f}   {runs}"
        )
    if "prioritized/uniform" in result["ratios"]:
        ratio = result["ratios"]["prioritized/uniform"]
        goal = result["goals"]["prioritized/uniform_min"]
        lines.append(
            f"prioritized/uniform = {ratio:.3f} (goal >= {goal}: "
            f"{'met' if ratio >= goal else 'NOT met'})"
        )
    return "\n".join(lines)


# The update alone, timed both ways: as the course project does it and as atari-dqn does (the
# default).
UPDATE_PATHS = {"per-tensor Adam, NCHW": False, "fused Adam, channels-last": True}


def once(fn: Callable[..., T], kwargs: dict[str, Any]) -> Iterator[T]:
    """``fn(**kwargs)`` as a single segment, to run it in a child process."""
    yield fn(**kwargs)


def ceilings(settings: TrainBenchSettings, num_envs: list[int], batch_size: int = 32) -> Result:
    """What the trainer cannot beat: env steps/s of random play, ms of one update alone.

    Run it in a process set up as a training process is (:func:`tune_allocator`)."""
    config = settings.config("uniform")
    actions = resolve_actions(config.env_id, config.actions)
    rng = np.random.default_rng(0)
    env_rates = {}
    for n in sorted(set(num_envs)):
        env = build_env(config, actions, n)
        env.reset(seed=0)
        steps, start = 0, time.perf_counter()
        while steps < max(2000, 200 * n):
            env.send(rng.integers(0, len(actions), size=n))
            steps += int(env.recv().transition.sum())
        env_rates[f"N={n}"] = steps / (time.perf_counter() - start)
    batch = fixed_batch(len(actions), batch_size)
    device = torch.device(settings.device)
    update_ms = {}
    for name, fast in UPDATE_PATHS.items():
        agent = variant_agent(Variant(fused=fast, channels_last=fast), config, len(actions), device)
        update_ms[name] = median_us(functools.partial(agent.update, batch), inner=3, reps=7) / 1000
    return {
        "env_steps_per_s": env_rates,
        "update_ms": update_ms,
        "batch_size": batch_size,
        "update_every": config.update_every,
    }


def training_ceilings(settings: TrainBenchSettings, num_envs: list[int]) -> Result:
    """:func:`ceilings` in a process whose allocator is set up as a training process's."""
    tune_allocator()
    return ceilings(settings, num_envs)


def ceilings_table(c: Result) -> list[str]:
    envs = ", ".join(f"{k} {v:.0f}" for k, v in c["env_steps_per_s"].items())
    upd = ", ".join(f"{k} {v:.1f} ms" for k, v in c["update_ms"].items())
    best = min(c["update_ms"].values())
    return [
        f"ceilings: random play (env only) steps/s: {envs}",
        f"          one batch-{c['batch_size']} update alone: {upd}"
        f" -> at most {1000 * c['update_every'] / best:.0f} steps/s at one update per"
        f" {c['update_every']} steps",
    ]


def train_benchmark(
    settings: TrainBenchSettings,
    *,
    presets: list[str],
    kinds: list[str],
    num_envs: list[int],
    repeats: int = 1,
    bf16: bool = False,
    course_loop: bool = False,
    with_ceilings: bool = False,
) -> Result:
    """The rows of every (preset, kind, env count[, --bf16]), after the course project's loop if
    asked, run side by side ``repeats`` times at ``settings.threads`` torch threads; the ceilings in
    a process of their own if asked."""
    for p in presets:
        for n in num_envs:
            settings.config(kinds[0], p, n)  # a bad combination fails here, before any run
    previous = torch.get_num_threads()
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    try:
        settings = dataclasses.replace(settings, threads=torch.get_num_threads())
        precisions = (False, True) if bf16 else (False,)
        rows = config_rows(settings, presets=presets, kinds=kinds, num_envs=num_envs,
                           bf16=precisions)  # fmt: skip
        if course_loop:
            rows.insert(0, course_loop_row(settings, settings.config(kinds[0]).env_id))
        result = train_result(settings, run_rows(rows, repeats))
        if with_ceilings:
            what = {"settings": settings, "num_envs": num_envs}
            kwargs = {"fn": training_ceilings, "kwargs": what}
            (result["ceilings"],) = child_segments(once, kwargs, settings.threads)
    finally:
        torch.set_num_threads(previous)
    return result


def train_report(result: Result) -> str:
    """The table of ``bench train``, and its ceilings when measured."""
    table = train_table(result)
    if "ceilings" in result:
        table += "\n" + "\n".join(ceilings_table(result["ceilings"]))
    return table
