"""Benchmarks (``atari-dqn bench ...``): commands, not tests; each figure next to its baseline.

* :mod:`~atari_dqn.bench.replay`: µs per replay add / sample / priority update and bytes per
  transition, uniform and prioritized, vs the course project's Fenwick sampler
  (:mod:`~atari_dqn.bench.fenwick_course`).
* :mod:`~atari_dqn.bench.train`: env steps/s while learning, one row per run, each in a process
  of its own, vs the course project's one-file loop (:mod:`~atari_dqn.bench.course_loop`); and
  the ceilings.
* :mod:`~atari_dqn.bench.update`: ms of one gradient update per variant and thread count.
* :mod:`~atari_dqn.bench.envs`: random-play env steps/s of ale-py's vector env vs EnvPool.
* :mod:`~atari_dqn.bench.memory`: RSS over a long run once the replay is full (a soak).
* :mod:`~atari_dqn.bench.actors`: env steps/s that 1, 2, 4, ... Ape-X actors collect (Ray).

:mod:`~atari_dqn.bench.timing` holds what they share. Runs are built by :mod:`atari_dqn.build`;
nothing here imports the CLI, and nothing outside the CLI imports this package.
"""
