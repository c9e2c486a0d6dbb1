"""PQN: Q(λ) returns worked by hand, the learner's epoch/minibatch schedule, exact state, and
the LayerNorm network."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from atari_dqn import losses
from atari_dqn.artifacts import ArtifactError, load_model, load_weights_into, save_model
from atari_dqn.checkpoint import load_checkpoint, save_checkpoint
from atari_dqn.envs import EnvSettings, resolve_actions
from atari_dqn.networks import ChannelLayerNorm, QNetwork
from atari_dqn.pqn import PQNLearner, PQNSettings, Rollout, make_optimizer
from atari_dqn.scoring import load_policy
from atari_dqn.vector import AtariVector, VecStep

F, T = False, True


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread: the shared 2-core test machine runs other work beside us."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def returns(rewards, terminated, truncated, next_max_q, *, gamma=0.5, lam=0.5) -> torch.Tensor:
    """q_lambda_returns on [T, N] lists (a list of numbers is one env)."""

    def col(x, dtype):
        t = torch.tensor(x, dtype=dtype)
        return t[:, None] if t.dim() == 1 else t

    return losses.q_lambda_returns(
        col(rewards, torch.float32),
        col(terminated, torch.bool),
        col(truncated, torch.bool),
        col(next_max_q, torch.float32),
        gamma=gamma,
        lam=lam,
    )


def close(actual: torch.Tensor, expected) -> None:
    expected = torch.tensor(expected, dtype=torch.float32)
    if expected.dim() == 1:
        expected = expected[:, None]
    torch.testing.assert_close(actual, expected)


# ---------------------------------------------------------------------- λ-returns by hand
# γ = 0.5, λ = 0.5 throughout unless said; Q' is next_max_q = max_a Q(s_{t+1}, a).
# G_t = r_t + γ(1 - term_t)[λ_t G_{t+1} + (1 - λ_t) Q'_t], λ_t = λ(1 - end_t), G_T = Q'_{T-1}.


def test_terminal_in_the_middle_by_hand() -> None:
    # r = 1 2 3 4, terminal after step 1, Q' = 10 20 30 40
    # t=3: 4 + .5·40                      = 24    (rollout end: bootstrap)
    # t=2: 3 + .5·(.5·24 + .5·30) = 3+13.5 = 16.5
    # t=1: terminal                       = 2     (no bootstrap, nothing of t=2 or later)
    # t=0: 1 + .5·(.5·2 + .5·10)  = 1+3    = 4
    g = returns([1, 2, 3, 4], [F, T, F, F], [F, F, F, F], [10, 20, 30, 40])
    close(g, [4.0, 2.0, 16.5, 24.0])


def test_truncation_bootstraps_from_the_state_it_was_cut_at_by_hand() -> None:
    # As above but the frame cap cuts the episode after step 1 (Q'_1 = 20: the true s_2):
    # t=1: 2 + .5·20                      = 12    (bootstrap, but no λ-term from t=2)
    # t=0: 1 + .5·(.5·12 + .5·10) = 1+5.5  = 6.5
    g = returns([1, 2, 3, 4], [F, F, F, F], [F, T, F, F], [10, 20, 30, 40])
    close(g, [6.5, 12.0, 16.5, 24.0])
    # Whatever follows the cut does not reach back across it.
    g2 = returns([1, 2, -7, 9], [F, F, F, F], [F, T, F, F], [10, 20, -3, 99])
    close(g2[:2], [6.5, 12.0])


def test_terminal_wins_over_truncation_on_the_same_step() -> None:
    # A life loss on the frame cap's step: terminal, no bootstrap (as the replay's flush).
    g = returns([1, 2], [F, T], [F, T], [10, 20])
    close(g, [1 + 0.5 * (0.5 * 2 + 0.5 * 10), 2.0])


def test_life_loss_and_truncation_in_two_envs_as_atari_vector_reports_them_by_hand() -> None:
    # AtariVector resets on the step after an episode's end: that row is no agent step
    # (valid False, trained on nothing) and its acting pass gives max_a Q of the true s_{t+1}.
    # env 0: a life loss after step 1 (terminated: training episodes end at a life loss);
    #        row 2 is the FIRE step (invalid), row 3 the new life's first step.
    #   r = 1 1 0 2, Q' = 4 8 6 2
    #   t=3: 2 + .5·2                    = 3
    #   t=2: (invalid) .5·(.5·3 + .5·6)  = 2.25  (computed, never trained on)
    #   t=1: terminal                    = 1
    #   t=0: 1 + .5·(.5·1 + .5·4)        = 2.25
    # env 1: the frame cap after step 2 (Q'_2 = 6 from row 3's pass on the true s_3);
    #        row 3 is the reset step (invalid).
    #   r = 0 1 1 0, Q' = 2 4 6 10
    #   t=3: (invalid) 0 + .5·10         = 5
    #   t=2: 1 + .5·6                    = 4
    #   t=1: 1 + .5·(.5·4 + .5·4)        = 3
    #   t=0: 0 + .5·(.5·3 + .5·2)        = 1.25
    g = returns(
        [[1, 0], [1, 1], [0, 1], [2, 0]],
        [[F, F], [T, F], [F, F], [F, F]],
        [[F, F], [F, F], [F, T], [F, F]],
        [[4, 2], [8, 4], [6, 6], [2, 10]],
    )
    close(g, [[2.25, 1.25], [1.0, 3.0], [2.25, 4.0], [3.0, 5.0]])


def test_lambda_zero_gives_one_step_q_learning_targets() -> None:
    rng = np.random.default_rng(0)
    r = torch.tensor(rng.normal(size=(6, 3)), dtype=torch.float32)
    q = torch.tensor(rng.normal(size=(6, 3)), dtype=torch.float32)
    term = torch.tensor(rng.random((6, 3)) < 0.3)
    trunc = torch.tensor(rng.random((6, 3)) < 0.3)
    g = losses.q_lambda_returns(r, term, trunc, q, gamma=0.99, lam=0.0)
    # y = r + γ (1 - term) max_a Q(s', a), the DQN target (losses.q_learning_target) row by row
    expected = torch.stack(
        [
            losses.q_learning_target(r[t], 0.99 * (~term[t]).float(), q[t].unsqueeze(1))
            for t in range(6)
        ]
    )
    torch.testing.assert_close(g, expected)


def test_lambda_one_gives_the_monte_carlo_return_bootstrapped_at_the_rollout_end() -> None:
    # No end: r = 1 2 3 4, Q'_3 = 40 (other Q' unused at λ = 1)
    # G_3 = 4 + .5·40 = 24, G_2 = 3 + .5·24 = 15, G_1 = 2 + .5·15 = 9.5, G_0 = 1 + .5·9.5 = 5.75
    g = returns([1, 2, 3, 4], [F] * 4, [F] * 4, [-5, -5, -5, 40], lam=1.0)
    close(g, [5.75, 9.5, 15.0, 24.0])
    # = Σ_k γ^k r_k + γ^4 Q'_3
    assert g[0, 0].item() == pytest.approx(1 + 0.5 * 2 + 0.25 * 3 + 0.125 * 4 + 0.0625 * 40)
    # A terminal after step 1: the plain discounted sum of the episode's rewards.
    g = returns([1, 2, 3, 4], [F, T, F, F], [F] * 4, [-5, -5, -5, 40], lam=1.0)
    close(g, [2.0, 2.0, 15.0, 24.0])
    # A truncation after step 1: bootstrapped there, G_1 = 2 + .5·20, G_0 = 1 + .5·12.
    g = returns([1, 2, 3, 4], [F] * 4, [F, T, F, F], [-5, 20, -5, 40], lam=1.0)
    close(g, [7.0, 12.0, 15.0, 24.0])


def reference_q_lambda(
    rewards: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    next_max_q: np.ndarray,
    gamma: float,
    lam: float,
) -> np.ndarray:
    """The forward view, in float64: G^λ_t = (1-λ) Σ_{n<h} λ^{n-1} G^(n)_t + λ^{h-1} G^(h)_t,
    with h the steps from t to the end of its episode or of the rollout, and the n-step
    return G^(n)_t = Σ_{k<n} γ^k r_{t+k} + γ^n max_a Q(s_{t+n}) (no bootstrap at a terminal)."""
    steps, envs = rewards.shape
    out = np.zeros((steps, envs))
    for i in range(envs):
        for t in range(steps):
            end = t
            while end < steps - 1 and not (terminated[end, i] or truncated[end, i]):
                end += 1
            h = end - t + 1

            def n_step(n: int, t: int = t, i: int = i) -> float:
                g = sum(gamma**k * float(rewards[t + k, i]) for k in range(n))
                last = t + n - 1
                if not terminated[last, i]:
                    g += gamma**n * float(next_max_q[last, i])
                return g

            mixture = sum((1 - lam) * lam ** (n - 1) * n_step(n) for n in range(1, h))
            out[t, i] = mixture + lam ** (h - 1) * n_step(h)
    return out


@pytest.mark.parametrize(("gamma", "lam"), [(0.99, 0.65), (0.9, 0.0), (0.5, 1.0), (1.0, 0.3)])
def test_q_lambda_matches_the_forward_view_on_random_rollouts(gamma: float, lam: float) -> None:
    rng = np.random.default_rng(int(gamma * 100 + lam * 10))
    for _ in range(5):
        r = rng.normal(size=(9, 6)).astype(np.float32)
        q = rng.normal(size=(9, 6)).astype(np.float32)
        term = rng.random((9, 6)) < 0.15
        trunc = rng.random((9, 6)) < 0.1
        g = losses.q_lambda_returns(
            torch.from_numpy(r),
            torch.from_numpy(term),
            torch.from_numpy(trunc),
            torch.from_numpy(q),
            gamma=gamma,
            lam=lam,
        )
        expected = reference_q_lambda(r, term, trunc, q, gamma, lam)
        np.testing.assert_allclose(g.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_q_lambda_refuses_mismatched_shapes() -> None:
    z = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="one shape"):
        losses.q_lambda_returns(z, z.bool(), z.bool(), torch.zeros(3, 1), gamma=0.9, lam=0.5)


def test_atari_vector_keeps_the_true_successor_after_an_episode_end() -> None:
    # What Rollout relies on (next-step auto-reset): after a step that ends a training
    # episode (a life loss or the frame cap, here 400 frames = 100 agent steps), the stack the
    # env acts from next is that episode's true s_{t+1}, and that next step is no agent step
    # (FIRE or the reset), so row t+1's acting pass gives the bootstrap max_a Q(s_{t+1}).
    game = "BreakoutNoFrameskip-v4"
    settings = EnvSettings(game, resolve_actions(game, "course"), noop_max=0, max_frames=400)
    env = AtariVector(settings, 2)
    obs = env.reset(seed=1).obs
    rng = np.random.default_rng(0)
    ended = {"terminated": 0, "truncated": 0}
    pending: set[int] = set()
    for _ in range(260):
        env.send(rng.integers(0, 3, size=2))
        vs = env.recv()
        for i in range(2):
            if i in pending:  # the step after an episode's end: FIRE or the reset (a frame
                assert not vs.transition[i]  # cap hit during FIRE makes it FIRE, then reset)
                pending.discard(i)
            if vs.transition[i] and not vs.begin[i]:  # s_{t+1} = s_t shifted + the new frame
                np.testing.assert_array_equal(vs.obs[i, :-1], obs[i, 1:])
                np.testing.assert_array_equal(vs.obs[i, -1], vs.next_frames[i])
            if vs.transition[i] and (vs.terminated[i] or vs.truncated[i]):
                assert not vs.begin[i]
                ended["terminated" if vs.terminated[i] else "truncated"] += 1
                pending.add(i)
        obs = vs.obs
    env.close()
    assert ended["terminated"] > 0 and ended["truncated"] > 0


def step(
    obs: np.ndarray,
    frames: list[int],
    rewards: list[float],
    terminated: list[bool],
    truncated: list[bool],
    transition: list[bool],
    begin: list[bool],
) -> VecStep:
    return VecStep(
        obs=obs,
        next_frames=np.stack([np.full((84, 84), f, dtype=np.uint8) for f in frames]),
        rewards=np.array(rewards, dtype=np.float32),
        terminated=np.array(terminated),
        truncated=np.array(truncated),
        transition=np.array(transition),
        begin=np.array(begin),
    )


def stacks(*values: list[int]) -> np.ndarray:
    """(N, 4, 84, 84) stacks whose frames are constant images of the given values."""
    return np.array([[np.full((84, 84), v, dtype=np.uint8) for v in env] for env in values])


def test_rollout_records_steps_and_puts_each_max_q_where_it_bootstraps() -> None:
    # Two envs, three rows. env 0 as AtariVector: truncated after row 1, row 2 is its reset
    # step (no agent step). env 1 as SingleEnv: truncated after row 0 and reset in the same
    # recv, so row 1's stack is the next episode's; its true s_1 = row 0's frames 1..3 + the
    # newest frame (77), rebuilt by record; then a life loss (terminal) after row 2.
    rollout = Rollout.empty(3, 2, torch.device("cpu"))
    o0 = stacks([1, 2, 3, 4], [11, 12, 13, 14])
    o1 = stacks([2, 3, 4, 5], [5, 5, 5, 5])  # env 1: the new episode's first stack
    o2 = stacks([3, 4, 5, 6], [5, 5, 5, 6])
    o3 = stacks([3, 4, 5, 6], [5, 5, 6, 7])  # env 0 still at its true s_2 (acted: ignored)
    vs0 = step(o1, [5, 77], [1, 0], [F, F], [F, T], [T, T], [F, T])
    vs1 = step(o2, [6, 6], [0, 1], [F, F], [T, F], [T, T], [F, F])
    vs2 = step(o3, [6, 7], [0, 1], [F, T], [F, F], [F, T], [T, F])
    envs, rebuilt = rollout.record(0, o0, np.array([1, 2]), vs0)
    assert envs.tolist() == [1]
    np.testing.assert_array_equal(rebuilt, stacks([12, 13, 14, 77]))
    rollout.set_next_max_q(0, torch.tensor([9.0]), envs)
    rollout.record_acting_max_q(1, torch.tensor([1.5, 2.5]))  # 2.5: Q of the reset state
    assert rollout.record(1, o1, np.array([0, 0]), vs1)[0].size == 0  # AtariVector: nothing
    rollout.record_acting_max_q(2, torch.tensor([3.5, 4.5]))
    assert rollout.record(2, o2, np.array([2, 1]), vs2)[0].size == 0
    rollout.record_acting_max_q(3, torch.tensor([6.5, 7.5]))  # the states after the rollout
    torch.testing.assert_close(
        rollout.next_max_q, torch.tensor([[1.5, 9.0], [3.5, 4.5], [6.5, 7.5]])
    )
    np.testing.assert_array_equal(rollout.valid, [[T, T], [T, T], [F, T]])
    np.testing.assert_array_equal(rollout.truncated, [[F, T], [T, F], [F, F]])
    np.testing.assert_array_equal(rollout.terminated, [[F, F], [F, F], [F, T]])
    np.testing.assert_array_equal(rollout.obs[1], o1)
    np.testing.assert_array_equal(rollout.actions, [[1, 2], [0, 0], [2, 1]])
    # The targets, γ = λ = 0.5:
    # env 0: G_2 = 0 + .5·6.5 = 3.25 (invalid row: never trained on); G_1 = 0 + .5·3.5 = 1.75
    #        (truncated); G_0 = 1 + .5·(.5·1.75 + .5·1.5) = 1.8125
    # env 1: G_2 = 1 (terminal); G_1 = 1 + .5·(.5·1 + .5·4.5) = 2.375; G_0 = 0 + .5·9 = 4.5
    #        (bootstrapped from the rebuilt true s_1, not the reset state's 2.5)
    learner = make_learner(
        PQNSettings(num_envs=2, rollout_steps=3, minibatches=2, gamma=0.5, lam=0.5)
    )
    close(learner.targets(rollout), [[1.8125, 4.5], [1.75, 2.375], [3.25, 1.0]])


# ---------------------------------------------------------------------- the learner
def tagged_rollout(steps: int, envs: int, seed: int = 0, num_actions: int = 3) -> Rollout:
    """A rollout whose sample (t, i) has every pixel equal to its index t·N + i."""
    rng = np.random.default_rng(seed)
    rollout = Rollout.empty(steps, envs, torch.device("cpu"))
    ids = np.arange(steps * envs, dtype=np.uint8).reshape(steps, envs)
    rollout.obs[:] = ids[:, :, None, None, None]
    rollout.actions[:] = rng.integers(0, num_actions, size=(steps, envs))
    rollout.rewards[:] = rng.choice([-1.0, 0.0, 1.0], size=(steps, envs))
    rollout.terminated[:] = rng.random((steps, envs)) < 0.2
    rollout.valid[:] = True
    rollout.next_max_q[:] = torch.from_numpy(rng.normal(size=(steps, envs)).astype(np.float32))
    return rollout


def make_learner(
    settings: PQNSettings, seed: int = 0, *, init_seed: int | None = None
) -> PQNLearner:
    g = torch.Generator().manual_seed(seed if init_seed is None else init_seed)
    net = QNetwork(3, layer_norm=settings.layer_norm, generator=g)
    return PQNLearner(
        net,
        make_optimizer(net, settings.lr),
        num_actions=3,
        device=torch.device("cpu"),
        settings=settings,
        generator=torch.Generator().manual_seed(seed + 1),
    )


def test_update_makes_epochs_times_minibatches_steps_using_each_sample_once_per_epoch() -> None:
    s = PQNSettings(num_envs=2, rollout_steps=6, epochs=3, minibatches=4)
    learner = make_learner(s)
    seen: list[list[int]] = []

    def record(module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        if torch.is_grad_enabled():  # the update's passes (acting runs without gradients)
            seen.append(args[0][:, 0, 0, 0].tolist())

    learner.online.register_forward_pre_hook(record)
    steps = []
    learner.optimizer.register_step_post_hook(lambda *_: steps.append(1))
    result = learner.update(tagged_rollout(6, 2))
    assert result.grad_steps == 3 * 4 == len(steps) == learner.grad_steps
    assert len(seen) == 12 and all(len(mb) == 12 // 4 for mb in seen)
    for epoch in range(3):  # every sample exactly once per epoch
        assert sorted(sum(seen[epoch * 4 : (epoch + 1) * 4], [])) == list(range(12))
    assert seen[:4] != seen[4:8]  # a fresh permutation per epoch
    assert learner.updates == 1


def test_minibatches_must_divide_the_rollout() -> None:
    with pytest.raises(ValueError, match="must divide"):
        PQNSettings(num_envs=3, rollout_steps=5, minibatches=4).check()


def test_invalid_rows_add_nothing_to_the_loss() -> None:
    td = torch.tensor([1.0, 2.0, 100.0])
    # ½(1 + 4) / 2 valid samples
    assert losses.masked_half_squared(td, torch.tensor([1.0, 1.0, 0.0])).item() == 1.25


def test_update_decreases_the_loss_on_a_fixed_rollout() -> None:
    s = PQNSettings(num_envs=2, rollout_steps=4, epochs=2, minibatches=2, lr=1e-3)
    learner = make_learner(s)
    rollout = tagged_rollout(4, 2, seed=3)
    targets = learner.targets(rollout).reshape(-1)
    obs = torch.from_numpy(rollout.obs).reshape(8, 4, 84, 84)
    actions = torch.from_numpy(rollout.actions).reshape(8)

    def loss() -> float:
        with torch.no_grad():
            q = learner.online(obs).gather(1, actions[:, None]).squeeze(1)
        return float(losses.masked_half_squared(q - targets, torch.ones(8)))

    before = loss()
    for _ in range(10):
        learner.update(rollout)
    assert loss() < 0.5 * before


def test_targets_come_from_the_values_recorded_while_acting() -> None:
    s = PQNSettings(num_envs=2, rollout_steps=3, minibatches=1, gamma=0.5, lam=0.5)
    learner = make_learner(s)
    rollout = tagged_rollout(3, 2)
    expected = losses.q_lambda_returns(
        torch.from_numpy(rollout.rewards),
        torch.from_numpy(rollout.terminated),
        torch.from_numpy(rollout.truncated),
        rollout.next_max_q,
        gamma=0.5,
        lam=0.5,
    )
    torch.testing.assert_close(learner.targets(rollout), expected)


class NoLoop:
    """The loop's part of a checkpoint, empty (the learner's part is under test)."""

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return {}, {}

    def load_state(self, arrays: dict, meta: dict, *, replay_restored: bool) -> None:
        assert not replay_restored


def test_state_round_trip_through_a_checkpoint_file_is_exact(tmp_path: Path) -> None:
    s = PQNSettings(num_envs=2, rollout_steps=4, epochs=2, minibatches=4, lr_linear_decay=True)
    rollouts = [tagged_rollout(4, 2, seed=k) for k in range(3)]
    lrs = [s.lr_at(8 * k, 24) for k in range(3)]  # the loop's step at each update, of 24
    straight = make_learner(s)
    for r, lr in zip(rollouts, lrs, strict=True):
        straight.update(r, lr)
    first = make_learner(s)
    first.update(rollouts[0], lrs[0])
    path = tmp_path / "checkpoint.safetensors"
    save_checkpoint(path, config={}, agent=first, replay=None, loop=NoLoop(), include_replay=False)
    resumed = make_learner(s, init_seed=99)  # other weights and generator
    resumed.generator.manual_seed(12345)
    load_checkpoint(path, agent=resumed, replay=None, loop=NoLoop())
    for r, lr in zip(rollouts[1:], lrs[1:], strict=True):
        resumed.update(r, lr)
    for (name, a), b in zip(
        straight.online.state_dict().items(), resumed.online.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    assert torch.equal(straight.generator.get_state(), resumed.generator.get_state())
    assert (straight.grad_steps, straight.updates) == (24, 3)
    assert (resumed.grad_steps, resumed.updates) == (24, 3)
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(2.5e-4 * (1 - 16 / 24))


def test_settings_schedules() -> None:
    s = PQNSettings()
    assert s.lr_at(500, 1000) == 2.5e-4  # no decay in purejaxql's Atari config
    decaying = PQNSettings(lr_linear_decay=True)
    assert decaying.lr_at(0, 1000) == 2.5e-4
    assert decaying.lr_at(250, 1000) == pytest.approx(2.5e-4 * 0.75)
    assert decaying.lr_at(1000, 1000) == 0.0
    eps = s.epsilon_schedule(10_000_000)  # 1 -> 0.001 over the first 10% of the run
    assert eps(0) == 1.0
    assert eps(500_000) == pytest.approx(1.0 - 0.5 * 0.999)
    assert eps(1_000_000) == eps(9_000_000) == pytest.approx(0.001)
    assert (s.batch, s.minibatch_size) == (4096, 128)


def test_act_with_max_q_acts_as_act_and_returns_max_q() -> None:
    learner = make_learner(PQNSettings(num_envs=2, rollout_steps=4, minibatches=2))
    obs = np.random.default_rng(1).integers(0, 255, size=(5, 4, 84, 84), dtype=np.uint8)
    for eps in (0.0, 0.5, 1.0):
        actions = learner.act(obs, eps, np.random.default_rng(7))
        actions2, max_q = learner.act_with_max_q(obs, eps, np.random.default_rng(7))
        np.testing.assert_array_equal(actions, actions2)
        with torch.no_grad():
            q = learner.online(torch.from_numpy(obs))
        torch.testing.assert_close(max_q, q.max(dim=1).values)
        if eps == 0.0:
            np.testing.assert_array_equal(actions, q.argmax(dim=1).numpy())


# ---------------------------------------------------------------------- the LayerNorm network
def test_layer_norm_network_shapes_and_normalisation() -> None:
    obs = torch.randint(0, 255, (2, 4, 84, 84), dtype=torch.uint8)
    for dueling in (False, True):
        net = QNetwork(6, dueling=dueling, layer_norm=True, generator=torch.Generator())
        assert net(obs).shape == (2, 6)
        assert net.architecture()["layer_norm"] == "true"
    net = QNetwork(6, layer_norm=True)
    kinds = [type(m).__name__ for m in net.torso]
    assert kinds == ["Conv2d", "ChannelLayerNorm", "ReLU"] * 3 + ["Flatten"]
    assert [type(m).__name__ for m in net.head] == ["Linear", "LayerNorm", "ReLU", "Linear"]
    # After conv 1: per position, the 32 channels have mean 0 and variance 1 (scale 1, bias 0).
    x = net.torso[1](net.torso[0](obs / 255.0))
    assert x.shape == (2, 32, 20, 20)
    torch.testing.assert_close(x.mean(dim=1), torch.zeros(2, 20, 20), atol=1e-5, rtol=0)
    var = x.var(dim=1, unbiased=False)
    torch.testing.assert_close(var, torch.ones(2, 20, 20), atol=1e-3, rtol=0)
    assert isinstance(net.torso[1], ChannelLayerNorm) and net.torso[1].weight.shape == (32,)
    # The same conv and linear weights from the same generator as the plain network.
    plain = QNetwork(6, generator=torch.Generator().manual_seed(3))
    normed = QNetwork(6, layer_norm=True, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(plain.torso[0].weight, normed.torso[0].weight)
    torch.testing.assert_close(plain.head[2].weight, normed.head[3].weight)


def test_plain_network_keeps_its_state_dict_keys() -> None:
    # Model files and checkpoints written before the option still load.
    keys = list(QNetwork(4).state_dict())
    assert keys == [
        "torso.0.weight",
        "torso.2.weight",
        "torso.4.weight",
        "head.0.weight",
        "head.0.bias",
        "head.2.weight",
        "head.2.bias",
    ]
    assert QNetwork(4).architecture()["layer_norm"] == "false"


def test_layer_norm_model_file_round_trip(tmp_path: Path) -> None:
    net = QNetwork(4, layer_norm=True, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        net.torso[1].weight.uniform_(0.5, 1.5)  # LayerNorm parameters travel too
    path = tmp_path / "model.safetensors"
    save_model(path, net, {"step": "1", "actions": "NOOP,FIRE,RIGHT,LEFT"})
    loaded, meta = load_model(path)
    assert meta["layer_norm"] == "true" and loaded.layer_norm
    for (k, a), b in zip(net.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    obs = torch.randint(0, 255, (3, 4, 84, 84), dtype=torch.uint8)
    torch.testing.assert_close(loaded(obs), net(obs))
    # evaluate / load_policy rebuild it with no flag: the file says layer_norm.
    policy = load_policy(path, device="cpu")
    np.testing.assert_array_equal(policy.act(obs.numpy()), net(obs).argmax(dim=1).numpy())
    load_weights_into(QNetwork(4, layer_norm=True), path)
    with pytest.raises(ArtifactError, match="layer_norm=true"):
        load_weights_into(QNetwork(4), path)
