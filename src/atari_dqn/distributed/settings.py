"""The distributed (Ape-X) settings of a training run. Imports no Ray."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from importlib import metadata
from typing import Any

import numpy as np

from atari_dqn.config import Config, ConfigError, UsageError

# A local Ray (``--actors``, sweeps, ``bench actors`` without --ray-address) listens on every
# interface (its GCS, raylet and workers' gRPC ports: ``_node_ip_address="127.0.0.1"`` does not
# change that in Ray 2.60), so it must authenticate: Ray 2.59 turned token authentication on by
# default for clusters ``ray.init()`` starts (ray-project/ray#64755, cherry-picked into 2.59.0 as
# #66248; docs.ray.io: "Ray 2.59 enables token authentication by default for local clusters").
# Before it, anyone who can reach the machine can run code in the cluster.
RAY_WITH_LOCAL_AUTH = (2, 59)


def check_local_ray(address: str | None) -> None:
    """Refuse (UsageError, one line) to start a local Ray that would accept unauthenticated
    connections from the network: a Ray before 2.59, or ``RAY_AUTH_MODE=disabled``. Joining a
    cluster (``address``, ``RAY_ADDRESS``) is the cluster's owner's business."""
    if address is not None or os.environ.get("RAY_ADDRESS"):
        return
    try:
        version = metadata.version("ray")
    except metadata.PackageNotFoundError:
        return  # (need_ray says so)
    numbers = tuple(int(p) if p.isdigit() else 0 for p in version.split(".")[:2])
    if numbers < RAY_WITH_LOCAL_AUTH:
        raise UsageError(
            f"Ray {version} starts a local cluster that anyone on the network can run code in"
            " (no authentication before Ray 2.59): pip install 'ray[default,tune]>=2.59'"
        )
    if os.environ.get("RAY_AUTH_MODE", "").strip().lower() == "disabled":
        raise UsageError(
            "RAY_AUTH_MODE=disabled would let anyone on the network run code in the local Ray"
            " this starts (it listens on every interface): unset it, or join a cluster of your"
            " own with --ray-address"
        )


# Ape-X (Horgan et al. 2018): actor i of N explores with ε_i = ε^(1 + α_ε · i / (N - 1)).
APEX_EPSILON = 0.4
APEX_EPSILON_ALPHA = 7.0


@dataclass(frozen=True)
class ApexSettings:
    """How an ``--actors N`` run is spread over Ray actors (not part of ``config.toml``)."""

    actors: int  # Ray actors, each with its own envs and policy copy
    envs_per_actor: int = 1  # envs per actor: one SingleEnv, or an AtariVector of this many
    publish_every: int = 100  # learner updates between two weight publications to the actors
    block: int = 50  # env steps per env an actor collects before it ships them as one block

    @property
    def streams(self) -> int:
        """Replay streams: one per actor-env."""
        return self.actors * self.envs_per_actor

    def validate(self, config: Config) -> None:
        """ConfigError naming the first bad setting."""
        if not 1 <= self.actors <= 4096:
            raise ConfigError(f"--actors must be between 1 and 4096, got {self.actors}")
        if not 1 <= self.envs_per_actor <= 256:
            raise ConfigError(
                f"--envs-per-actor must be between 1 and 256, got {self.envs_per_actor}"
            )
        if self.publish_every < 1:
            raise ConfigError(f"--publish-every must be positive, got {self.publish_every}")
        if self.block < 1:
            raise ConfigError(f"--actor-block must be positive, got {self.block}")
        if config.algo != "dqn":
            raise ConfigError(f"--actors (Ape-X) trains DQN, not --algo {config.algo}")
        if config.num_envs != 1:
            raise ConfigError("--num-envs is for single-process runs; use --envs-per-actor")
        if config.buffer_size // self.streams < 2 * (config.n_step + 4):
            raise ConfigError(
                f"--buffer-size {config.buffer_size} is too small for --n-step {config.n_step} "
                f"split over {self.streams} actor envs"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ApexSettings:
        return cls(
            **{k: int(data[k]) for k in ("actors", "envs_per_actor", "publish_every", "block")}
        )


def actor_exploration(config: Config, num_envs: int) -> np.ndarray:
    """Each actor env's ε: Ape-X's (:func:`actor_epsilons`), or 0 with noisy nets, whose noise
    explores (as Rainbow sets ε to 0; each actor draws its own noise)."""
    return np.zeros(num_envs) if config.noisy else actor_epsilons(num_envs)


def actor_epsilons(
    num_envs: int, base: float = APEX_EPSILON, alpha: float = APEX_EPSILON_ALPHA
) -> np.ndarray:
    """Ape-X's fixed exploration rates, one per actor env: ``ε_i = base^(1 + alpha·i/(N-1))``.

    From 0.4 for env 0 down to 0.4^8 ≈ 0.00066 for the last; a single env gets 0.4.
    """
    if num_envs == 1:
        return np.array([base])
    i = np.arange(num_envs, dtype=np.float64)
    return base ** (1.0 + alpha * i / (num_envs - 1))
