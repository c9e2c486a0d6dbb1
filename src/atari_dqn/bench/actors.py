"""``atari-dqn bench actors``: env steps/s the Ape-X actors deliver into the replay, per N.

For N = 1, 2, 4, ... actors (each one env and a CPU policy copy, one CPU reserved each), a
replay server and no learner: the actors play blocks (acting with the network, computing the
initial priorities of what they complete) and this process forwards them to the server, as in
training. After a warm-up of one block per actor, ``steps`` agent steps are timed until the
replay holds them all. The rate is what collection alone can feed a learner.

Ray is imported only inside :func:`actors_benchmark`: the package works without it.
"""

from __future__ import annotations

import os

from atari_dqn.bench.timing import Result
from atari_dqn.config import Config


def actor_counts(max_actors: int) -> list[int]:
    """1, 2, 4, ... up to ``max_actors`` (included even when not a power of two)."""
    counts, n = [], 1
    while n < max_actors:
        counts.append(n)
        n *= 2
    return [*counts, max_actors]


def actors_benchmark(
    config: Config,
    actions: tuple[str, ...],
    *,
    counts: list[int],
    steps: int,
    block: int,
    address: str | None = None,
) -> Result:
    """Steps/s per actor count; each count's replay server holds the replay ``config`` asks for
    (:func:`atari_dqn.build.build_replay`, one ring per actor stream)."""
    import functools

    import numpy as np
    import ray

    from atari_dqn.build import build_network, build_replay
    from atari_dqn.distributed.apex import (
        ActorPool,
        collect_rate,
        start_actors,
        start_ray,
        start_server,
        weights_of,
    )
    from atari_dqn.distributed.settings import ApexSettings, actor_exploration

    owns_ray = start_ray(address, num_cpus=max(os.cpu_count() or 1, max(counts)))
    weights = weights_of(build_network(config, len(actions)))
    rows = []
    try:
        for n in counts:
            apex = ApexSettings(actors=n, block=block)
            replay_rng = np.random.default_rng(config.seed)
            make_replay = functools.partial(build_replay, config, replay_rng, apex.streams)
            server = start_server(make_replay)
            prioritized = bool(ray.get(server.uses_priorities.remote()))
            epsilons = actor_exploration(config, apex.streams)
            pool = ActorPool(
                start_actors(config, actions, apex, epsilons, prioritized=prioritized),
                server,
                envs_per_actor=1,
                block=block,
                seed=config.seed,
            )
            try:
                pool.publish(weights)
                rate = collect_rate(pool, steps, warmup=n * block)
            finally:
                pool.close()
                ray.kill(server, no_restart=True)
            rows.append({"actors": n, "steps_per_s": rate})
    finally:
        if owns_ray:
            ray.shutdown()
    base = rows[0]["steps_per_s"]
    for row in rows:
        row["ratio"] = row["steps_per_s"] / base
    return {
        "cpus": os.cpu_count(),
        "env_id": config.env_id,
        "replay": config.replay,
        "block": block,
        "steps": steps,
        "rows": rows,
    }


def actors_table(result: Result) -> str:
    lines = [
        f"Ape-X collection, {result['env_id']}, {result['replay']} replay, blocks of "
        f"{result['block']} steps, {result['steps']} steps timed per row, "
        f"{result['cpus']} CPUs",
        "actors  env steps/s  vs 1 actor",
    ]
    for row in result["rows"]:
        lines.append(f"{row['actors']:>6}  {row['steps_per_s']:>11.0f}  {row['ratio']:>9.2f}x")
    return "\n".join(lines)
