"""``atari-dqn bench train``: env steps per second while learning, one row per run.

A row is a name and its run cut into segments (:class:`Row`): the course project's one-file loop
(:mod:`atari_dqn.bench.course_loop`), atari-dqn at each preset, replay kind, env count and
precision, each built by :func:`atari_dqn.build.build_training`. Rows take turns, one segment
each, so a slow spell of a shared machine hits every row alike, and each runs in a process of
its own, set up as it would be when run for real. ``ceilings`` are what the trainer cannot beat:
random-play env steps/s and one update alone.

Each atari-dqn row also says where a step's time went (:class:`~atari_dqn.loop.PhaseTimer`):
µs per agent step in acting, the emulators, sampling, the update, storing and evaluation, and
the rest of the measured time; the largest part is what bounds the row's speed.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
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
from atari_dqn.loop import PHASES, PhaseTimer
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
class Counted:
    """A segment's counted env steps and the seconds its loop spent in each phase
    (:data:`~atari_dqn.loop.PHASES`), measured inside the row's process."""

    steps: int
    parts: dict[str, float]


@dataclass(frozen=True)
class Row:
    """One line of ``bench train``: a name and the run it measures, in segments.

    ``segments()`` returns an iterator; each ``next()`` runs the row a little further (about
    100 env steps for a training loop) and returns how many env steps of that call count
    (0 while warming up), as a plain count or with the time of each phase (:class:`Counted`).
    The runner times each call and advances all rows in turn, one segment each, so a slow
    spell of a shared machine hits every row alike. A row that cannot pause (a subprocess,
    say) may do all its work in one segment.
    """

    name: str
    segments: Callable[[], Iterator[int | Counted]]
    note: str = ""
    replay_ratio: float | None = None  # transitions trained per env step, where known


@dataclass
class RowResult:
    name: str
    steps_per_s: float  # median over repeats
    repeats: list[float] = field(default_factory=list)  # env steps/s of each repeat
    note: str = ""
    replay_ratio: float | None = None  # batch_size / update_every
    # µs per agent step, over all repeats: "total" (what steps/s is made of), each phase the
    # row reported, and "other" (total minus the phases: syncs, reports, the bench's pipe)
    us_per_step: dict[str, float] = field(default_factory=dict)


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
        self,
        replay: str,
        preset: str | None = None,
        num_envs: int = 1,
        bf16: bool | None = None,
        base: Config | None = None,
    ) -> Config:
        """The run a row measures: the preset (or ``base``, a run's settings), with evaluation
        pushed past the end; ``bf16`` True or False: ``--bf16 on`` or ``off`` in place of its
        own (None: its own, as it trains on this host)."""
        base = base if base is not None else preset_config(preset or self.preset or "course")
        num_envs = num_envs or base.num_envs  # 0: the preset's own
        start, total = self.window(base.replace(num_envs=num_envs))
        # How far past the total a run may end: N envs step together; PQN stops at the end of
        # the rollout that crosses it (and counts no step for an env's reset, so a rollout of
        # N x T env steps can end short of a multiple of it).
        overshoot = num_envs * (base.rollout_steps if base.algo == "pqn" else 1)
        changes: dict[str, Any] = {
            "num_envs": num_envs,
            "device": self.device,
            "warmup_steps": self.warmup,
            "total_steps": total,
            # No evaluation inside the measured run (the breakdown's eval column showed one
            # at N = 2, and in PQN rows).
            "eval_every": total + overshoot,
            "eval_games": 1,
            # ε at its final value, so acting runs the network as in most of a real run.
            "eps_decay": 1,
        }
        if bf16 is not None:
            changes["bf16"] = "on" if bf16 else "off"
        if self.buffer_size is not None:
            changes["buffer_size"] = self.buffer_size
        if replay != "preset" and base.algo == "dqn":  # "preset": the preset's own replay
            changes["replay"] = replay
        config = base.replace(**changes)
        config.validate()
        return config

    def measure_from(self) -> int:
        """The step whose progress report starts the clock (reports come every 100 steps)."""
        return -(-(self.warmup + self.ramp) // 100) * 100

    def window(self, config: Config) -> tuple[int, int]:
        """The step whose report starts the clock and the run's last step.

        A PQN run reports once a rollout (``num_envs * rollout_steps`` steps, thousands with the
        preset's 128 envs), so its clock starts at the first report at or past warm-up and ramp
        (the build, the first rollout and its update stay outside) and runs whole rollouts, at
        least ``steps``.
        """
        if config.algo != "pqn":
            start = self.measure_from()
            return start, start + self.steps
        period = config.num_envs * config.rollout_steps
        start = max(1, -(-(self.warmup + self.ramp) // period)) * period
        return start, start + -(-self.steps // period) * period


def loop_segments(
    build: Callable[[PhaseTimer], Training], measure_from: int
) -> Iterator[int | Counted]:
    """A training run as segments: one per progress report (100 steps); steps count once the
    report at ``measure_from`` has passed, each with its loop's time per phase. ``build(timer)``
    runs inside the first, unmeasured one."""
    timer = PhaseTimer()
    training = build(timer)
    prev = None
    for report in training.loop.run():
        parts = timer.take()
        if prev is not None and prev >= measure_from:
            yield Counted(report.step - prev, parts)
        else:
            yield 0
        prev = report.step


def config_segments(config: Config, measure_from: int) -> Iterator[int | Counted]:
    """:func:`loop_segments` of the run ``config`` builds, from arguments a child process can
    receive (the run is built in the child)."""
    return loop_segments(lambda timer: build_training(config, timer=timer), measure_from)


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
    bf16: tuple[bool | None, ...] = (None,),
    threads: list[int] | None = None,
    runs: Sequence[tuple[str, Config]] = (),
) -> list[Row]:
    """One row per (preset or run, replay kind, env count, torch threads, precision); names show
    what varies. ``runs``: (name, settings) of runs to measure as they were configured (their
    replay kind kept). Each row runs in its own process (:func:`child_segments`) at its thread
    count (``threads``; default: ``settings.threads`` alone)."""
    counts: list[int | None] = list(threads) if threads else [settings.threads]
    bases = [(p, preset_config(p), False) for p in presets] + [(n, c, True) for n, c in runs]
    rows = []
    for preset, base, is_run in bases:
        own = base.algo == "pqn" or is_run  # no replay, or a run's own: one row, not per kind
        for kind in ["preset"] if own else kinds:
            for n in num_envs:
                for t in counts:
                    for half in bf16:
                        config = settings.config(kind, preset, n, bf16=half, base=base)
                        parts = [preset] if len(bases) > 1 or is_run else []
                        parts += [kind] if len(kinds) > 1 and not own else []
                        parts += [f"N={config.num_envs}"] if len(num_envs) > 1 else []
                        parts += [f"T={t}"] if len(counts) > 1 else []
                        name = " ".join(parts) or f"atari-dqn {kind} N={n}"
                        if len(bases) == 1 and len(kinds) == 1 and len(parts) > 0:
                            name = "atari-dqn " + " ".join(parts)
                        name += " --bf16" if half else ""
                        start = settings.window(config)[0]
                        kwargs = {"config": config, "measure_from": start}

                        def segments(
                            kwargs: dict[str, Any] = kwargs, t: int | None = t
                        ) -> Iterator[int | Counted]:
                            return child_segments(config_segments, kwargs, t)

                        what = "run" if is_run else "preset"
                        replay = config.replay if config.algo == "dqn" else "none"
                        note = f"{what}={preset} replay={replay} envs={config.num_envs} "
                        note += f"threads={t} bf16={config.bf16}"
                        if config.algo == "pqn":
                            note += f" clock from step {start} to {config.total_steps}"
                        ratio = config.replay_ratio
                        rows.append(Row(name, segments, note=note, replay_ratio=ratio))
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
    """Run all rows side by side, one segment each in turn, ``repeats`` times; env steps/s,
    and µs per step of each phase where the rows report them.

    Only the time inside a row's own segments counts toward its figure.
    """
    results = [RowResult(r.name, 0.0, [], r.note, r.replay_ratio) for r in rows]
    all_steps = [0] * len(rows)
    all_seconds = [0.0] * len(rows)
    all_parts: list[dict[str, float]] = [{} for _ in rows]
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
                elapsed = time.perf_counter() - start
                if isinstance(counted, Counted):
                    if counted.steps:
                        for phase, secs in counted.parts.items():
                            all_parts[i][phase] = all_parts[i].get(phase, 0.0) + secs
                    counted = counted.steps
                if counted:
                    seconds[i] += elapsed
                    steps[i] += counted
        for i, res in enumerate(results):
            if steps[i] == 0:
                raise RuntimeError(f"row {res.name!r} ended before its measurement began")
            res.repeats.append(steps[i] / seconds[i])
            all_steps[i] += steps[i]
            all_seconds[i] += seconds[i]
        gc.collect()
    for i, res in enumerate(results):
        res.steps_per_s = statistics.median(res.repeats)
        res.us_per_step = breakdown(all_seconds[i], all_parts[i], all_steps[i])
    return results


def breakdown(total: float, parts: dict[str, float], steps: int) -> dict[str, float]:
    """µs per step: ``total``, each of ``parts`` (seconds) and ``other`` (the rest, at least
    0); only ``total`` where no parts were reported."""
    per_step = 1e6 / steps
    out = {"total": total * per_step}
    if parts:
        out |= {phase: parts.get(phase, 0.0) * per_step for phase in PHASES}
        out["other"] = max(0.0, total - sum(parts.values())) * per_step
    return out


def bound_by(us_per_step: dict[str, float]) -> str:
    """The phase that takes the most of a step's time, with its share."""
    phases = {k: v for k, v in us_per_step.items() if k != "total"}
    if not phases or us_per_step["total"] <= 0:
        return ""
    name = max(phases, key=lambda k: phases[k])
    return f"{name} {100 * phases[name] / us_per_step['total']:.0f}%"


def train_result(settings: TrainBenchSettings, results: list[RowResult]) -> Result:
    """The figures of ``bench train``: settings, rows, ratios to the first row, goals."""
    by_name = {r.name: r.steps_per_s for r in results}
    ratios = {f"{r.name}/{results[0].name}": r.steps_per_s / results[0].steps_per_s
              for r in results[1:]}  # fmt: skip
    if "prioritized" in by_name and "uniform" in by_name:
        ratios["prioritized/uniform"] = by_name["prioritized"] / by_name["uniform"]
    return {
        "settings": {**asdict(settings), "measure_from": settings.measure_from()},
        "phases": [*PHASES, "other"],  # the parts of each row's us_per_step beside "total"
        "rows": [asdict(r) for r in results],
        "ratios": ratios,
        "goals": {"prioritized/uniform_min": 0.9},
    }


def train_table(result: Result) -> str:
    s = result["settings"]
    threads = ",".join(str(t) for t in s.get("thread_counts", [s["threads"]])) or "default"
    first = result["rows"][0]
    vs = "vs " + first["name"]
    name_w = max(28, 2 + max(len(r["name"]) for r in result["rows"]))
    ratio_w = max(16, len(vs))
    lines = [
        f"bench train: {'preset ' + s['preset'] if s['preset'] else 'runs'}, device {s['device']} "
        f"({threads} torch threads), warm-up {s['warmup']} steps, "
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
    lines += breakdown_table(result["rows"])
    if "prioritized/uniform" in result["ratios"]:
        ratio = result["ratios"]["prioritized/uniform"]
        goal = result["goals"]["prioritized/uniform_min"]
        lines.append(
            f"prioritized/uniform = {ratio:.3f} (goal >= {goal}: "
            f"{'met' if ratio >= goal else 'NOT met'})"
        )
    return "\n".join(lines)


def breakdown_table(rows: list[dict[str, Any]]) -> list[str]:
    """Where a step's time goes, per row: µs per agent step in each phase, the replay ratio
    (transitions trained per env step) and the largest part (what bounds the row's speed)."""
    timed = [r for r in rows if len(r.get("us_per_step", {})) > 1]
    if not timed:
        return []
    cols = [*PHASES, "other"]
    name_w = max(28, 2 + max(len(r["name"]) for r in timed))
    lines = [
        "time per agent step (µs): act = ε-greedy forward pass, env = waiting for the"
        " emulators (what the updates did not hide), sample = replay draws, update = the"
        " gradient step, store = recording transitions, eval = evaluation, other = the rest;"
        " RR = replay ratio, batch / update-every",
        f"{'row':<{name_w}}{'total':>8}" + "".join(f"{c:>8}" for c in cols)
        + f"{'RR':>6}   bound by",
    ]  # fmt: skip
    for r in timed:
        us = r["us_per_step"]
        rr = f"{r['replay_ratio']:g}" if r.get("replay_ratio") is not None else "-"
        lines.append(
            f"{r['name']:<{name_w}}{us['total']:>8.0f}"
            + "".join(f"{us[c]:>8.0f}" for c in cols)
            + f"{rr:>6}   {bound_by(us)}"
        )
    return lines


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
    threads: list[int] | None = None,
    runs: Sequence[tuple[str, Config]] = (),
) -> Result:
    """The rows of every (preset, kind, env count[, thread count][, --bf16]), after the course
    project's loop if asked, run side by side ``repeats`` times; each at its torch thread count
    of ``threads`` (default: ``settings.threads`` alone, which the course project's loop and
    the ceilings use, as the first of ``threads`` when given); the ceilings in a process of
    their own if asked."""
    for n in num_envs:  # a bad combination fails here, before any run
        for p in presets:
            settings.config(kinds[0], p, n)
        for _, run in runs:
            settings.config("preset", num_envs=n, base=run)
    if threads:
        settings = dataclasses.replace(settings, threads=threads[0])
    previous = torch.get_num_threads()
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    try:
        settings = dataclasses.replace(settings, threads=torch.get_num_threads())
        # With --bf16, each row in float32 and in bf16; without, each as it trains ('auto'
        # resolved on this host).
        precisions: tuple[bool | None, ...] = (False, True) if bf16 else (None,)
        rows = config_rows(settings, presets=presets, kinds=kinds, num_envs=num_envs,
                           bf16=precisions, threads=threads, runs=runs)  # fmt: skip
        if course_loop:
            rows.insert(0, course_loop_row(settings, settings.config(kinds[0]).env_id))
        result = train_result(settings, run_rows(rows, repeats))
        counts: list[int | None] = list(threads) if threads else [settings.threads]
        result["settings"]["thread_counts"] = counts
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
