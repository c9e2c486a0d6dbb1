"""Ape-X actors, replay server and sweeps.

The maths and bookkeeping (priorities given by actors, blocks replayed in order, stale priority
updates dropped, sweep specs) are tested in one process without Ray. The Ray tests (marked
``ray``, skipped when Ray is not installed) share one local Ray of 2 CPUs per module: a tiny
Ape-X run with 2 actors and its ``--resume``, an actor killed mid-run, a 2-trial sweep.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import os
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest

from atari_dqn.build import build_learner, build_network, build_replay
from atari_dqn.cli import main
from atari_dqn.config import Config
from atari_dqn.distributed.blocks import BlockRecorder, apply_block
from atari_dqn.distributed.settings import ApexSettings, actor_epsilons, actor_exploration
from atari_dqn.distributed.sweep_spec import SpecError, parse_spec
from atari_dqn.distributed.workers import ActorWorker, ReplayService
from atari_dqn.replay.prioritized import PrioritizedReplay
from atari_dqn.replay.storage import Batch, FrameStorage
from tiny import tiny, tiny_settings

ALPHA, PRIORITY_EPS = 0.6, 1e-6
SHAPE = (84, 84)


# ---------------------------------------------------------------------- no Ray
def test_actor_epsilons_follow_apex():
    assert actor_epsilons(1).tolist() == [0.4]
    eps = actor_epsilons(8)
    assert eps[0] == pytest.approx(0.4) and eps[-1] == pytest.approx(0.4**8)
    assert np.all(np.diff(eps) < 0)
    assert eps[3] == pytest.approx(0.4 ** (1 + 7 * 3 / 7))


def _replay(capacity: int, streams: int, n_step: int = 3) -> PrioritizedReplay:
    storage = FrameStorage(capacity, n_step=n_step, gamma=0.9, num_streams=streams)
    return PrioritizedReplay(
        storage, np.random.default_rng(0), alpha=ALPHA, priority_eps=PRIORITY_EPS
    )


def test_given_td_errors_enter_with_alpha_applied_once():
    replay = _replay(64, 1, n_step=1)
    frame = np.zeros(SHAPE, np.uint8)
    replay.begin(0, frame)
    replay.append(0, 1, 1.0, frame, False, False, td_errors=np.array([-2.5]))
    p = replay.tree.get(np.array([0]))[0]
    assert p == pytest.approx((2.5 + PRIORITY_EPS) ** ALPHA)  # not ((..)^α)^α, not 2.5
    assert replay.max_priority == pytest.approx(p)
    replay.append(0, 1, 1.0, frame, False, False)  # no TD error: the maximum priority
    assert replay.tree.get(np.array([1]))[0] == pytest.approx(p)
    with pytest.raises(ValueError, match="2 TD errors given for 1"):
        replay.append(0, 1, 1.0, frame, False, False, td_errors=np.array([1.0, 2.0]))


def _fake_td(batch: Batch) -> np.ndarray:
    """A TD error that is a function of the transition itself (its frames, action, return)."""
    return (
        batch.returns
        + 0.5 * batch.actions
        + batch.discounts
        + batch.obs[:, -1, 0, 0] / 255.0
        - batch.next_obs[:, -1, 0, 1] / 100.0
    )


def _play(recorder: BlockRecorder, direct: PrioritizedReplay | None, first: int, rng, steps: int,
          open_: list[bool]) -> None:  # fmt: skip
    """``steps`` random steps in each of the recorder's envs, mirrored into ``direct``."""
    for _ in range(steps):
        for env in range(recorder.num_envs):
            if not open_[env]:
                frame = rng.integers(0, 256, SHAPE, dtype=np.uint8)
                recorder.begin(env, frame)
                if direct is not None:
                    direct.begin(first + env, frame)
                open_[env] = True
            frame = rng.integers(0, 256, SHAPE, dtype=np.uint8)
            action, reward = int(rng.integers(0, 4)), float(rng.choice([-1.0, 0.0, 1.0]))
            terminated, truncated = bool(rng.random() < 0.06), bool(rng.random() < 0.02)
            recorder.append(env, action, reward, frame, terminated, truncated)
            if direct is not None:
                direct.append(first + env, action, reward, frame, terminated, truncated)
            open_[env] = not (terminated or truncated)


def test_blocks_replay_the_actors_calls_and_their_priorities_in_order():
    """An actor (index 1, 2 envs) ships blocks; the server's storage equals one fed directly,
    and every sampleable transition has exactly the priority of its own TD error, even though
    the server's rings (40 slots) wrap and the actor's are sized for a block."""
    rng = np.random.default_rng(5)
    recorder = BlockRecorder(1, 2, block=15, n_step=3, gamma=0.9)
    server, direct = _replay(160, 4), _replay(160, 4)
    open_ = [False, False]
    fresh = []
    for _ in range(14):
        _play(recorder, direct, 2, rng, 15, open_)
        block = recorder.take(_fake_td)
        fresh.append(block.fresh)
        assert len(block.td_errors) == block.completes.sum()
        apply_block(server, block, with_priorities=True)
    assert fresh == [True] + [False] * 13
    for name in ("frames", "actions", "returns", "boot", "terminal", "pos", "ready"):
        assert np.array_equal(getattr(server.storage, name), getattr(direct.storage, name)), name
    ready = np.flatnonzero(server.storage.ready)
    assert len(ready) > 50 and np.all(ready >= 80)  # the actor's streams 2 and 3 only
    expected = (np.abs(_fake_td(server.storage.gather(ready))) + PRIORITY_EPS) ** ALPHA
    np.testing.assert_allclose(server.tree.get(ready), expected, rtol=1e-5)
    assert np.all(server.tree.get(np.flatnonzero(~server.storage.ready)) == 0)


def test_a_restarted_actor_closes_its_open_episodes_first():
    rng = np.random.default_rng(1)
    server = _replay(200, 2)
    first = BlockRecorder(0, 2, block=10, n_step=3, gamma=0.9)
    _play(first, None, 0, rng, 10, [False, False])
    apply_block(server, first.take(_fake_td), with_priorities=True)
    # The actor dies mid-episode; its new incarnation begins new episodes at once.
    again = BlockRecorder(0, 2, block=10, n_step=3, gamma=0.9)
    _play(again, None, 0, rng, 10, [False, False])
    block = again.take(_fake_td)
    assert block.fresh
    apply_block(server, block, with_priorities=True)  # no "begin() while an episode is open"
    assert len(server) > 0


def test_priority_updates_for_rewritten_slots_are_dropped():
    rng = np.random.default_rng(2)
    service = ReplayService(lambda: _replay(60, 1, n_step=1))
    recorder = BlockRecorder(0, 1, block=20, n_step=1, gamma=0.9)
    open_ = [False]
    for _ in range(3):
        _play(recorder, None, 0, rng, 20, open_)
        service.add(recorder.take(_fake_td))
    batch, token, size, stats = service.sample(16, 0.4)
    assert size == len(service.replay) and "replay/max_priority" in stats
    before = service.storage.frames[batch.indices].copy()
    _play(recorder, None, 0, rng, 20, open_)  # a third of the ring is written again
    service.add(recorder.take(_fake_td))
    huge = np.full(len(batch.indices), 1e6)
    service.update_priorities(batch.indices, huge, token)
    rewritten = np.any(service.storage.frames[batch.indices] != before, axis=(1, 2))
    assert rewritten.any() and not rewritten.all()
    p = service.replay.tree.get(batch.indices)
    p_huge = (1e6 + PRIORITY_EPS) ** ALPHA
    still = ~rewritten & service.storage.ready[batch.indices]
    assert np.allclose(p[still], p_huge)
    assert not np.any(np.isclose(p[rewritten], p_huge))


# The tiny run with prioritized 3-step replay, as the Ape-X tests train it.
APEX_TINY: dict[str, int | str | None] = dict(
    replay="prioritized", n_step=3, total_steps=400, warmup_steps=100, target_update=100,
    eval_every=200, eval_max_frames=800, buffer_size=1000, batch_size=16, eps_decay=None,
    device="cpu",
)  # fmt: skip
TINY_CONFIG = Config(**tiny_settings(**APEX_TINY))


def test_actor_worker_collects_a_block_with_initial_priorities():
    actions = ("NOOP", "RIGHT", "LEFT")
    worker = ActorWorker(0, TINY_CONFIG, actions, [0.4], block=12, prioritized=True)
    stats, block = worker.collect(12, seed=3)
    assert stats.steps == block.steps == 12 and block.fresh and stats.fresh
    assert len(block.td_errors) == block.completes.sum() == 12 - 2  # n = 3: two still open
    assert np.all(np.isfinite(block.td_errors)) and np.all(block.td_errors >= 0)
    service = ReplayService(
        functools.partial(build_replay, TINY_CONFIG, np.random.default_rng(0), 2)
    )
    assert service.add(block) == 10
    stats, block = worker.collect(5)
    assert not block.fresh and not stats.fresh and block.completes.sum() == 5
    service.add(block)
    assert service.size() == 15


RAINBOW_TINY = TINY_CONFIG.replace(
    distributional=True, atoms=11, noisy=True, dueling=True, double=True
)


def _random_batch(rng: np.random.Generator, n: int = 6) -> Batch:
    stacks = rng.integers(0, 256, size=(2, n, 4, *SHAPE), dtype=np.uint8)
    return Batch(
        obs=stacks[0],
        actions=rng.integers(0, 3, size=n).astype(np.int64),
        returns=rng.uniform(-2, 3, size=n).astype(np.float32),
        discounts=np.array([0.0, 0.99**3, 0.99, 0.99**3, 0.0, 0.99**2][:n], dtype=np.float32),
        next_obs=stacks[1],
        indices=np.arange(n, dtype=np.int64),
        weights=np.ones(n, dtype=np.float32),
    )


@pytest.mark.parametrize("distributional", [False, True])
def test_actor_priorities_are_what_the_learner_would_give(distributional):
    """An actor's one network as online and target net: its initial priorities equal the
    per-sample |δ| or cross-entropy that a learner's update with both nets equal to it reports
    (computed before the step, so the step does not matter)."""
    import torch

    from atari_dqn.build import build_agent
    from atari_dqn.distributed.workers import initial_priorities

    config = TINY_CONFIG.replace(distributional=distributional, atoms=11, double=True)
    network = build_network(config, 3, torch.Generator().manual_seed(4))
    batch = _random_batch(np.random.default_rng(5))
    priorities = initial_priorities(network, batch, double=True)
    agent = build_agent(config, 3, torch.device("cpu"), online=copy.deepcopy(network))
    expected = agent.update(batch).priority.numpy()
    np.testing.assert_allclose(priorities, expected, rtol=1e-5, atol=1e-6)
    assert priorities.shape == (6,) and np.all(priorities >= 0)


def test_noisy_actor_priorities_use_the_mean_weights():
    import torch

    from atari_dqn.distributed.workers import initial_priorities

    network = build_network(RAINBOW_TINY, 3, torch.Generator().manual_seed(4)).train()
    batch = _random_batch(np.random.default_rng(5))
    network.resample_noise(torch.Generator().manual_seed(1))
    first = initial_priorities(network, batch, double=True)
    network.resample_noise(torch.Generator().manual_seed(2))
    assert np.array_equal(first, initial_priorities(network, batch, double=True))
    assert network.training  # the actor's acting mode is left as it was


def test_a_noisy_actor_explores_by_its_own_noise_reproducibly():
    import torch

    actions = ("NOOP", "RIGHT", "LEFT")
    epsilons = actor_exploration(RAINBOW_TINY, 4)
    assert epsilons.tolist() == [0.0] * 4
    assert np.allclose(actor_exploration(TINY_CONFIG, 4), actor_epsilons(4))
    network = build_network(RAINBOW_TINY, 3, torch.Generator().manual_seed(0))
    weights = {k: v.numpy() for k, v in network.state_dict().items()}

    def blocks(index: int, seed: int):
        worker = ActorWorker(index, RAINBOW_TINY, actions, [0.0], block=40, prioritized=True)
        worker.set_weights(weights, version=0)
        assert worker.noise is not None
        before = worker.noise.get_state()
        stats, block = worker.collect(40, seed=seed)
        after = worker.noise.get_state()
        return stats, block, before, after

    stats, block, before, after = blocks(0, seed=3)
    assert stats.steps == 40 and np.all(np.isfinite(block.td_errors))
    assert not torch.equal(before, after)  # noise is drawn while acting
    _, again, _, _ = blocks(0, seed=3)
    assert np.array_equal(block.actions, again.actions)  # same seed, same noise, same game
    assert np.array_equal(block.td_errors, again.td_errors)
    _, other, _, _ = blocks(1, seed=3)  # another actor: its own noise
    assert not np.array_equal(block.actions, other.actions)


# ---------------------------------------------------------------------- sweep spec
SPEC = """
seeds = [1, 2]
num_samples = 2
[resources]
cpu = 1
gpu = 0.25
[train]
preset = "rainbow-lite"
total_steps = 1000
[grid]
lr = [1e-4, 6.25e-5]
[random]
alpha = {uniform = [0.4, 0.7]}
n-step = {randint = [1, 4]}
"""


def test_sweep_spec_makes_grid_times_samples_times_seeds_trials():
    spec = parse_spec(SPEC, Path("lr.toml"))
    assert len(spec.trials) == 2 * 2 * 2
    assert spec.swept_keys == ["lr", "alpha", "n_step"]
    assert (spec.cpu, spec.gpu) == (1.0, 0.25)
    assert spec.default_out() == Path("sweeps/lr")
    t = spec.trials[0]
    assert t.config.preset == "rainbow-lite" and t.config.lr == 1e-4 and t.seed == 1
    assert 0.4 <= t.config.alpha <= 0.7 and 1 <= t.config.n_step < 4
    assert spec.trials[1].params == t.params and spec.trials[1].seed == 2  # seeds repeat
    assert spec.trials[2].params["alpha"] != t.params["alpha"]  # a new draw
    assert parse_spec(SPEC, Path("lr.toml")).trials == spec.trials  # the same draws again
    argv = t.argv(Path("/x"))
    assert argv[:4] == ["train", "--out", "/x", "--quiet"]
    assert "--n-step" in argv and "--seed" in argv and "--preset" in argv


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[grid]\nlr = 1e-4", "grid.lr must be a non-empty list"),
        ("[grid]\nlearning_rate = [1]", "not a setting of `atari-dqn train`"),
        ("[train]\nout = 'x'", "the sweep sets this itself"),
        ("[train]\nseed = 3", "use the top-level `seeds"),
        ("[random]\nlr = {normal = [0, 1]}", "unknown distribution 'normal'"),
        ("[random]\nlr = {uniform = [1, 0]}", "low < high"),
        ("[random]\nn_step = {uniform = [1, 3]}", "uniform draws floats"),
        ("[grid]\nlr = [-1.0]", "--lr must be a positive number"),
        ("[grid]\nbatch_size = ['32']", "batch_size must be int"),
        ("seeds = []", "seeds must be a list"),
        ("typo = 1", "unknown key 'typo'"),
        ("[resources]\ncpu = 0", "needs some cpu or gpu"),
        ("[train]\nenv_id = 'Nope-v9'", "trial 0"),
        ("x = [", "not valid TOML"),
    ],
)
def test_bad_sweep_specs_are_refused(text, message):
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace("[", r"\[")):
        parse_spec(text, Path("s.toml"))


def test_bad_spec_is_one_line_and_exit_2(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text("[grid]\nlr = [0.0]\n")
    assert main(["sweep", str(spec), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--lr must be a positive number" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--envs-per-actor", "2"], "--envs-per-actor needs --actors"),
        (["--actors", "0"], "--actors must be between 1"),
        (["--actors", "2", "--num-envs", "2"], "use --envs-per-actor"),
        (["--actors", "2", "--publish-every", "0"], "must be positive"),
        (["--actors", "64", "--buffer-size", "500"], "too small"),
    ],
)
def test_bad_actor_flags_exit_2(tmp_path, capsys, argv, message):
    assert main(["train", "--out", str(tmp_path / "r"), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------------- on Ray
TINY = [*tiny(**APEX_TINY), "--quiet"]


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def apex_run(ray_session, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("apex") / "run"
    argv = ["train", *TINY, "--actors", "2", "--actor-block", "20", "--publish-every", "5"]
    assert main([*argv, "--out", str(out)]) == 0
    return out


def _rewards(run: Path) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b, _ in (ln.split() for ln in open(run / "rewards.txt"))]


@pytest.mark.ray
def test_apex_run_writes_rewards_models_and_a_checkpoint(apex_run):
    from atari_dqn.checkpoint import read_checkpoint_state

    assert _rewards(apex_run) == [(1, 200), (2, 400)]
    assert (apex_run / "model_002.safetensors").is_file()
    state = read_checkpoint_state(apex_run / "checkpoint.safetensors")
    assert state["loop"]["step"] == 400 and state["loop"]["updates"] > 0
    assert state["loop"]["apex"]["actors"] == 2
    assert state["replay"]["storage"]["num_streams"] == 2
    # config.toml says how the run was spread, so plot never groups it with a one-process run
    config = tomllib.loads((apex_run / "config.toml").read_text())
    assert config["apex"] == {"actors": 2, "envs_per_actor": 1, "publish_every": 5, "block": 20}
    assert list(apex_run.glob("events.out.tfevents.*"))


@pytest.mark.ray
def test_apex_run_resumes(apex_run, capsys):
    from atari_dqn.checkpoint import read_checkpoint_state

    argv = ["train", "--resume", str(apex_run), "--total-steps", "600"]
    assert main([*argv, "--actors", "3"]) == 2
    assert "contradicts" in capsys.readouterr().err
    assert main(["train", "--resume", str(apex_run), "--total-steps", "600", "--quiet"]) == 0
    assert "resuming" in capsys.readouterr().out
    assert _rewards(apex_run) == [(1, 200), (2, 400), (3, 600)]
    state = read_checkpoint_state(apex_run / "checkpoint.safetensors")
    assert state["loop"]["step"] == 600 and state["loop"]["epoch"] == 1


@pytest.mark.ray
def test_apex_trains_a_rainbow_head_and_evaluate_rebuilds_it(ray_session, tmp_path, capsys):
    """All six Rainbow parts with Ape-X actors: the actors act with their noise, send C51
    priorities, the learner learns C51's way; the model file rebuilds the head with no flags."""
    from atari_dqn.artifacts import load_model
    from atari_dqn.checkpoint import read_checkpoint_state

    out = tmp_path / "run"
    head = ["--distributional", "--atoms", "11", "--noisy", "--dueling", "--double"]
    argv = ["train", *TINY, *head, "--actors", "2", "--actor-block", "20", "--publish-every", "5"]
    assert main([*argv, "--out", str(out)]) == 0
    assert _rewards(out) == [(1, 200), (2, 400)]
    state = read_checkpoint_state(out / "checkpoint.safetensors")
    assert state["loop"]["updates"] > 0
    network, _ = load_model(out / "model_latest.safetensors")
    assert network.distributional and network.atoms == 11 and network.noisy and network.dueling
    capsys.readouterr()
    assert main(["evaluate", str(out), "--episodes", "1", "--max-frames", "400", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["scores"]) == 1


@pytest.mark.ray
def test_a_killed_actor_is_restarted_and_the_run_goes_on(ray_session):
    """Killed with a collect in flight (the call fails) or between two blocks (no call fails,
    its next block starts new games), the pool counts the restart once, and the restarted
    actor delivers blocks again while the run goes on."""
    from atari_dqn.distributed.apex import start_apex

    # Long enough never to end here: the test stops once the new incarnation has delivered.
    config = TINY_CONFIG.replace(total_steps=1_000_000, eval_every=1_000_000)
    apex = ApexSettings(actors=2, block=10, publish_every=5)
    run = start_apex(build_learner(config), apex)
    try:
        slot = run.pool.slots[0]
        step_at_kill, seen_at, deadline = None, None, 0.0
        for progress in run.loop.run():
            if step_at_kill is None and progress.step >= 100:
                ray_session.kill(slot.handle, no_restart=False)  # lands a little later
                step_at_kill, deadline = progress.step, time.monotonic() + 300
            if seen_at is None and run.pool.restarts[0] > 0:
                seen_at = slot.delivered
            if seen_at is not None and slot.delivered > seen_at:  # the new one delivers
                break
            assert step_at_kill is None or time.monotonic() < deadline
        assert step_at_kill is not None
        assert run.pool.restarts == [1, 0]
        assert run.loop.step > step_at_kill and run.loop.updates > 0
    finally:
        run.close()
    assert ray_session.is_initialized()  # the module's Ray, not the run's to shut down


@pytest.mark.ray
def test_an_actor_restarted_between_two_blocks_is_counted_and_sent_the_weights_again(
    ray_session,
):
    """Killed while idle, no call of the pool's fails: its next block, played with initial
    weights and new games, shows the restart; the block after that gets the weights again."""
    from atari_dqn.distributed.apex import start_apex, weights_of

    learner = build_learner(TINY_CONFIG)
    run = start_apex(learner, ApexSettings(actors=1, block=10, publish_every=5))
    try:
        pool, slot = run.pool, run.pool.slots[0]
        pool.publish(weights_of(learner.agent.online))

        def one_block() -> None:
            assert pool.submit(10) == 10
            deadline = time.monotonic() + 120
            while slot.stats_ref is not None:
                assert time.monotonic() < deadline
                pool.poll(timeout=0.2)

        def pid() -> int:  # the actor's process
            return ray_session.get(slot.handle.__ray_call__.remote(lambda _: os.getpid()))

        one_block()
        assert (slot.delivered, slot.version, pool.restarts) == (1, 0, [0])
        old = pid()
        ray_session.kill(slot.handle, no_restart=False)
        deadline = time.monotonic() + 120
        while True:  # until a new process answers (the old one may, until the kill lands)
            with contextlib.suppress(ray_session.exceptions.RayActorError):
                if pid() != old:
                    break
            assert time.monotonic() < deadline
            time.sleep(0.5)
        one_block()
        assert (slot.delivered, slot.version, pool.restarts) == (2, -1, [1])
        one_block()
        assert (slot.delivered, slot.version, pool.restarts) == (3, 0, [1])
    finally:
        run.close()


@pytest.mark.ray
def test_a_dead_replay_server_is_refilled_and_the_run_goes_on(ray_session, caplog):
    """No checkpoint to restore from: a new, empty server; a new warm-up, then learning again."""
    from atari_dqn.distributed.apex import start_apex

    config = TINY_CONFIG.replace(total_steps=500, eval_every=1000)
    run = start_apex(build_learner(config), ApexSettings(actors=2, block=10, publish_every=5))
    try:
        first = run.replay.server
        killed_at = updates_at_kill = None
        for progress in run.loop.run():
            if killed_at is None and progress.step >= 150 and run.loop.updates > 0:
                ray_session.kill(first, no_restart=True)
                killed_at, updates_at_kill = progress.step, run.loop.updates
        assert killed_at is not None and run.loop.step == 500
        assert run.replay.replacements == 1 and run.replay.server is not first
        lines = [r.getMessage() for r in caplog.records if "replay server died" in r.getMessage()]
        assert len(lines) == 1 and "\n" not in lines[0], lines
        print(lines[0])
        assert "a new one is refilled: learning goes on after 100 steps of warm-up" in lines[0]
        died_at = int(lines[0].split("died at step ")[1].split(";")[0])
        assert killed_at <= died_at < 500
        assert run.loop.learn_from == died_at + 100  # a new warm-up ...
        assert run.loop.updates > updates_at_kill  # ... then learning again
        assert 0 < len(run.replay) <= 500 - died_at  # only what the new server was given
    finally:
        run.close()


class _KillServerAfterFirstCheckpoint:
    """A Loop that kills the Ape-X replay server once the driver has checkpointed the first
    evaluation (the driver handles a report before it asks for the next)."""

    def __init__(self, loop, replay, ray_session) -> None:
        self.loop, self.replay, self.ray = loop, replay, ray_session
        self.killed = False

    @property
    def step(self) -> int:
        return self.loop.step

    @property
    def updates(self) -> int:
        return self.loop.updates

    def state(self):
        return self.loop.state()

    def load_state(self, arrays, meta, *, replay_restored):
        self.loop.load_state(arrays, meta, replay_restored=replay_restored)

    def request_stop(self) -> None:
        self.loop.request_stop()

    def run(self):
        for progress in self.loop.run():
            yield progress
            if progress.evaluation is not None and not self.killed:
                self.ray.kill(self.replay.server, no_restart=True)
                self.killed = True


@pytest.mark.ray
def test_a_dead_replay_server_is_restored_from_the_checkpoint(ray_session, tmp_path, caplog):
    import contextlib
    import dataclasses

    from atari_dqn import driver
    from atari_dqn.checkpoint import read_checkpoint_state
    from atari_dqn.distributed.apex import apex_launch

    apex = ApexSettings(actors=2, block=20, publish_every=5)
    seen = []

    @contextlib.contextmanager
    def launch(config, restore):
        with apex_launch(apex)(config, restore) as parts:
            loop = _KillServerAfterFirstCheckpoint(parts.loop, parts.replay, ray_session)
            seen.append((loop, parts.replay))
            yield dataclasses.replace(parts, loop=loop)

    out = tmp_path / "run"
    assert driver.start_run(TINY_CONFIG, out, quiet=True, launch=launch).status == 0
    ((loop, replay),) = seen
    assert loop.killed and replay.replacements == 1
    lines = [r.getMessage() for r in caplog.records if "replay server died" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0], lines
    print(lines[0])
    assert "a new one holds the replay of the checkpoint at step 200 (" in lines[0], lines[0]
    restored = int(lines[0].split("step 200 (")[1].split(" transitions")[0])
    saved = read_checkpoint_state(out / "checkpoint.safetensors")
    assert _rewards(out) == [(1, 200), (2, 400)]
    assert saved["loop"]["step"] == 400 and saved["loop"]["updates"] > 0
    assert restored >= TINY_CONFIG.batch_size  # learning went on without a new warm-up
    assert loop.loop.learn_from == TINY_CONFIG.warmup_steps


@pytest.mark.ray
def test_two_trial_sweep_ranks_its_trials_and_resumes(ray_session, tmp_path, capsys):
    spec = tmp_path / "lr.toml"
    spec.write_text(
        "seeds = [1]\n[resources]\ncpu = 1\n"
        "[train]\ntotal_steps = 200\nwarmup_steps = 50\neval_every = 100\neval_games = 1\n"
        "eval_max_frames = 600\nbuffer_size = 500\nbatch_size = 8\ndevice = 'cpu'\n"
        "[grid]\nlr = [1e-4, 6.25e-5]\n"
    )
    out = tmp_path / "sweep"
    assert main(["sweep", str(spec), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "trials ranked by final evaluation" in text and "lr=6.25e-05" in text
    rows = (out / "trials.csv").read_text().splitlines()
    assert rows[0].startswith("rank,trial,lr,seed,final_step,final_score,best_score,status")
    assert sorted(r.split(",")[1] for r in rows[1:]) == ["trial_000", "trial_001"]
    assert all(r.split(",")[4] == "200" and r.endswith("complete") for r in rows[1:])
    assert (out / "curves.png").is_file() and (out / "curves.csv").is_file()
    # Run again: every trial is complete, nothing is trained.
    assert main(["sweep", str(spec), "--out", str(out)]) == 0
    assert "2 trials, 2 already complete" in capsys.readouterr().out
    spec.write_text(spec.read_text() + "# changed\n")
    assert main(["sweep", str(spec), "--out", str(out)]) == 2
    assert "holds a sweep of another spec" in capsys.readouterr().err


@pytest.mark.ray
def test_bench_actors_prints_steps_per_second(ray_session, capsys):
    assert main(["bench", "actors", "--max-actors", "2", "--steps", "100", "--block", "20",
                 "--buffer-size", "2000", "--json"]) == 0  # fmt: skip
    result = json.loads(capsys.readouterr().out)
    assert [r["actors"] for r in result["rows"]] == [1, 2]
    assert all(r["steps_per_s"] > 0 for r in result["rows"])
