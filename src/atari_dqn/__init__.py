"""atari-dqn: Deep Q-Network agents for Atari, Breakout first.

The Python API, for notebooks and scripts (imported on first use, so ``import atari_dqn`` stays
cheap)::

    import atari_dqn
    config = atari_dqn.preset_config("double").replace(total_steps=300_000, seed=1)
    run_dir = atari_dqn.train(config, "runs/double-s1")    # what `atari-dqn train` does
    atari_dqn.resume_run(atari_dqn.check_resume(run_dir, {"total_steps": 600_000}))
    policy = atari_dqn.load_policy(run_dir, which="best")  # a player: .act(frames), .play()
    print([game.score for game in policy.play(games=3)])
    score = atari_dqn.score_model(run_dir, which="best", episodes=10)  # `atari-dqn evaluate`
    training = atari_dqn.build_training(config)            # the parts, to drive yourself
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public name -> the module that defines it.
_API = {
    "Config": "atari_dqn.config",
    "PRESETS": "atari_dqn.config",
    "UsageError": "atari_dqn.config",
    "preset_config": "atari_dqn.config",
    "load_toml": "atari_dqn.config",
    "train": "atari_dqn.driver",
    "start_run": "atari_dqn.driver",
    "check_resume": "atari_dqn.driver",
    "resume_run": "atari_dqn.driver",
    "build_training": "atari_dqn.build",
    "score_model": "atari_dqn.scoring",
    "load_policy": "atari_dqn.scoring",
    "Reporting": "atari_dqn.reporting",
    "load_model": "atari_dqn.artifacts",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'atari_dqn' has no attribute {name!r}")
