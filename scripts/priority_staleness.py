"""How stale are a prioritized run's priorities? Its checkpoint's replay under its own networks.

The course project's author guessed that prioritized replay did not help because priorities go stale
in a large memory: a transition's priority is its |δ| from the last time it was sampled (or, until
then, the largest priority so far), while the network moves on. This reads a run's checkpoint
(replay and networks as they were at that step), draws ``--samples`` of the replay's sampleable
slots (uniformly, seeded), computes each one's |δ| now (the run's own target: Double DQN when
the run used it, n-step returns as stored) and compares it with the priority the slot holds, by
the slot's age (agent steps since it was written).

    python scripts/priority_staleness.py RUN_DIR [--samples 20000] [--buckets 5]

Prints one markdown row per age bucket: slots, the share still at the initial priority (never
sampled since written), the share of the sampling probability the stored priorities give the
bucket and the share fresh priorities would give it, the Spearman rank correlation of stored and
fresh |δ| over the slots that were sampled, and the mean of each; then the share of the
sampling that the tenth of the slots with the largest fresh |δ| get, stored vs fresh.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from atari_dqn import losses
from atari_dqn.agent import DQNAgent
from atari_dqn.build import build_agent, build_replay, check_training_input
from atari_dqn.checkpoint import load_checkpoint_agent, load_checkpoint_replay
from atari_dqn.config import Config, load_toml
from atari_dqn.replay.prioritized import PrioritizedReplay


def ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    r = np.empty(len(x))
    r[order] = np.arange(len(x))
    return r


def share(part: float, whole: float) -> str:
    return f"{part / whole:.1%}" if whole else "-"


def mean(x: np.ndarray) -> str:
    return f"{x.mean():.3f}" if len(x) else "-"


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3:
        return float("nan")
    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


@torch.no_grad()
def fresh_td(
    agent: DQNAgent, replay: PrioritizedReplay, slots: np.ndarray, double: bool
) -> np.ndarray:
    out = []
    for part in np.array_split(slots, max(1, len(slots) // 256)):
        b = replay.storage.gather(part)
        obs, next_obs = torch.from_numpy(b.obs), torch.from_numpy(b.next_obs)
        returns, discounts = torch.from_numpy(b.returns), torch.from_numpy(b.discounts)
        q, next_t = agent.online(obs), agent.target(next_obs)
        if double:
            y = losses.double_q_target(returns, discounts, next_t, agent.online(next_obs))
        else:
            y = losses.q_learning_target(returns, discounts, next_t)
        out.append(losses.td_errors(q, torch.from_numpy(b.actions), y).abs().numpy())
    return np.concatenate(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--buckets", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    config = Config(**load_toml(args.run / "config.toml"))
    if config.replay != "prioritized" or config.distributional:
        print(f"{args.run}: not a prioritized run with a scalar head", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    actions, device = check_training_input(config.replace(device="cpu"))
    replay = build_replay(config, np.random.default_rng(0), config.num_envs)
    assert isinstance(replay, PrioritizedReplay)
    checkpoint = args.run / "checkpoint.safetensors"
    step = load_checkpoint_replay(checkpoint, replay)
    agent = build_agent(config, len(actions), device)
    load_checkpoint_agent(checkpoint, agent)
    st = replay.storage
    ready = np.flatnonzero(st.ready)
    rng = np.random.default_rng(args.seed)
    slots = np.sort(rng.choice(ready, size=min(args.samples, len(ready)), replace=False))
    # Age: slots are written one per stream per vector step, so local age x streams = steps.
    stream, local = slots // st.per_stream, slots % st.per_stream
    age = ((st.cursor[stream] - local - 1) % st.per_stream) * st.num_streams
    p_stored = replay.tree.get(slots)
    initial = np.isclose(p_stored, replay.max_priority, rtol=1e-9)
    td_stored = p_stored ** (1 / replay.alpha) - replay.priority_eps
    td_now = fresh_td(agent, replay, slots, config.double)
    p_fresh = (td_now + replay.priority_eps) ** replay.alpha
    print(
        f"{args.run} at step {step}: {len(slots)} of {len(ready)} sampleable slots, "
        f"alpha {replay.alpha}, max priority {replay.max_priority:.3g} "
        f"(|δ| {replay.max_priority ** (1 / replay.alpha):.3g})"
    )
    print(
        "| age (agent steps) | slots | at initial priority | sampling share, stored "
        "| sampling share, fresh | Spearman, stored vs fresh abs TD (sampled slots) "
        "| mean stored abs TD (sampled) | mean fresh abs TD |"
    )
    print("|---|---|---|---|---|---|---|---|")
    edges = np.linspace(0, st.per_stream * st.num_streams, args.buckets + 1)
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (age >= lo) & (age < hi)
        s = m & ~initial
        print(
            f"| {lo:,.0f}-{hi:,.0f} | {m.sum()} | {share(initial[m].sum(), m.sum())} "
            f"| {share(p_stored[m].sum(), p_stored.sum())} "
            f"| {share(p_fresh[m].sum(), p_fresh.sum())} "
            f"| {spearman(td_stored[s], td_now[s]):.2f} | {mean(td_stored[s])} "
            f"| {mean(td_now[m])} |"
        )
    s = ~initial
    print(
        f"| all | {len(slots)} | {share(initial.sum(), len(slots))} | 100% | 100% "
        f"| {spearman(td_stored[s], td_now[s]):.2f} | {mean(td_stored[s])} | {mean(td_now)} |"
    )
    # Does replay focus on the transitions that are surprising now? The sampling share of the
    # tenth of the slots with the largest fresh |δ|: 10% under uniform replay.
    top = td_now >= np.quantile(td_now, 0.9)
    print(
        f"the {top.sum()} slots with the largest tenth of fresh |δ| get "
        f"{share(p_stored[top].sum(), p_stored.sum())} of the sampling under the stored "
        f"priorities, {share(p_fresh[top].sum(), p_fresh.sum())} under fresh ones "
        f"(10% under uniform replay)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
