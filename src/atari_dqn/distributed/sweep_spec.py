"""The sweep spec: a TOML file of train settings to search over. Imports no Ray.

```toml
out = "sweeps/lr"          # sweep directory (--out overrides) [default: sweeps/<spec name>]
num_samples = 2            # random draws per grid point [default: 1]
seeds = [1, 2]             # every configuration once per seed [default: [train.seed or 0]]
sample_seed = 0            # seeds the random draws, so a re-run draws the same trials
max_concurrent = 0         # trials at once; 0: as many as the resources allow

[resources]                # per trial
cpu = 1
gpu = 0.5

[train]                    # settings of every trial: any `atari-dqn train` setting
preset = "rainbow-lite"
total_steps = 200000

[grid]                     # every combination
lr = [1e-4, 6.25e-5]

[random]                   # one draw per sample
alpha = {uniform = [0.4, 0.7]}
lr = {loguniform = [1e-5, 1e-3]}
n_step = {randint = [1, 5]}        # 1 to 4
replay = {choice = ["uniform", "prioritized"]}
```

Keys are the long names of ``atari-dqn train`` (dashes or underscores). Every trial's settings
are resolved and validated here, before anything runs, so a bad spec is one line of error.
"""

from __future__ import annotations

import itertools
import math
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from atari_dqn.config import (
    PRESETS,
    Config,
    ConfigError,
    canonical_preset,
    canonical_value,
    preset_config,
)

TOP_KEYS = ("out", "num_samples", "seeds", "sample_seed", "max_concurrent")
TABLES = ("resources", "train", "grid", "random")
DISTRIBUTIONS = ("uniform", "loguniform", "randint", "choice")
# Train flags a trial may not set: the sweep owns the run directory and the seeds.
NOT_SWEPT = ("out", "force", "resume", "restore", "config", "quiet")
_TYPES = {f.name: type(getattr(Config(), f.name)) for f in fields(Config)}


class SpecError(ConfigError):
    """A sweep spec that cannot be run; the message is one line."""


@dataclass(frozen=True)
class Trial:
    """One training run of the sweep."""

    index: int
    params: dict[str, Any]  # the swept values (grid and random), by setting name
    seed: int
    settings: dict[str, Any]  # every setting the trial passes to `atari-dqn train`
    config: Config  # what they resolve to

    @property
    def name(self) -> str:
        return f"trial_{self.index:03d}"

    def argv(self, run_dir: Path, *, force: bool = False) -> list[str]:
        """``atari-dqn train`` arguments of a new run of this trial in ``run_dir``."""
        args = ["train", "--out", str(run_dir), "--quiet"]
        if force:
            args.append("--force")
        for key, value in self.settings.items():
            flag = "--" + key.replace("_", "-")
            if isinstance(value, bool):
                args.append(flag if value else "--no-" + key.replace("_", "-"))
            else:
                args += [flag, repr(value) if isinstance(value, float) else str(value)]
        return args


@dataclass(frozen=True)
class SweepSpec:
    path: Path
    text: str  # the file as read (a sweep directory remembers which spec made it)
    out: Path | None
    base: dict[str, Any]
    grid: dict[str, list[Any]]
    random: dict[str, tuple[str, list[Any]]]
    num_samples: int
    seeds: tuple[int, ...]
    sample_seed: int
    cpu: float
    gpu: float
    max_concurrent: int
    trials: tuple[Trial, ...]

    @property
    def swept_keys(self) -> list[str]:
        return list(dict.fromkeys([*self.grid, *self.random]))

    def default_out(self) -> Path:
        return self.out if self.out is not None else Path("sweeps") / self.path.stem


def _name(key: str, where: str) -> str:
    name = key.replace("-", "_")
    if name in NOT_SWEPT:
        raise SpecError(f"[{where}] {key}: the sweep sets this itself")
    if name != "preset" and name not in _TYPES:
        raise SpecError(f"[{where}] {key}: not a setting of `atari-dqn train`")
    if name == "seed":
        raise SpecError(f"[{where}] seed: use the top-level `seeds = [...]` list")
    return name


def _check_value(name: str, value: Any, where: str) -> Any:
    if name == "preset":
        if isinstance(value, str):
            value = canonical_preset(value)  # an old name (seed) is today's (course)
        if value not in PRESETS:
            raise SpecError(f"[{where}] preset {value!r}: choose one of {', '.join(PRESETS)}")
        return value
    kind = _TYPES[name]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, bool) and kind is not bool:
        value = canonical_value(name, value)  # bf16 = true: an old yes/no, 'on'
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise SpecError(f"[{where}] {name} must be {kind.__name__}, got {value!r}")
    return value


def _table(raw: dict[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise SpecError(f"{key} must be a table ([{key}]), got {value!r}")
    return value


def _int(raw: dict[str, Any], key: str, default: int, low: int) -> int:
    value = raw.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise SpecError(f"{key} must be an integer >= {low}, got {value!r}")
    return value


def _number(raw: dict[str, Any], key: str, default: float, low: float) -> float:
    value = raw.get(key, default)
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value < low:
        raise SpecError(f"resources.{key} must be a number >= {low}, got {value!r}")
    return float(value)


def _distribution(name: str, value: Any) -> tuple[str, list[Any]]:
    where = f"random.{name}"
    if not isinstance(value, dict) or len(value) != 1:
        raise SpecError(f"{where}: expected one of {{{', '.join(DISTRIBUTIONS)} = [...]}}")
    kind, args = next(iter(value.items()))
    if kind not in DISTRIBUTIONS:
        raise SpecError(f"{where}: unknown distribution {kind!r} ({', '.join(DISTRIBUTIONS)})")
    if not isinstance(args, list) or not args:
        raise SpecError(f"{where}: {kind} needs a non-empty list")
    if kind == "choice":
        return kind, [_check_value(name, v, where) for v in args]
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in args)
    if len(args) != 2 or not numeric or not args[0] < args[1]:
        raise SpecError(f"{where}: {kind} needs [low, high] with low < high, got {args!r}")
    if kind == "loguniform" and args[0] <= 0:
        raise SpecError(f"{where}: loguniform needs low > 0, got {args[0]!r}")
    want = int if kind == "randint" else float
    if name == "preset" or _TYPES[name] is not want:
        raise SpecError(f"{where}: {kind} draws {want.__name__}s, but {name} is not one")
    if kind == "randint" and not all(isinstance(v, int) for v in args):
        raise SpecError(f"{where}: randint needs integer bounds, got {args!r}")
    return kind, list(args)


def _draw(kind: str, args: list[Any], rng: np.random.Generator) -> Any:
    if kind == "uniform":
        return float(rng.uniform(args[0], args[1]))
    if kind == "loguniform":
        return float(math.exp(rng.uniform(math.log(args[0]), math.log(args[1]))))
    if kind == "randint":
        return int(rng.integers(args[0], args[1]))
    return args[int(rng.integers(0, len(args)))]


def _resolve(settings: dict[str, Any], where: str) -> Config:
    """The config `atari-dqn train` would resolve these settings to; SpecError if invalid."""
    from atari_dqn.envs import EnvError, check_env_id, resolve_actions

    values = dict(settings)
    try:
        config = preset_config(values.pop("preset", "course")).replace(**values)
        config.validate()
        check_env_id(config.env_id)
        resolve_actions(config.env_id, config.actions)
    except (ConfigError, EnvError) as exc:
        raise SpecError(f"{where}: {exc}") from None
    return config


def parse_spec(text: str, path: Path) -> SweepSpec:
    """Parse and validate a spec; every trial is resolved."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"sweep spec {path} is not valid TOML: {exc}") from None
    for key in raw:
        if key not in TOP_KEYS and key not in TABLES:
            raise SpecError(
                f"unknown key {key!r} in sweep spec {path} (top level: {', '.join(TOP_KEYS)}; "
                f"tables: {', '.join(TABLES)})"
            )
    out = raw.get("out")
    if out is not None and not (isinstance(out, str) and out):
        raise SpecError(f"out must be a directory path, got {out!r}")
    resources = _table(raw, "resources")
    for key in resources:
        if key not in ("cpu", "gpu"):
            raise SpecError(f"unknown key resources.{key} (cpu, gpu)")
    cpu = _number(resources, "cpu", 1.0, 0.0)
    gpu = _number(resources, "gpu", 0.0, 0.0)
    if cpu == 0 and gpu == 0:
        raise SpecError("resources: a trial needs some cpu or gpu")
    base = {
        _name(k, "train"): _check_value(_name(k, "train"), v, "train")
        for k, v in _table(raw, "train").items()
    }
    grid: dict[str, list[Any]] = {}
    for key, values in _table(raw, "grid").items():
        name = _name(key, "grid")
        if not isinstance(values, list) or not values:
            raise SpecError(f"grid.{key} must be a non-empty list, got {values!r}")
        grid[name] = [_check_value(name, v, f"grid.{key}") for v in values]
    random = {
        _name(k, "random"): _distribution(_name(k, "random"), v)
        for k, v in _table(raw, "random").items()
    }
    both = set(grid) & set(random)
    if both:
        raise SpecError(f"{', '.join(sorted(both))}: in both [grid] and [random]")
    seeds_raw = raw.get("seeds", [0])
    if (
        not isinstance(seeds_raw, list)
        or not seeds_raw
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds_raw)
        or len(set(seeds_raw)) != len(seeds_raw)
    ):
        raise SpecError(f"seeds must be a list of distinct integers >= 0, got {seeds_raw!r}")
    num_samples = _int(raw, "num_samples", 1, 1)
    sample_seed = _int(raw, "sample_seed", 0, 0)
    max_concurrent = _int(raw, "max_concurrent", 0, 0)

    rng = np.random.default_rng(sample_seed)
    trials: list[Trial] = []
    for combo in itertools.product(*grid.values()):
        point = dict(zip(grid, combo, strict=True))
        for _ in range(num_samples):
            params = {**point, **{k: _draw(d, a, rng) for k, (d, a) in random.items()}}
            for seed in seeds_raw:
                settings = {**base, **params, "seed": seed}
                index = len(trials)
                config = _resolve(settings, f"trial {index} ({_describe(params, seed)})")
                trials.append(Trial(index, params, seed, settings, config))
    if len(trials) > 10_000:
        raise SpecError(f"the spec makes {len(trials)} trials; at most 10000")
    return SweepSpec(
        path=path,
        text=text,
        out=Path(out) if out else None,
        base=base,
        grid=grid,
        random=random,
        num_samples=num_samples,
        seeds=tuple(seeds_raw),
        sample_seed=sample_seed,
        cpu=cpu,
        gpu=gpu,
        max_concurrent=max_concurrent,
        trials=tuple(trials),
    )


def load_spec(path: Path) -> SweepSpec:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SpecError(f"sweep spec not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read sweep spec {path}: {exc}") from None
    return parse_spec(text, path)


def _describe(params: dict[str, Any], seed: int) -> str:
    parts = [f"{k}={_short(v)}" for k, v in params.items()]
    return ", ".join([*parts, f"seed={seed}"])


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
