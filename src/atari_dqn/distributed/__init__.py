"""Beyond one machine, on Ray: Ape-X actors and replay server, and hyperparameter sweeps.

The only package of atari-dqn that imports Ray, and only in the modules that need it:

* ``settings``  the distributed settings of a training run (no Ray)
* ``blocks``    blocks of transitions with initial priorities: recorded by an actor, applied to
  the replay by the server (no Ray)
* ``workers``   the actor (env + policy copy) and the replay service, as plain classes (no Ray)
* ``apex``      Ray actors around those, and the learner loop that drives them (Ray)
* ``sweep_spec`` the sweep spec: TOML, grid and random search, validation (no Ray)
* ``sweep``     the sweep on Ray Tune (Ray); each trial runs its Config through the driver

``atari-dqn bench actors`` lives with the other benchmarks, in :mod:`atari_dqn.bench.actors`.
"""
