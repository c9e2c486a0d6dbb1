"""``atari-dqn bench envs``: vectorised-env backends side by side.

Random-play env steps/s of ale-py's C++ ``AtariVectorEnv`` (what :mod:`atari_dqn.vector` uses)
and EnvPool (``pip install envpool``), both driven the way the training loop drives its env:
``send(actions)`` then ``recv()``, all N envs per call (``batch_size == num_envs``). One step is
one agent step of one env (4 emulator frames), so steps/s counts ``N`` per ``send``/``recv``.

Both backends get the settings of :class:`atari_dqn.vector.AtariVector`: 84x84 grayscale, frame
skip 4 with a max over the last two frames, one frame per observation (``stack_num=1``), up to 30
no-ops and FIRE at a reset, full games (no episodic life) that reset automatically on the next
step, 108,000 frames (27,000 steps) per game at most, unclipped rewards, the game's minimal
action set, ``repeat_action_probability`` 0 for ``NoFrameskip-v4`` ids and 0.25 for ``ALE/``.

Timing: for each N both envs are built, reset and warmed up, then each repeat times ``steps`` env
steps of one backend and then of the other (the order alternates, ABBA), so a slow spell of a
shared machine hits both alike; the median of the repeats is reported. Random actions are drawn
before timing. Both pools use the same worker-thread count (``min(N, cpus)`` unless given).

:func:`compare_frames` checks that the two give the same observations for one fixed action
sequence, and reports by how much they differ where they do not.

EnvPool's ROMs: the ``envpool`` wheel depends on ``envpool-assets``, which ships the Atari ROMs
(the same files as ale-py's: breakout.bin has one MD5 in both). EnvPool reads
``<base_path>/atari/roms/<game>.bin``; :func:`envpool_base_path` can build such a folder of
links to ale-py's ROMs (``base_path=`` of ``envpool.make``) when a game is missing there.
"""

from __future__ import annotations

import math
import os
import statistics
import tempfile
import time
from typing import Any

import numpy as np

from atari_dqn.bench.timing import Result, check_positive
from atari_dqn.config import ConfigError

BACKENDS = ("ale", "envpool")
NOT_INSTALLED = "not installed"
DEFAULT_ENV = "BreakoutNoFrameskip-v4"
MAX_FRAMES = 108_000  # per game, as AtariVector; EnvPool counts agent steps: 108000 / 4
FRAME_SKIP = 4
NOOP_MAX = 30
WARMUP_CALLS = 20


# ====================================================================== backends
def _game(env_id: str) -> tuple[str, float]:
    """The ROM id of a checked env id and the sticky-action probability AtariVector uses."""
    from atari_dqn import envs

    try:
        envs.check_env_id(env_id)
    except envs.EnvError as exc:
        raise ConfigError(str(exc)) from None
    return envs.game_of(env_id), 0.25 if env_id.startswith("ALE/") else 0.0


def envpool_status() -> dict[str, Any]:
    """``{"installed": bool, "version": str | None, "error": str | None}`` (no crash)."""
    try:
        import envpool
    except Exception as exc:  # ImportError, or a wheel that does not load here
        return {"installed": False, "version": None, "error": f"{type(exc).__name__}: {exc}"}
    return {"installed": True, "version": getattr(envpool, "__version__", "?"), "error": None}


def envpool_task(game: str) -> str:
    """EnvPool's task id of an ale-py ROM id: 'space_invaders' -> 'SpaceInvaders-v5'."""
    return "".join(part.capitalize() for part in game.split("_")) + "-v5"


def envpool_base_path(game: str) -> str | None:
    """``None`` if EnvPool's own assets have the game's ROM, else a folder of ale-py's ROMs.

    EnvPool loads ``<base_path>/atari/roms/<game>.bin``; ale-py keeps its ROMs as
    ``ale_py/roms/<game>.bin``, so a folder ``atari/roms`` linked there serves both.
    """
    import ale_py.roms
    import envpool

    if _registered(game):
        own = envpool.make_spec(envpool_task(game)).config.base_path
        if os.path.exists(os.path.join(own, "atari", "roms", game + ".bin")):
            return None
    rom = ale_py.roms.get_rom_path(game)
    if rom is None:
        raise ConfigError(f"ale-py has no ROM for {game!r}")
    roms = os.path.dirname(rom)
    base = tempfile.mkdtemp(prefix="envpool-ale-roms-")
    os.makedirs(os.path.join(base, "atari"))
    os.symlink(roms, os.path.join(base, "atari", "roms"))
    return base


def _registered(game: str) -> bool:
    import envpool

    return envpool_task(game) in envpool.list_all_envs()


class AleBackend:
    """ale-py's ``AtariVectorEnv`` with :class:`atari_dqn.vector.AtariVector`'s settings."""

    name = "ale"

    def __init__(
        self, env_id: str, num_envs: int, threads: int, *, noop_max: int = NOOP_MAX
    ) -> None:
        from atari_dqn.envs import EnvSettings, resolve_actions
        from atari_dqn.vector import ale_vector_env

        _, sticky = _game(env_id)
        settings = EnvSettings(
            env_id,
            resolve_actions(env_id, "minimal"),
            noop_max=noop_max,
            frame_skip=FRAME_SKIP,
            sticky_actions=sticky,
            max_frames=MAX_FRAMES,
        )
        self.num_envs = num_envs
        self.env = ale_vector_env(settings, num_envs, num_threads=threads, full_action_space=False)
        self.num_actions = int(self.env.single_action_space.n)

    def reset(self, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
        return self.env.reset(seed=seed)

    def send(self, actions: np.ndarray) -> None:
        self.env.send(actions)

    def recv(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        return self.env.recv()

    def close(self) -> None:
        self.env.close()


class EnvPoolBackend:
    """EnvPool's Atari pool with the same settings (``env_type='gymnasium'``).

    EnvPool's reset does ``U[1, noop_max] - fire`` no-ops and then FIRE; ale-py's presses FIRE
    and then does ``U[0, noop_max - 1] - fire``. ``noop_max=0`` crashes EnvPool 1.2.5
    (segmentation fault), so 0 is passed as 1, which is no no-op at all for games with FIRE.
    """

    name = "envpool"

    def __init__(self, env_id: str, num_envs: int, threads: int, *, noop_max: int = NOOP_MAX,
                 seed: int = 0) -> None:  # fmt: skip
        import envpool

        game, sticky = _game(env_id)
        if not _registered(game):
            raise ConfigError(f"EnvPool has no Atari task {envpool_task(game)!r} for {env_id!r}")
        base = envpool_base_path(game)
        kwargs: dict[str, Any] = {} if base is None else {"base_path": base}
        self.num_envs = num_envs
        self.env = envpool.make(
            envpool_task(game),
            env_type="gymnasium",
            num_envs=num_envs,
            batch_size=num_envs,
            num_threads=threads,
            seed=seed,  # env i gets seed + i, as ale-py's reset(seed=...)
            img_height=84,
            img_width=84,
            gray_scale=True,
            stack_num=1,
            frame_skip=FRAME_SKIP,
            noop_max=max(noop_max, 1),
            use_fire_reset=True,
            episodic_life=False,
            reward_clip=False,
            max_episode_steps=MAX_FRAMES // FRAME_SKIP,
            repeat_action_probability=sticky,
            full_action_space=False,
            use_inter_area_resize=True,
            **kwargs,
        )
        self.num_actions = int(self.env.action_space.n)
        self._ids = np.arange(num_envs, dtype=np.int32)

    def reset(self, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
        del seed  # EnvPool is seeded when it is built
        obs, info = self.env.reset()
        self._ids = info["env_id"]
        return obs, info

    def send(self, actions: np.ndarray) -> None:
        # The async API: actions go to the envs whose results came back last.
        self.env.send(actions, self._ids)

    def recv(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        out = self.env.recv()
        self._ids = out[4]["env_id"]
        return out

    def close(self) -> None:
        close = getattr(self.env, "close", None)
        if close is not None:
            close()


def make_backend(name: str, env_id: str, num_envs: int, threads: int, *, seed: int = 0,
                 noop_max: int = NOOP_MAX) -> AleBackend | EnvPoolBackend:  # fmt: skip
    if name == "ale":
        return AleBackend(env_id, num_envs, threads, noop_max=noop_max)
    if name == "envpool":
        return EnvPoolBackend(env_id, num_envs, threads, noop_max=noop_max, seed=seed)
    raise ConfigError(f"unknown backend {name!r}: choose from {', '.join(BACKENDS)}")


# ====================================================================== throughput
def check_backends(backends: list[str]) -> list[str]:
    """The named backends, each once; a one-line ConfigError for an unknown one or none."""
    if not backends:
        raise ConfigError("--backends needs at least one of: " + ", ".join(BACKENDS))
    for b in backends:
        if b not in BACKENDS:
            raise ConfigError(f"unknown backend {b!r} in --backends: choose from "
                              + ", ".join(BACKENDS))  # fmt: skip
    return list(dict.fromkeys(backends))


def _timed(env: AleBackend | EnvPoolBackend, actions: np.ndarray) -> float:
    """Seconds for ``len(actions)`` send/recv pairs."""
    start = time.perf_counter()
    for a in actions:
        env.send(a)
        env.recv()
    return time.perf_counter() - start


def envs_benchmark(
    env_id: str = DEFAULT_ENV,
    num_envs: list[int] | tuple[int, ...] = (1, 8, 16),
    steps: int = 4000,
    backends: list[str] | tuple[str, ...] = BACKENDS,
    threads: int | None = None,
    seed: int = 0,
    *,
    repeats: int = 3,
) -> Result:
    """Random-play env steps/s per backend and N; see the module docstring for the method.

    Returns ``{"rows": [{"backend", "num_envs", "threads", "steps_per_s", "rates", "status"}],
    "ratio": {str(N): envpool/ale}, "envpool": envpool_status(), ...}``; rows of a backend that
    is not importable have ``status == "not installed"`` and ``steps_per_s`` None.
    """
    num_envs = [int(n) for n in num_envs]
    if not num_envs:
        raise ConfigError("--num-envs needs at least one N")
    check_positive(steps=steps, repeats=repeats, threads=threads, **{"num_envs": min(num_envs)})
    backends = check_backends(list(backends))
    game, sticky = _game(env_id)
    ep = envpool_status()
    import ale_py

    cpus = os.cpu_count() or 1
    rows: list[dict[str, Any]] = []
    ratio: dict[str, float | None] = {}
    for n in num_envs:
        nthreads = threads or min(n, cpus)
        calls = max(1, math.ceil(steps / n))
        live: dict[str, AleBackend | EnvPoolBackend] = {}
        table: dict[str, np.ndarray] = {}
        rates: dict[str, list[float]] = {b: [] for b in backends}
        try:
            for b in backends:
                if b == "envpool" and not ep["installed"]:
                    continue
                env = make_backend(b, env_id, n, nthreads, seed=seed)
                env.reset(seed)
                rng = np.random.default_rng(seed)
                table[b] = rng.integers(0, env.num_actions, (calls, n), dtype=np.int32)
                _timed(env, table[b][:WARMUP_CALLS])
                live[b] = env
            order = list(live)
            for r in range(repeats):
                for b in order if r % 2 == 0 else order[::-1]:
                    rates[b].append(calls * n / _timed(live[b], table[b]))
        finally:
            for env in live.values():
                env.close()
        for b in backends:
            ok = b in live
            rows.append({
                "backend": b, "num_envs": n, "threads": nthreads,
                "steps_per_s": statistics.median(rates[b]) if ok else None,
                "rates": rates[b], "status": "ok" if ok else NOT_INSTALLED,
            })  # fmt: skip
        med = {row["backend"]: row["steps_per_s"] for row in rows if row["num_envs"] == n}
        ratio[str(n)] = (med["envpool"] / med["ale"]
                         if med.get("envpool") and med.get("ale") else None)  # fmt: skip
    return {
        "env_id": env_id, "game": game, "repeat_action_probability": sticky,
        "steps": steps, "repeats": repeats, "seed": seed, "cpus": cpus,
        "backends": backends, "rows": rows, "ratio": ratio, "envpool": ep,
        "ale_py": ale_py.__version__,
    }  # fmt: skip


def envs_table(result: Result) -> str:
    """One row per (backend, N): steps/s, and envpool/ale at that N on the envpool rows."""
    ep = result["envpool"]
    head = (f"random-play env steps/s, {result['env_id']}, {result['steps']} steps x "
            f"{result['repeats']} repeats (median), {result['cpus']} CPUs; ale-py "
            f"{result['ale_py']}, envpool "
            f"{ep['version'] if ep['installed'] else NOT_INSTALLED}")  # fmt: skip
    lines = [head, f"{'backend':<8} {'N':>4} {'threads':>7} {'steps/s':>10} {'envpool/ale':>11}"]
    for row in result["rows"]:
        if row["steps_per_s"] is None:
            rate, rel = row["status"], ""
        else:
            rate = f"{row['steps_per_s']:,.0f}"
            r = result["ratio"].get(str(row["num_envs"]))
            rel = f"{r:.2f}x" if row["backend"] == "envpool" and r is not None else ""
        lines.append(f"{row['backend']:<8} {row['num_envs']:>4} {row['threads']:>7} "
                     f"{rate:>10} {rel:>11}")  # fmt: skip
    return "\n".join(lines)


# ====================================================================== equivalence
def compare_frames(env_id: str = DEFAULT_ENV, steps: int = 1000, seed: int = 0) -> Result:
    """Step one env of each backend with the same fixed actions; do the frames match?

    No-ops at reset are off (ale-py ``noop_max=0``; EnvPool ``noop_max=1``, which is no no-op
    for games with FIRE, see :class:`EnvPoolBackend`) and ``repeat_action_probability`` is 0,
    so both emulators run deterministically. Compares every observation (the reset one and one
    per step; games reset automatically), and rewards, lives and game ends. Returns the counts
    of identical frames, the largest and mean absolute pixel difference, the first step that
    differs, and whether everything matched exactly.
    """
    check_positive(steps=steps)
    if not envpool_status()["installed"]:
        return {"env_id": env_id, "status": NOT_INSTALLED}
    game, _ = _game(env_id)
    if env_id.startswith("ALE/"):
        env_id = envpool_task(game).replace("-v5", "NoFrameskip-v4")  # sticky actions off
    ale = AleBackend(env_id, 1, 1, noop_max=0)
    ep = EnvPoolBackend(env_id, 1, 1, noop_max=0, seed=seed)
    actions = np.random.default_rng(seed).integers(0, ale.num_actions, (steps, 1), dtype=np.int32)
    try:
        a_obs, a_info = ale.reset(seed)
        e_obs, e_info = ep.reset(seed)
        frames = [(a_obs[0, -1], e_obs[0, -1])]
        other = {"reward": 0, "lives": int(a_info["lives"][0] != e_info["lives"][0]), "done": 0}
        games = 0
        for a in actions:
            ale.send(a)
            ep.send(a)
            ao, ar, at, atr, ai = ale.recv()
            eo, er, et, etr, ei = ep.recv()
            frames.append((ao[0, -1], eo[0, -1]))
            other["reward"] += int(ar[0] != er[0])
            other["lives"] += int(ai["lives"][0] != ei["lives"][0])
            # ale-py's terminated includes life losses (life_loss_info); compare game ends.
            a_end = bool(at[0] and ai["lives"][0] == 0) or bool(atr[0])
            e_end = bool(et[0]) or bool(etr[0])
            other["done"] += int(a_end != e_end)
            games += int(a_end)
    finally:
        ale.close()
        ep.close()
    diff = [np.abs(x.astype(np.int16) - y.astype(np.int16)) for x, y in frames]
    differ = [i for i, d in enumerate(diff) if d.any()]
    return {
        "env_id": env_id,
        "status": "ok",
        "frames": len(frames),
        "identical_frames": len(frames) - len(differ),
        "first_differing_frame": differ[0] if differ else None,  # 0: the reset frame
        "max_abs_diff": int(max(int(d.max()) for d in diff)),
        "mean_abs_diff": float(np.mean([d.mean() for d in diff])),
        "max_differing_pixels": int(max(int((d > 0).sum()) for d in diff)),
        "reward_mismatches": other["reward"],
        "lives_mismatches": other["lives"],
        "game_end_mismatches": other["done"],
        "games_ended": games,
        "exact": not differ and not any(other.values()),
    }


def compare_line(c: Result) -> str:
    if c["status"] != "ok":
        return f"frame check: envpool {c['status']}"
    if c["exact"]:
        return (f"frame check ({c['env_id']}, no no-ops, no sticky actions): all "
                f"{c['frames']} frames, rewards, lives and game ends identical "
                f"({c['games_ended']} games ended)")  # fmt: skip
    return (f"frame check ({c['env_id']}): {c['identical_frames']}/{c['frames']} frames "
            f"identical, first difference at frame {c['first_differing_frame']}, max |diff| "
            f"{c['max_abs_diff']}, mean |diff| {c['mean_abs_diff']:.3f}, up to "
            f"{c['max_differing_pixels']} pixels; mismatches: rewards {c['reward_mismatches']}, "
            f"lives {c['lives_mismatches']}, game ends {c['game_end_mismatches']}")  # fmt: skip


def envs_report(result: Result) -> str:
    """The table of ``bench envs``, and the frame check's line when it ran."""
    text = envs_table(result)
    if "frame_check" in result:
        text += "\n" + compare_line(result["frame_check"])
    return text
