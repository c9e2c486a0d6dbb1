"""Stable-Baselines3's DQN, learning steps/s on this machine: the baseline of the wall-clock study
(issue #28), measured as ``atari-dqn bench train`` measures its rows.

SB3's quick Atari settings (the issue's plain-DQN baseline): CnnPolicy, replay 100k, Adam lr 1e-4,
batch 32, one update every 4 env steps (a replay ratio of 8), target sync every 1000 steps,
AtariWrapper with 4 stacked frames, one env. ε is at its end (0.01) from the start, as in the
bench, so acting runs the network as in most of a real run. The clock starts ``--ramp`` steps
after ``--warmup`` (SB3's ``learning_starts``) and runs ``--steps`` learning steps.

Not a dependency of atari-dqn: run it from its own venv (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import time

import ale_py
import gymnasium as gym
import stable_baselines3
import torch
from stable_baselines3 import DQN
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_atari_env
from stable_baselines3.common.vec_env import VecFrameStack


class Clock(BaseCallback):
    """Marks the time and step count of the first env step at or past ``start``."""

    def __init__(self, start: int) -> None:
        super().__init__()
        self.start = start
        self.t0: float | None = None
        self.s0 = 0

    def _on_step(self) -> bool:
        if self.t0 is None and self.num_timesteps >= self.start:
            self.t0, self.s0 = time.perf_counter(), self.num_timesteps
        return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env-id", default="BreakoutNoFrameskip-v4")
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--ramp", type=int, default=100)
    parser.add_argument("--steps", type=int, default=3000)
    args = parser.parse_args()
    gym.register_envs(ale_py)
    env = VecFrameStack(make_atari_env(args.env_id, n_envs=1, seed=0), n_stack=4)
    model = DQN(
        "CnnPolicy",
        env,
        buffer_size=100_000,
        learning_rate=1e-4,
        batch_size=32,
        learning_starts=args.warmup,
        target_update_interval=1000,
        train_freq=4,
        gradient_steps=1,
        exploration_fraction=1e-9,  # ε at its end (0.01) at once
        exploration_final_eps=0.01,
        optimize_memory_usage=False,
        device="cpu",
        seed=0,
        verbose=0,
    )
    clock = Clock(args.warmup + args.ramp)
    model.learn(total_timesteps=args.warmup + args.ramp + args.steps, callback=clock)
    assert clock.t0 is not None
    rate = (model.num_timesteps - clock.s0) / (time.perf_counter() - clock.t0)
    print(json.dumps({
        "row": "sb3 DQN, 1 env, replay ratio 8",
        "env_steps_per_s": round(rate, 1),
        "steps_timed": model.num_timesteps - clock.s0,
        "torch_threads": torch.get_num_threads(),
        "stable_baselines3": stable_baselines3.__version__,
        "torch": torch.__version__,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
