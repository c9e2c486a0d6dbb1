"""Full-state checkpoints: one safetensors file, written atomically, loaded without pickle.

Everything a run needs to continue exactly lives in ``RUN/checkpoint.safetensors``: networks and
optimiser (agent), replay contents and its sampler state, the loop's counters and generator, the
training env's emulator and wrapper state. Arrays go in as tensors; the rest is one JSON document
in the file's metadata. ε and β are pure functions of the step, so the step is their position.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from atari_dqn.artifacts import ArtifactError, atomic_replace

CHECKPOINT_NAME = "checkpoint.safetensors"
CHECKPOINT_FORMAT = "atari-dqn-checkpoint"
CHECKPOINT_VERSION = 1


class Stateful(Protocol):
    """A part of a run whose state goes into checkpoints: flat arrays plus JSON metadata."""

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]: ...

    def load_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None: ...


class StatefulLoop(Protocol):
    """A loop's part of a checkpoint; it must know whether the replay was restored with it."""

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]: ...

    def load_state(
        self, arrays: dict[str, np.ndarray], meta: dict[str, Any], *, replay_restored: bool
    ) -> None: ...


class StatefulAgent(Protocol):
    """The learner's part: tensors (networks, optimiser moments) plus JSON metadata."""

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]: ...

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class SaveInfo:
    path: Path
    bytes: int
    seconds: float


def save_checkpoint(
    path: Path,
    *,
    config: dict[str, Any],
    agent: StatefulAgent,
    replay: Stateful,
    loop: StatefulLoop,
    include_replay: bool,
    extra: dict[str, Any] | None = None,
) -> SaveInfo:
    """Write the state of ``agent``, ``replay`` (optional) and ``loop`` atomically to ``path``."""
    start = time.perf_counter()
    arrays: dict[str, np.ndarray] = {}
    agent_tensors, agent_meta = agent.state()
    for key, tensor in agent_tensors.items():
        arrays[f"agent/{key}"] = tensor.detach().cpu().contiguous().numpy()
    loop_arrays, loop_meta = loop.state()
    arrays |= {f"loop/{k}": np.ascontiguousarray(v) for k, v in loop_arrays.items()}
    replay_meta = None
    if include_replay:
        replay_arrays, replay_meta = replay.state()
        arrays |= {f"replay/{k}": np.ascontiguousarray(v) for k, v in replay_arrays.items()}
    state = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": config,
        "agent": agent_meta,
        "loop": loop_meta,
        "replay": replay_meta,
        "extra": extra or {},
    }
    metadata = {"format": CHECKPOINT_FORMAT, "state": json.dumps(state)}
    path = Path(path)
    atomic_replace(path, lambda tmp: save_file(arrays, str(tmp), metadata=metadata))
    return SaveInfo(path, path.stat().st_size, time.perf_counter() - start)


def read_checkpoint_state(path: Path) -> dict[str, Any]:
    """The JSON part of a checkpoint (cheap: reads the header only); ArtifactError if invalid."""
    invalid = f"{path} is not a valid atari-dqn checkpoint"
    if not Path(path).is_file():
        raise ArtifactError(f"no checkpoint at {path}")
    try:
        with safe_open(str(path), framework="np") as fh:
            meta = fh.metadata() or {}
            keys = list(fh.keys())
    except (SafetensorError, OSError, ValueError):
        raise ArtifactError(invalid) from None
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ArtifactError(invalid)
    try:
        state = json.loads(meta["state"])
    except (KeyError, json.JSONDecodeError):
        raise ArtifactError(invalid) from None
    if state.get("version") != CHECKPOINT_VERSION:
        raise ArtifactError(f"{path}: unsupported checkpoint version {state.get('version')}")
    if not any(k.startswith("agent/") for k in keys):
        raise ArtifactError(invalid)
    return state


def load_checkpoint(
    path: Path, *, agent: StatefulAgent, replay: Stateful, loop: StatefulLoop
) -> dict[str, Any]:
    """Restore agent, replay (if saved) and loop from ``path``; returns the JSON state."""
    state = read_checkpoint_state(path)
    sections: dict[str, dict[str, np.ndarray]] = {"agent": {}, "loop": {}, "replay": {}}
    try:
        with safe_open(str(path), framework="np") as fh:
            for key in fh.keys():
                section, _, name = key.partition("/")
                sections[section][name] = fh.get_tensor(key)
    except (SafetensorError, OSError, ValueError, KeyError):
        raise ArtifactError(f"{path} is not a valid atari-dqn checkpoint (truncated?)") from None
    try:
        agent.load_state(
            {k: torch.from_numpy(v.copy()) for k, v in sections["agent"].items()}, state["agent"]
        )
        if state["replay"] is not None:
            replay.load_state(sections["replay"], state["replay"])
        loop.load_state(
            sections["loop"], state["loop"], replay_restored=state["replay"] is not None
        )
    except (KeyError, ValueError, RuntimeError) as exc:
        raise ArtifactError(f"{path} does not fit this run: {exc}") from None
    return state


def load_checkpoint_replay(path: Path, replay: Stateful) -> int | None:
    """Restore only the replay of the checkpoint at ``path`` (a new Ape-X replay server, while
    the run goes on); returns the checkpoint's step, or None when it saved no replay."""
    state = read_checkpoint_state(path)
    if state["replay"] is None:
        return None
    arrays: dict[str, np.ndarray] = {}
    try:
        with safe_open(str(path), framework="np") as fh:
            for key in fh.keys():
                if key.startswith("replay/"):
                    arrays[key.removeprefix("replay/")] = fh.get_tensor(key)
        replay.load_state(arrays, state["replay"])
    except (SafetensorError, OSError, ValueError, KeyError) as exc:
        raise ArtifactError(f"{path}: its replay cannot be restored: {exc}") from None
    return int(state["loop"]["step"])
