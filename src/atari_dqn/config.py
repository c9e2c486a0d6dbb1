"""Typed, frozen training configuration: defaults, presets, TOML load and save.

Every count is in *agent steps* (1 agent step = 4 emulator frames with the default frame skip).
The CLI builds one flag per field from this module, with the field's help text, so the help and the
saved ``config.toml`` can never drift apart from the code.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import struct
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


class UsageError(Exception):
    """Bad input: reported as one line on stderr with exit status 2, before any work."""


class ConfigError(UsageError, ValueError):
    """A configuration value a user gave is invalid; the message is one line."""


# ---------------------------------------------------------------------- bounds
# Where a value has no meaning past a bound, the bound is checked here, for a Config and for what
# a model file records alike (evaluate, load_policy, --restore), so a value that passes never
# hangs the emulator or overflows float32 later.
#
# No-ops at a game start, in emulator frames: 30 in every published protocol. 1000 frames (17 s
# of play at 60 Hz) is 33 times that; past it the "random start" is a long wait (gymnasium's
# AtariPreprocessing plays the no-ops in one reset that no signal interrupts: 1000 frames take
# about 0.3 s on a laptop core, 2e9 took hours).
NOOP_MAX_LIMIT = 1000
# Emulator frames per agent step: 4 in every published protocol. 64 frames is a decision every
# second of play at 60 Hz; past it the agent cannot react to the game, and one step would again
# be a long stretch that no signal interrupts.
FRAME_SKIP_LIMIT = 64
# ALE's frame cap per game is a C int.
MAX_FRAMES_LIMIT = 2**31 - 1
# Seeds: numpy's SeedSequence refuses negatives, and config.toml (TOML) holds 64-bit integers.
SEED_LIMIT = 2**63 - 1
INT64_MAX = 2**63 - 1
# Limits of the float32 tensors a distributional support and noisy layers live in.
FLOAT32_MAX = 3.4028234663852886e38
FLOAT32_TINY = 1.1754943508222875e-38  # the smallest normal float32
NUM_ACTIONS_LIMIT = 18  # ALE's full action set
ATOMS_LIMIT = 1001


def _float32(value: float) -> float:
    """``value`` rounded to float32 (inf past its range)."""
    try:
        return float(struct.unpack("f", struct.pack("f", value))[0])
    except OverflowError:
        return math.copysign(math.inf, value)


def env_setting_problem(name: str, value: float) -> str | None:
    """Why ``value`` cannot be the env setting ``name`` (noop_max, frame_skip, sticky_actions,
    eval_max_frames), or None. Shared by Config.validate and the model files' metadata."""
    if not math.isfinite(value):
        return f"must be a finite number, got {value}"
    if name == "sticky_actions":
        if value != -1.0 and not 0.0 <= value <= 1.0:
            return f"must be in [0, 1] or -1, got {value}"
        return None
    if not float(value).is_integer():
        return f"must be a whole number, got {value}"
    low, high = {
        "noop_max": (0, NOOP_MAX_LIMIT),
        "frame_skip": (1, FRAME_SKIP_LIMIT),
        "eval_max_frames": (1, MAX_FRAMES_LIMIT),
    }[name]
    if not low <= value <= high:
        return f"must be between {low} and {high}, got {value:.0f}"
    return None


def support_problem(v_min: float, v_max: float, atoms: int) -> str | None:
    """Why ``[v_min, v_max]`` with ``atoms`` atoms cannot be a distributional support held in
    float32 (each bound, the span and the atom spacing Δz must be finite normal float32
    numbers, and the bounds distinct there), or None."""
    if not 2 <= atoms <= ATOMS_LIMIT:
        return f"--atoms must be between 2 and {ATOMS_LIMIT}, got {atoms}"
    if not (math.isfinite(v_min) and math.isfinite(v_max)):
        return f"--v-min and --v-max must be finite, got {v_min}, {v_max}"
    if not v_min < v_max:
        return f"--v-min must be smaller than --v-max, got {v_min} and {v_max}"
    lo, hi = _float32(v_min), _float32(v_max)
    span = _float32(hi - lo)
    if not (math.isfinite(lo) and math.isfinite(hi) and math.isfinite(span)):
        return (
            f"--v-min {v_min} and --v-max {v_max} must span at most {FLOAT32_MAX:.4g}"
            " (the support is float32)"
        )
    if not span / (atoms - 1) >= FLOAT32_TINY:
        return (
            f"--v-min {v_min} and --v-max {v_max} are too close for {atoms} atoms in float32"
            f" (spacing (v_max - v_min) / (atoms - 1) below {FLOAT32_TINY:.4g})"
        )
    return None


def sigma0_problem(sigma0: float) -> str | None:
    """Why ``sigma0`` cannot initialise noisy layers' float32 sigmas, or None."""
    if not (sigma0 > 0 and math.isfinite(sigma0)):
        return f"--noisy-sigma0 must be a positive number, got {sigma0}"
    if not (FLOAT32_TINY <= sigma0 <= FLOAT32_MAX):
        return f"--noisy-sigma0 must be a float32 number (at most {FLOAT32_MAX:.4g}), got {sigma0}"
    return None


def _opt(
    default: Any,
    help: str,
    *,
    choices: tuple[str, ...] | None = None,
    min: float | None = None,
    max: float | None = None,
    positive: bool = False,
    unset: float | None = None,
    bare: str | None = None,
    negated: str | None = None,
) -> Any:
    """A Config field: its default, its help line and the bounds :meth:`Config.validate` checks
    (``positive``: > 0, and finite for a float, with ``max``: in (0, max]; ``min`` / ``max``:
    inclusive; ``unset``: a value
    outside them that means "not set", e.g. -1; ``bare``: the value of the flag given alone,
    ``negated``: that of ``--no-`` before it, for a choice that was once a yes/no flag)."""
    meta: dict[str, Any] = {"help": help}
    if choices is not None:
        meta["choices"] = choices
    if bare is not None:
        meta["bare"] = bare
    if negated is not None:
        meta["negated"] = negated
    bounds = {"min": min, "max": max, "positive": positive or None, "unset": unset}
    meta.update({k: v for k, v in bounds.items() if v is not None})
    return field(default=default, metadata=meta)


def _out_of_bounds(value: Any, meta: Mapping[str, Any]) -> str | None:
    """What ``value`` must be if it breaks its field's bounds (a phrase for "must be ..."), else
    None. NaN breaks every bound."""
    if "unset" in meta and value == meta["unset"]:
        return None
    is_float = isinstance(value, float)
    if meta.get("positive") and meta.get("max") is not None:  # (0, max]
        return None if 0 < value <= meta["max"] else f"in (0, {meta['max']:g}]"
    if meta.get("positive"):
        if is_float:
            return None if value > 0 and math.isfinite(value) else "a positive number"
        return None if value > 0 else "positive"
    low, high = meta.get("min"), meta.get("max")
    if low is not None and high is not None:
        if low <= value <= high:
            return None
        either = f" or {meta['unset']:g}" if "unset" in meta else ""
        return (f"in [{low:g}, {high:g}]" if is_float else f"between {low} and {high}") + either
    if low is not None and not value >= low:
        return f">= {low:g}"
    if high is not None and not value <= high:
        return f"<= {high:g}"
    return None


@dataclass(frozen=True)
class Config:
    """All settings of one training run. Field order is the order of ``--help``."""

    # --- environment ---
    env_id: str = _opt("BreakoutNoFrameskip-v4", "ALE game id, as XNoFrameskip-v4 or ALE/X-v5.")
    actions: str = _opt(
        "course",
        "Agent action set: 'course' (the course project's: Breakout NOOP,RIGHT,LEFT with FIRE"
        " automatic; other games: minimal), 'minimal', 'full', or a comma list of ALE action"
        " names.",
    )
    noop_max: int = _opt(
        30, "Up to this many random no-ops at each game start (emulator frames).", min=0
    )
    frame_skip: int = _opt(
        4, "Emulator frames per agent step (max-pooled over the last two).", positive=True
    )
    sticky_actions: float = _opt(
        -1.0,
        "Sticky-action probability; -1 keeps the env id's default (v4: 0, v5: 0.25).",
        min=0.0,
        max=1.0,
        unset=-1.0,
    )
    num_envs: int = _opt(
        1,
        "Training envs stepped together (C++ threads when > 1; evaluation keeps its own env)."
        " The replay ratio stays one update per --update-every agent steps over all envs.",
        min=1,
        max=1024,
    )
    # --- schedule of the run ---
    algo: str = _opt(
        "dqn",
        "Learning algorithm: dqn (replay memory, target network) or pqn (Gallici et al. 2024:"
        " --num-envs envs act for --rollout-steps, Q(lambda) targets over each rollout, no"
        " replay, no target network); --algo pqn without --preset starts from the pqn preset.",
        choices=("dqn", "pqn"),
    )
    seed: int = _opt(0, "Seed for every random generator of the run (envs, replay, network).")
    device: str = _opt(
        "auto",
        "Torch device: auto (cuda, else mps, else cpu), cpu, cuda, cuda:N or mps (Apple).",
    )
    total_steps: int = _opt(5_000_000, "Length of the run, in agent steps.", positive=True)
    warmup_steps: int = _opt(
        50_000, "Agent steps of random play that fill the replay before learning starts.", min=0
    )
    update_every: int = _opt(
        4,
        "One gradient update every this many agent steps (over all envs). The replay ratio,"
        " transitions trained per agent step, is --batch-size / --update-every (32 / 4 = 8).",
        positive=True,
    )
    target_update: int = _opt(
        10_000, "Copy the online network to the target every N agent steps.", positive=True
    )
    # --- replay ---
    buffer_size: int = _opt(
        100_000, "Replay capacity, in transitions (agent steps).", positive=True
    )
    batch_size: int = _opt(
        32,
        "Transitions per gradient update; the replay ratio (transitions trained per agent step)"
        " is --batch-size / --update-every.",
        positive=True,
    )
    replay: str = _opt(
        "uniform",
        "Replay sampling: uniform, or prioritized (proportional, Schaul et al. 2016).",
        choices=("uniform", "prioritized"),
    )
    alpha: float = _opt(
        0.6,
        "Prioritized replay: priority exponent, p = (|td| + eps)^alpha.",
        # Schaul et al. 2016: alpha in [0, 1] goes from uniform to fully proportional
        # sampling; past 1 the powers (|td| + eps)^alpha soon underflow to 0 or overflow.
        min=0.0,
        max=1.0,
    )
    beta0: float = _opt(
        0.4, "Prioritized replay: importance-sampling exponent at the start.", min=0.0, max=1.0
    )
    beta_steps: int = _opt(
        0,
        "Prioritized replay: agent steps over which beta anneals to 1 (0 = the whole run,"
        " as set when it starts).",
        min=0,
    )
    priority_eps: float = _opt(
        1e-6,
        "Prioritized replay: added to |td| so no priority is 0.",
        # A small positive constant (Schaul et al. 2016); at 1 it already outweighs most |td|.
        positive=True,
        max=1.0,
    )
    n_step: int = _opt(
        1, "Returns over n agent steps (1 = the course project's one-step target).", min=1, max=100
    )
    # --- learning ---
    lr: float = _opt(6.25e-5, "Adam learning rate.", positive=True)
    adam_eps: float = _opt(1.5e-4, "Adam epsilon.", positive=True)
    gamma: float = _opt(0.99, "Discount factor per agent step.", min=0.0, max=1.0)
    grad_clip: float = _opt(
        1.0, "Clamp every gradient element to [-c, c] (the course project's clamp_).", positive=True
    )
    fused_adam: bool = _opt(
        True, "Adam as one fused kernel (same maths; --no-fused-adam for the per-tensor loop)."
    )
    channels_last: bool = _opt(
        True,
        "Feed the convolutions channels-last (NHWC) tensors: same maths up to float rounding,"
        " a faster update on CPU (--no-channels-last for NCHW).",
    )
    bf16: str = _opt(
        "off",
        "Run the update's forward and backward passes in bfloat16 (autocast; weights, Adam,"
        " targets and loss stay float32): 'on' (also --bf16 alone), 'off' (also --no-bf16), or"
        " 'auto': on where the CPU does bf16 in hardware (AVX512-BF16, AMX, Arm's BF16), float32"
        " on other CPUs, where it is emulated and about 10x slower, and on GPUs (not measured"
        " there yet). It changes results beyond float rounding.",
        choices=("off", "on", "auto"),
        bare="on",
        negated="off",
    )
    compile: bool = _opt(
        False,
        "torch.compile (inductor) the update: the loss with its forward passes, and the gradient"
        " clamp with the Adam step (backward runs between them). Same maths up to float"
        " rounding; the first update compiles (seconds to a minute on a CPU, again after a"
        " resume); where compiling fails, a warning and the plain update.",
    )
    double: bool = _opt(False, "Double DQN target: online argmax, target value (van Hasselt 2016).")
    one_pass_double: bool = _opt(
        False,
        "With --double, run the online net at s and s' in one forward pass over both batches"
        " (2 x --batch-size stacks) instead of two: same maths up to float rounding, fewer and"
        " larger kernels, but the backward pass then runs over both halves; measure with"
        " `atari-dqn bench update` before choosing it.",
    )
    dueling: bool = _opt(False, "Dueling network head: Q = V + A - mean(A) (Wang et al. 2016).")
    distributional: bool = _opt(
        False,
        "Distributional (C51) head: a categorical distribution over --atoms values on"
        " [--v-min, --v-max] per action, Q = sum z p, projected n-step targets, cross-entropy"
        " loss whose per-sample value is also the new priority (Bellemare et al. 2017).",
    )
    atoms: int = _opt(
        51, "Distributional head: atoms of the support (at least 2).", min=2, max=1001
    )
    v_min: float = _opt(-10.0, "Distributional head: smallest value of the support (returns).")
    v_max: float = _opt(10.0, "Distributional head: largest value of the support (returns).")
    noisy: bool = _opt(
        False,
        "NoisyNet head: factorised-Gaussian noisy linear layers, fresh noise at every acting step"
        " and update (Fortunato et al. 2018); evaluation uses their mean weights, as Dopamine.",
    )
    noisy_sigma0: float = _opt(
        0.5, "Noisy layers: initial sigma = sigma0 / sqrt(inputs).", positive=True
    )
    layer_norm: bool = _opt(
        False,
        "LayerNorm before the ReLU of each convolution (over channels) and of the hidden fc"
        " layer, as PQN's network (Gallici et al. 2024); saved in model files.",
    )
    augment: str = _opt(
        "none",
        "Augment sampled stacks: 'shift' pads each 84x84 stack by 4 pixels (edge pixels"
        " repeated) and crops a random 84x84 window, drawn independently for s and s' of every"
        " sample, as DrQ (Kostrikov et al. 2020); 'none' trains on the stacks as stored.",
        choices=("none", "shift"),
    )
    # --- PQN --- (bounds beside each; that minibatches divide the rollout: Config._validate_pqn)
    rollout_steps: int = _opt(32, "PQN: agent steps of each env per rollout (T).", positive=True)
    epochs: int = _opt(
        2, "PQN: passes over each rollout's num_envs x rollout_steps samples.", positive=True
    )
    minibatches: int = _opt(
        32,
        "PQN: minibatches per pass, a gradient step each; must divide num_envs x rollout_steps.",
        positive=True,
    )
    q_lambda: float = _opt(
        0.65,
        "PQN: lambda of the Q(lambda) returns (0: one-step targets, 1: Monte Carlo).",
        min=0.0,
        max=1.0,
    )
    max_grad_norm: float = _opt(
        10.0, "PQN: clip the gradient's global norm to this.", positive=True
    )
    # --- exploration ---
    eps_start: float = _opt(
        1.0, "Exploration epsilon at the start (and during warm-up).", min=0.0, max=1.0
    )
    eps_end: float = _opt(0.1, "Exploration epsilon after the decay.", min=0.0, max=1.0)
    eps_decay: int = _opt(
        1_000_000,
        "Agent steps, counted after warm-up, over which epsilon decays linearly.",
        positive=True,
    )
    # --- evaluation ---
    eval_every: int = _opt(
        100_000, "Evaluate (and save a model) every N agent steps.", positive=True
    )
    eval_games: int = _opt(3, "Full games (all lives) per evaluation.", positive=True)
    eval_epsilon: float = _opt(
        0.05,
        "Epsilon during evaluation (0 = greedy, as the course project); noisy layers evaluate"
        " with their mean weights.",
        min=0.0,
        max=1.0,
    )
    eval_max_frames: int = _opt(
        108_000,
        "Cap on one evaluation game, in emulator frames (108,000 = 30 minutes).",
        positive=True,
    )
    checkpoint_replay: bool = _opt(
        True, "Save the replay memory in checkpoints, for exact resume (big: ~7 KB a slot)."
    )
    checkpoint_chunk: int = _opt(
        16_384,
        "Replay slots per checkpoint file of frames, at most (16384: 116 MB; a sixteenth of"
        " one env's ring where that is smaller and 1024 or more); a checkpoint writes only the"
        " filled ones holding frames written since the previous checkpoint.",
        positive=True,
    )
    checkpoint_every: int = _opt(
        0,
        "Also checkpoint every N agent steps (at the first report, every 100 steps, at or after"
        " each multiple), so a kill or a power cut loses at most about N steps; 0: only at"
        " evaluations, at the end and on SIGINT/SIGTERM.",
        min=0,
    )
    # --- bookkeeping ---
    preset: str = _opt("course", "Name of the preset these settings started from (informational).")

    def __post_init__(self) -> None:
        # Old names of values become the current ones, so a Config names them one way only.
        for name in VALUE_ALIASES:
            object.__setattr__(self, name, canonical_value(name, getattr(self, name)))

    def validate(self) -> None:
        """Raise ConfigError naming the first bad field. Cheap: no env or file is touched.

        Each field's own bounds sit beside it (``_opt``); below them, the checks that relate
        two fields or a string's form."""
        if not 0 <= self.seed <= SEED_LIMIT:
            raise ConfigError(f"--seed must be between 0 and 2**63 - 1, got {self.seed}")
        for f in fields(self):  # config.toml is TOML: 64-bit integers
            value = getattr(self, f.name)
            if type(value) is int and not -INT64_MAX - 1 <= value <= INT64_MAX:
                raise ConfigError(f"--{_flag(f.name)} {value} is beyond a 64-bit integer")
        for f in fields(self):
            value = getattr(self, f.name)
            must = _out_of_bounds(value, f.metadata)
            if must is not None:
                raise ConfigError(f"--{_flag(f.name)} must be {must}, got {value}")
        for f in fields(self):
            choices = f.metadata.get("choices")
            if choices is not None and getattr(self, f.name) not in choices:
                raise ConfigError(
                    f"--{_flag(f.name)} must be one of {', '.join(choices)},"
                    f" got {getattr(self, f.name)!r}"
                )
        # Bounds shared with the model files' metadata (evaluate, load_policy, --restore).
        for name in ("noop_max", "frame_skip", "sticky_actions", "eval_max_frames"):
            problem = env_setting_problem(name, getattr(self, name))
            if problem is not None:
                raise ConfigError(f"--{_flag(name)} {problem}")
        # The replay's sizes bind DQN only (PQN has no replay memory).
        if self.algo == "dqn" and self.batch_size > self.buffer_size:
            raise ConfigError(
                f"--batch-size {self.batch_size} is larger than --buffer-size {self.buffer_size}"
            )
        for problem in (
            support_problem(self.v_min, self.v_max, self.atoms),
            sigma0_problem(self.noisy_sigma0),
        ):
            if problem is not None:
                raise ConfigError(problem)
        if self.algo == "dqn" and self.buffer_size // self.num_envs < 2 * (self.n_step + 4):
            raise ConfigError(
                f"--buffer-size {self.buffer_size} is too small for --n-step {self.n_step}"
                f" with --num-envs {self.num_envs}"
            )
        if self.device not in ("auto", "cpu", "cuda", "mps") and not self.device.startswith(
            "cuda:"
        ):
            raise ConfigError(
                f"--device must be auto, cpu, cuda or cuda:N (or mps on Apple silicon), "
                f"got {self.device!r}"
            )

        if self.algo == "pqn":
            self._validate_pqn()

    def _validate_pqn(self) -> None:
        samples = self.num_envs * self.rollout_steps
        if samples % self.minibatches:
            raise ConfigError(
                f"--minibatches {self.minibatches} must divide the rollout's --num-envs "
                f"{self.num_envs} x --rollout-steps {self.rollout_steps} = {samples} samples"
            )
        # What only DQN's replay and target network give meaning to: refused, not ignored.
        dqn_only = {
            "replay": self.replay != "uniform",
            "n_step": self.n_step != 1,
            "double": self.double,
            "distributional": self.distributional,
            "noisy": self.noisy,
            "bf16": self.bf16 == "on",  # 'auto' is float32 for PQN: measured for DQN only
            "compile": self.compile,
            "augment": self.augment != "none",
            "one_pass_double": self.one_pass_double,
        }
        for name, used in dqn_only.items():
            if used:
                raise ConfigError(
                    f"--{_flag(name)} {getattr(self, name)} is not available with --algo pqn"
                    " (it has no replay memory or target network)"
                )

    @property
    def replay_ratio(self) -> float:
        """Transitions trained per agent step: ``batch_size / update_every`` (PQN: each
        rollout sample once per epoch, ``epochs``). Derived, not a setting of its own, so
        config.toml has one source for each (update_every is whole: the ratios are
        batch_size / k)."""
        if self.algo == "pqn":
            return float(self.epochs)
        return self.batch_size / self.update_every

    def warnings(self) -> list[str]:
        """Settings that are legal but make the run pointless: a line each, to say and go on."""
        said = []
        if self.warmup_steps >= self.total_steps:
            said.append(
                f"--warmup-steps {self.warmup_steps} is not shorter than --total-steps"
                f" {self.total_steps}: the run will play at random and never learn"
            )
        return said

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)


FIELD_NAMES = tuple(f.name for f in fields(Config))

# Settings that do not change what a run is: how long it goes on, where it computes, how it is
# checkpointed. They may change on --resume, and `plot` groups runs regardless of them.
# The settings only one algorithm gives meaning to (the other's runs carry them at their
# defaults): `plot` neither groups nor labels a run by a setting its algorithm does not use.
ONLY_FOR: dict[str, tuple[str, ...]] = {
    "dqn": (
        "update_every", "target_update", "buffer_size", "batch_size", "replay", "alpha",
        "beta0", "beta_steps", "priority_eps", "n_step", "grad_clip", "fused_adam", "bf16",
        "compile", "double", "one_pass_double", "distributional", "atoms", "v_min", "v_max",
        "noisy", "noisy_sigma0", "augment",
    ),
    "pqn": ("rollout_steps", "epochs", "minibatches", "q_lambda", "max_grad_norm"),
}  # fmt: skip


# Settings that only prioritized replay reads: a uniform-replay run's values mean nothing (its
# beta_steps is still resolved from the run's first total_steps).
PRIORITIZED_ONLY = ("alpha", "beta0", "beta_steps", "priority_eps")


def used_by(name: str, algo: str, replay: str) -> bool:
    """Whether a run of ``algo`` with ``replay`` sampling gives setting ``name`` a meaning."""
    if replay != "prioritized" and name in PRIORITIZED_ONLY:
        return False
    return all(algo == owner for owner, names in ONLY_FOR.items() if name in names)


RUN_NEUTRAL = (
    "total_steps",
    "device",
    "checkpoint_replay",
    "checkpoint_chunk",
    "checkpoint_every",
)


@dataclass(frozen=True)
class Preset:
    """A named starting point: what it is (``summary``), its ``changes`` to the defaults above
    and, for a value whose origin is worth a note, where it comes from (``sources``); `atari-dqn
    presets` prints all three."""

    summary: str
    changes: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not set(self.sources) <= set(self.changes):
            raise ValueError(f"sources of values the preset does not set: {set(self.sources)}")


# Each preset is a set of changes to the defaults above; `course` is the defaults themselves.
_NATURE: dict[str, Any] = {
    "actions": "minimal",
    "buffer_size": 1_000_000,
    "lr": 1e-4,
    "adam_eps": 1e-8,  # PyTorch's default, as CleanRL's and SB3's DQN at lr 1e-4
    "warmup_steps": 50_000,
    "eps_end": 0.1,
    "eps_decay": 1_000_000,
    "target_update": 10_000,
}
# Rainbow (Hessel et al. 2018) replay settings, without noisy nets and distributional RL.
_RAINBOW_LITE: dict[str, Any] = {
    **_NATURE,
    "double": True,
    "dueling": True,
    "replay": "prioritized",
    "alpha": 0.5,
    "beta0": 0.4,
    "n_step": 3,
    "lr": 6.25e-5,
    "adam_eps": 1.5e-4,
    "warmup_steps": 20_000,
    "target_update": 8_000,
    "eps_end": 0.01,
    "eps_decay": 250_000,
}
# The sources of the values both laptop presets share.
_LAPTOP_SOURCES: dict[str, str] = {
    "actions": "the minimal action set (Breakout's 4), as every preset but course",
    "num_envs": "8 envs stepped as one vector: more agent steps per second (bench train)",
    "buffer_size": "100k transitions, SB3-zoo's Atari DQN (and the course project's)",
    "adam_eps": "PyTorch's default 1e-8: learned faster than 1.5e-4 (docs/results/adam-eps)",
    "target_update": "a target sync every 1k steps, SB3-zoo's Atari DQN",
    "eps_end": "epsilon 0.01 at the end, SB3-zoo's Atari DQN",
    "eval_every": "an evaluation every 50k steps: six points on a 300k curve",
    "eval_games": "10 full games per evaluation (the learning-results protocol)",
}
PRESETS: dict[str, Preset] = {
    "course": Preset(
        "The course project's settings: Nature CNN, uniform replay 100k, Adam 6.25e-5, "
        "warm-up 50k, update every 4, target sync 10k, reduced Breakout action set.",
    ),
    "nature": Preset(
        "Mnih et al. 2015 (1M replay, warm-up 50k, epsilon 1->0.1 over 1M, target sync 10k, "
        "minimal action set) with Adam lr 1e-4 and PyTorch's default eps 1e-8 in place of RMSProp, "
        "as CleanRL and SB3 do.",
        _NATURE,
    ),
    "double": Preset(
        "nature + Double DQN targets (van Hasselt et al. 2016).",
        {**_NATURE, "double": True},
    ),
    "dueling": Preset(
        "double + the dueling head (Wang et al. 2016, who also used double targets).",
        {**_NATURE, "double": True, "dueling": True},
    ),
    "rainbow-lite": Preset(
        "double + dueling + prioritized replay (alpha 0.5, beta 0.4->1) + 3-step "
        "returns, with Rainbow's replay settings (warm-up 20k, target sync 8k, Adam 6.25e-5 with "
        "eps 1.5e-4, epsilon 1->0.01 over 250k); no noisy nets, no distributional head.",
        _RAINBOW_LITE,
    ),
    # The wall-clock study's winner (issue #28, docs/results/wallclock): the least minutes to a
    # training score of 30 on a 2-core CPU, 3 seeds, against plain DQN with SB3's quick settings.
    "laptop": Preset(
        "For a CPU laptop, 300k steps: the wall-clock study's winner (docs/results/wallclock; "
        "Breakout to a training score of 30 at a median 248k steps, 21.6 minutes on host B). "
        "Plain DQN with SB3's quick Atari settings (one-step targets, no double, uniform replay "
        "100k, warm-up 20k, a target sync every 1k steps, epsilon 1->0.01 over 80k) but Adam lr "
        "4e-4 and one update of 32 every 8 steps (replay ratio 4: 1.75x the steps per second of "
        "replay ratio 8; more steps to 30, fewer minutes); 8 envs stepped together; the update "
        "in bf16 where the CPU does bf16 in hardware, float32 elsewhere (--bf16 auto; on host A "
        "a median 7.9 minutes to 30); an evaluation of 10 games every 50k.",
        {
            "actions": "minimal",
            "num_envs": 8,
            "buffer_size": 100_000,
            "replay": "uniform",
            "warmup_steps": 20_000,
            "lr": 4e-4,
            "adam_eps": 1e-8,
            "n_step": 1,
            "double": False,
            "update_every": 8,
            "target_update": 1_000,
            "eps_end": 0.01,
            "eps_decay": 80_000,
            "bf16": "auto",
            "total_steps": 300_000,
            "eval_every": 50_000,
            "eval_games": 10,
        },
        sources={
            **_LAPTOP_SOURCES,
            "bf16": "auto, bf16 where the CPU does it in hardware: on host A (Zen 5) 1.215x the "
            "steps per second, and 3 seeds reached 30 at a median 252.2k steps against 227.8k "
            "in float32 there, 7.9 against 8.7 minutes (docs/results/wallclock); float32 on "
            "CPUs that emulate bf16 (10x slower) and on GPUs (not measured)",
            "replay": "uniform: prioritized replay learned no better in 3 seeds each "
            "(docs/results/laptop)",
            "warmup_steps": "20k steps of random play, the study's plain-DQN baseline",
            "lr": "Adam 4e-4, 4x SB3's 1e-4: every seed reached 30 by 300k (3 of 3), the "
            "baseline 1 of 3 (docs/results/wallclock)",
            "n_step": "one-step targets: 3-step led early, then stalled below them by 300k "
            "(one seed, docs/results/wallclock: plain --n-step 3)",
            "double": "no Double DQN: 15% more time per step, and no faster per step in the "
            "one paired seed (docs/results/wallclock, laptop --no-double)",
            "update_every": "an update every 8 steps (replay ratio 4): 1.75x the steps per "
            "second; to 30 in a median 21.6 minutes against 25.7 for every 4 at lr 4e-4 (3 seeds "
            "each, host B, docs/results/wallclock)",
            "eps_decay": "epsilon 1 -> 0.01 over 80k steps, the study's plain-DQN baseline",
            "total_steps": "300k steps: the study's stage-2 runs",
        },
    ),
    # The laptop preset until the wall-clock study (issue #28), kept so that the runs made with it
    # (docs/results/laptop, bf16, pqn) can be repeated by name.
    "laptop-v1": Preset(
        "The laptop preset until the wall-clock study (docs/results/wallclock), which beat it: "
        "8 envs stepped together (more steps per second), uniform replay 100k, warm-up 20k, "
        "3-step double-DQN targets, a target sync every 1k steps and epsilon 1->0.01 over 100k "
        "(the sync, final epsilon, replay size and lr are SB3-zoo's Atari DQN values), Adam eps "
        "1e-8 (learned faster than 1.5e-4 in our runs); float32 (bf16 is emulated, 10x slower, on "
        "CPUs without AVX512-BF16); an evaluation of 10 games every 50k.",
        {
            "actions": "minimal",
            "num_envs": 8,
            "buffer_size": 100_000,
            "warmup_steps": 20_000,
            "lr": 1e-4,
            "adam_eps": 1e-8,
            "n_step": 3,
            "double": True,
            "target_update": 1_000,
            "eps_end": 0.01,
            "eps_decay": 100_000,
            "total_steps": 300_000,
            "eval_every": 50_000,
            "eval_games": 10,
        },
        sources={
            **_LAPTOP_SOURCES,
            "warmup_steps": "20k steps of random play, Rainbow's (Hessel et al. 2018)",
            "lr": "Adam 1e-4, SB3-zoo's Atari DQN and CleanRL's",
            "n_step": "3-step returns, Rainbow's: reward reaches the Q-values sooner",
            "double": "Double DQN targets (van Hasselt et al. 2016)",
            "eps_decay": "epsilon 1 -> 0.01 over 100k steps: a third of the run",
            "total_steps": "300k steps: the runs of docs/results/laptop (an hour or two on a CPU)",
        },
    ),
    # PQN with the paper's Atari settings: purejaxql's purejaxql/config/alg/pqn_atari.yaml.
    "pqn": Preset(
        "PQN (Gallici et al. 2024) with the paper's Atari settings (purejaxql's pqn_atari.yaml):"
        " 128 envs x 32-step rollouts, Q(lambda) targets with lambda 0.65, 2 epochs x 32"
        " minibatches of 128, RAdam lr 2.5e-4, gradient norm clipped to 10, LayerNorm, epsilon"
        " 1 -> 0.001 over the first 10% of 10M steps; no replay, no target network.",
        {
            "algo": "pqn",
            "actions": "minimal",
            "num_envs": 128,
            "rollout_steps": 32,
            "epochs": 2,
            "minibatches": 32,
            "lr": 2.5e-4,
            "adam_eps": 1e-8,
            "q_lambda": 0.65,
            "max_grad_norm": 10.0,
            "layer_norm": True,
            "warmup_steps": 0,
            "eps_start": 1.0,
            "eps_end": 0.001,
            "eps_decay": 1_000_000,
            "total_steps": 10_000_000,
            "eval_every": 500_000,
            "eval_games": 10,
        },
        sources={
            "algo": "PQN, Gallici et al. 2024 (Simplifying Deep Temporal Difference Learning)",
            "actions": "the minimal action set (envpool's default in purejaxql)",
            "num_envs": "NUM_ENVS 128, purejaxql pqn_atari.yaml",
            "rollout_steps": "NUM_STEPS 32, purejaxql pqn_atari.yaml",
            "epochs": "NUM_EPOCHS 2, purejaxql pqn_atari.yaml",
            "minibatches": "NUM_MINIBATCHES 32, purejaxql pqn_atari.yaml",
            "lr": "LR 2.5e-4 (no decay: LR_LINEAR_DECAY False), purejaxql pqn_atari.yaml",
            "adam_eps": "RAdam's default eps 1e-8, as optax.radam in purejaxql",
            "q_lambda": "LAMBDA 0.65, purejaxql pqn_atari.yaml",
            "max_grad_norm": "MAX_GRAD_NORM 10, purejaxql pqn_atari.yaml",
            "layer_norm": "NORM_TYPE layer_norm, purejaxql pqn_atari.yaml",
            "warmup_steps": "no warm-up: PQN learns from its first rollout",
            "eps_start": "EPS_START 1, purejaxql pqn_atari.yaml",
            "eps_end": "EPS_FINISH 0.001, purejaxql pqn_atari.yaml",
            "eps_decay": "EPS_DECAY 0.1 of the run: 1M of 10M steps, purejaxql pqn_atari.yaml",
            "total_steps": "TOTAL_TIMESTEPS 1e7 agent steps, purejaxql pqn_atari.yaml",
            "eval_every": "an evaluation every 500k steps: twenty points on a 10M curve",
            "eval_games": "10 full games per evaluation (the learning-results protocol)",
        },
    ),
    "rainbow": Preset(
        "All six parts of Rainbow with the settings of Hessel et al. 2018 (their Table 1"
        " unless said): rainbow-lite's double targets, dueling head, prioritized replay (alpha 0.5,"
        " beta 0.4->1 over the run, priorities from the per-sample distributional loss: the"
        " cross-entropy, the paper's KL up to the target's entropy), 3-step returns, Adam lr"
        " 6.25e-5 with eps 1.5e-4, warm-up 20k agent steps (80k frames), target sync every 8k"
        " agent steps (32k frames), 1M replay (nature's); plus C51's"
        " 51 atoms on [-10, 10] (Bellemare et al. 2017, kept by Rainbow) and noisy nets with sigma0"
        " 0.5 (Fortunato et al. 2018's factorised setting, kept by Rainbow). Exploration is the"
        " noise alone: epsilon 1 (random play) during warm-up, then 0 from the first learning step"
        " (--eps-decay 1), as Rainbow's epsilon 0; evaluation keeps --eval-epsilon 0.05 and the"
        " noisy layers' mean weights (Dopamine's eval_mode). Not the paper's: gradients are clamped"
        " element-wise to 1 (the course project's), not clipped by norm 10.",
        {
            **_RAINBOW_LITE,
            "distributional": True,
            "atoms": 51,
            "v_min": -10.0,
            "v_max": 10.0,
            "noisy": True,
            "noisy_sigma0": 0.5,
            "eps_start": 1.0,  # random play fills the replay during warm-up
            "eps_end": 0.0,  # then exploration is the noise alone
            "eps_decay": 1,
        },
        sources={
            "actions": "the minimal action set, as nature (Mnih et al. 2015) and Dopamine",
            "buffer_size": "1M transitions, as Mnih et al. 2015 (Rainbow keeps DQN's)",
            "lr": "Adam step size 6.25e-5, Hessel et al. 2018 Table 1",
            "adam_eps": "Adam epsilon 1.5e-4, Hessel et al. 2018 Table 1",
            "warmup_steps": "min history 80k frames = 20k agent steps, Hessel et al. 2018 Table 1",
            "eps_end": "epsilon 0 once learning starts: noisy nets explore, Hessel et al. 2018",
            "eps_decay": "1 step: epsilon falls from 1 to 0 right after warm-up (see eps_end)",
            "target_update": "target period 32k frames = 8k agent steps, "
            "Hessel et al. 2018 Table 1",
            "double": "Double DQN (van Hasselt et al. 2016), one of Rainbow's six parts",
            "dueling": "dueling streams over atoms (Wang et al. 2016), as Rainbow's network",
            "replay": "proportional prioritized replay (Schaul et al. 2016), as Rainbow",
            "alpha": "priority exponent 0.5, Hessel et al. 2018 Table 1",
            "beta0": "IS exponent 0.4 annealed to 1 over the run, Hessel et al. 2018 Table 1",
            "n_step": "multi-step returns n = 3, Hessel et al. 2018 Table 1",
            "distributional": "C51 (Bellemare et al. 2017), one of Rainbow's six parts",
            "atoms": "51 atoms, Bellemare et al. 2017, kept by Hessel et al. 2018 Table 1",
            "v_min": "support [-10, 10], Bellemare et al. 2017, kept by Hessel et al. 2018",
            "v_max": "support [-10, 10], Bellemare et al. 2017, kept by Hessel et al. 2018",
            "noisy": "factorised NoisyNet (Fortunato et al. 2018), one of Rainbow's six parts",
            "noisy_sigma0": "sigma0 0.5, Fortunato et al. 2018 factorised, "
            "Hessel et al. 2018 Table 1",
            "eps_start": "random play (epsilon 1) fills the replay during warm-up",
        },
    ),
}


# Old names of values, still accepted everywhere: the course project's preset and action set
# were called "seed" (after the project this tool grew from) until they were named for it. A
# Config holds the current name; old config.toml files and checkpoints compare through
# `canonical_settings`.
# ``bf16`` was a yes/no setting until it could be 'auto': true and false are 'on' and 'off'.
PRESET_ALIASES: dict[str | bool, str] = {"seed": "course"}
ACTIONS_ALIASES: dict[str | bool, str] = {"seed": "course"}
BF16_ALIASES: dict[str | bool, str] = {True: "on", False: "off"}
VALUE_ALIASES: dict[str, dict[str | bool, str]] = {
    "preset": PRESET_ALIASES,
    "actions": ACTIONS_ALIASES,
    "bf16": BF16_ALIASES,
}


def canonical_value(name: str, value: Any) -> Any:
    """The current name of ``value`` of setting ``name`` (``value`` itself unless old)."""
    aliases = VALUE_ALIASES.get(name, {})
    return aliases.get(value, value) if isinstance(value, (str, bool)) else value


def canonical_preset(name: str) -> str:
    """The current name of preset ``name`` (itself unless it is an old name)."""
    return PRESET_ALIASES.get(name, name)


def canonical_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` (a config.toml or a checkpoint's config, as read) with old names of values
    replaced by the current ones, so an old run compares equal to a new one of its settings."""
    out = dict(settings)
    for name in VALUE_ALIASES:
        if name in out:
            out[name] = canonical_value(name, out[name])
    return out


# Names users bring from other tools, and the field they mean here.
ALIASES = {"learning_rate": "lr", "discount": "gamma", "seed_value": "seed"}


def did_you_mean(name: str, names: Sequence[str] = FIELD_NAMES) -> str | None:
    """The known name a mistyped (or another tool's) ``name`` most likely means, if any."""
    alias = ALIASES.get(name)
    if alias in names:
        return alias
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.75)
    return close[0] if close else None


def _flag(name: str) -> str:
    return name.replace("_", "-")


def preset_config(name: str) -> Config:
    """The settings of preset ``name`` (an old name of a preset is accepted)."""
    name = canonical_preset(name)
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    return Config(**{**PRESETS[name].changes, "preset": name})


def _coerce(name: str, value: Any) -> Any:
    """Check a TOML value against the field's type (ints are accepted for floats)."""
    kind = type(getattr(Config(), name))
    if isinstance(value, bool) and kind is not bool:
        value = canonical_value(name, value)  # an old config.toml's `bf16 = true`: 'on'
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, float) and value.is_integer():
        return int(value)  # `total_steps = 1e6` means 1,000,000
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"config key {name!r} must be {kind.__name__}, got {value!r}")
    return value


# TOML tables a run's config.toml may hold beside its settings: what else makes the run what it
# is (``[apex]``: how an ``--actors`` run was spread over Ray actors). They describe the run for
# ``plot`` and are not Config settings: ``load_toml`` (``--config``, ``--resume``) reads past them.
RUN_TABLES = ("apex",)

RunTables = Mapping[str, Mapping[str, int]]


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read config changes from a TOML file (flat keys, dashes or underscores; the tables of
    :data:`RUN_TABLES` are not settings and are passed over)."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    changes: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name in RUN_TABLES and isinstance(value, dict):
            continue
        if name not in FIELD_NAMES:
            guess = did_you_mean(name)
            hint = f"; did you mean {guess!r}?" if guess else ""
            raise ConfigError(f"unknown key {key!r} in config file {path}{hint}")
        changes[name] = _coerce(name, value)
    return changes


def to_toml(config: Config, tables: RunTables | None = None) -> str:
    """Serialise a config as flat TOML that `load_toml` reads back to an equal config, then
    ``tables`` (of :data:`RUN_TABLES`: integers) as TOML tables."""
    lines = ["# atari-dqn resolved configuration (counts are agent steps)"]
    for f in fields(Config):
        value = getattr(config, f.name)
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str):
            text = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        elif isinstance(value, float):
            text = repr(value)
        else:
            text = str(value)
        lines.append(f"{f.name} = {text}")
    for name, table in (tables or {}).items():
        if name not in RUN_TABLES:
            raise ValueError(f"{name!r} is not one of the run tables {RUN_TABLES}")
        lines += ["", f"[{name}]", *(f"{k} = {int(v)}" for k, v in table.items())]
    return "\n".join(lines) + "\n"
