"""The distributional (C51) maths by hand: the projection, the cross-entropy and its gradient,
and the agent's categorical update (its priorities are the per-sample loss)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from atari_dqn import losses
from atari_dqn.agent import DQNAgent
from atari_dqn.networks import QNetwork
from atari_dqn.replay.nstep import NStepAccumulator
from atari_dqn.replay.storage import Batch

Z = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0])  # 5 atoms on [-2, 2], Δz = 1
P = torch.tensor([0.1, 0.2, 0.3, 0.25, 0.15])


def brute_force(returns: list[float], discounts: list[float], probs, support) -> np.ndarray:
    """Bellemare et al. 2017 eq. 7, written as the paper does and not as the code:
    ``(Φ T z)_i = Σ_j [1 - |clip(R + d z_j) - z_i| / Δz]_0^1 p_j``, in float64 loops."""
    z = [float(v) for v in support]
    dz = (z[-1] - z[0]) / (len(z) - 1)
    out = np.zeros((len(returns), len(z)))
    for b, (r, d) in enumerate(zip(returns, discounts, strict=True)):
        for j, zj in enumerate(z):
            tz = min(max(r + d * zj, z[0]), z[-1])
            for i, zi in enumerate(z):
                out[b, i] += max(0.0, 1.0 - abs(tz - zi) / dz) * float(probs[b][j])
    return out


def project(returns: list[float], discounts: list[float], probs: torch.Tensor) -> torch.Tensor:
    b = len(returns)
    return losses.categorical_projection(
        torch.tensor(returns), torch.tensor(discounts), probs.expand(b, -1), Z
    )


def test_target_exactly_on_the_atoms_keeps_the_distribution() -> None:
    # R = 0, d = 1: T z_j = z_j, every target on its own atom (l = u), nothing moves.
    m = project([0.0], [1.0], P)
    torch.testing.assert_close(m[0], P, rtol=0, atol=0)
    # R = 1, d = 0.5: T z = [0, 0.5, 1, 1.5, 2]; the odd ones split half and half.
    m = project([1.0], [0.5], P)
    expected = [0.0, 0.0, 0.1 + 0.1, 0.1 + 0.3 + 0.125, 0.125 + 0.15]
    torch.testing.assert_close(m[0], torch.tensor(expected), rtol=0, atol=1e-7)


def test_target_between_two_atoms_splits_by_distance() -> None:
    # R = 0.5, d = 1: T z = [-1.5, -0.5, 0.5, 1.5, 2.5 -> 2 (clipped)].
    # -1.5 -> 0.05 at -2 and 0.05 at -1; -0.5 -> 0.1, 0.1; 0.5 -> 0.15, 0.15; 1.5 -> 0.125,
    # 0.125; 2 -> 0.15 at 2.
    m = project([0.5], [1.0], P)
    torch.testing.assert_close(m[0], torch.tensor([0.05, 0.15, 0.25, 0.275, 0.275]))
    # All the mass at z = 2 moved to 0.3 + 0.5 · 2 = 1.3: 0.7 on atom 1, 0.3 on atom 2.
    one_hot = torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0])
    m = project([0.3], [0.5], one_hot)
    torch.testing.assert_close(m[0], torch.tensor([0.0, 0.0, 0.0, 0.7, 0.3]))


def test_targets_beyond_v_max_and_below_v_min_land_on_the_ends() -> None:
    m = project([5.0, -3.0], [0.9, 0.5], P)  # T z in [3.2, 6.8] and in [-4, -2]
    torch.testing.assert_close(m, torch.tensor([[0.0, 0, 0, 0, 1], [1.0, 0, 0, 0, 0]]))


def test_terminal_transition_puts_all_mass_on_the_clipped_reward() -> None:
    # d = 0 (terminal): T z_j = R for every j, whatever p is.
    m = project([1.0, 0.25, -7.0], [0.0, 0.0, 0.0], P)
    expected = [[0.0, 0, 0, 1, 0], [0.0, 0, 0.75, 0.25, 0], [1.0, 0, 0, 0, 0]]
    torch.testing.assert_close(m, torch.tensor(expected))


def test_a_return_cut_short_at_an_episode_end_bootstraps_with_gamma_to_the_k() -> None:
    # n = 3, γ = 0.5; a time limit after two rewards of 1: the first transition has k = 2
    # (R = 1 + 0.5 = 1.5, d = γ² = 0.25), the second k = 1 (R = 1, d = 0.5), as the replay
    # stores them (storage.gather: d = γ^k, 0 if terminal).
    acc = NStepAccumulator(3, 0.5)
    acc.push(0, 1.0)
    acc.push(1, 1.0)
    done = acc.flush(terminated=False)
    assert [(slot, ret, k) for slot, ret, k, _ in done] == [(0, 1.5, 2), (1, 1.0, 1)]
    returns = [ret for _, ret, _, _ in done]
    discounts = [0.5**k for _, _, k, _ in done]
    m = project(returns, discounts, P)
    # First: T z = 1.5 + 0.25 z = [1, 1.25, 1.5, 1.75, 2]; atom 1 gets
    # 0.1 + 0.75·0.2 + 0.5·0.3 + 0.25·0.25 = 0.4625, atom 2 the rest, 0.5375.
    torch.testing.assert_close(m[0], torch.tensor([0.0, 0, 0, 0.4625, 0.5375]))
    # Second: T z = 1 + 0.5 z = [0, 0.5, 1, 1.5, 2]: atom 0 gets 0.1 + 0.1, atom 1 gets
    # 0.1 + 0.3 + 0.125, atom 2 gets 0.125 + 0.15.
    torch.testing.assert_close(m[1], torch.tensor([0.0, 0, 0.2, 0.525, 0.275]))
    np.testing.assert_allclose(m.numpy(), brute_force(returns, discounts, [P, P], Z), atol=1e-6)
    # With γ^n (n = 3) instead of γ^k the first target would differ.
    wrong = project([1.5], [0.5**3], P)
    assert not torch.allclose(wrong[0], m[0])


def test_projection_matches_brute_force_and_keeps_mass_one() -> None:
    g = torch.Generator().manual_seed(0)
    for support in (Z, torch.linspace(-10.0, 10.0, 51), torch.linspace(-1.0, 3.0, 7)):
        k = support.shape[0]
        returns = (torch.rand(64, generator=g) * 30 - 15).tolist()
        discounts = [0.0] * 8 + (torch.rand(56, generator=g) ** 0.5).tolist()
        probs = torch.rand(64, k, generator=g).softmax(dim=1)
        m = losses.categorical_projection(torch.tensor(returns), torch.tensor(discounts),
                                          probs, support)  # fmt: skip
        assert torch.all(m >= 0)
        torch.testing.assert_close(m.sum(dim=1), torch.ones(64))
        np.testing.assert_allclose(m.numpy(), brute_force(returns, discounts, probs, support),
                                   atol=1e-5)  # fmt: skip


def test_cross_entropy_and_its_gradient_by_hand() -> None:
    # B = 2, A = 2, K = 3. Sample 0 took action 1 with logits 0 (p uniform) and target
    # [1, 0, 0]: CE = ln 3. Sample 1 took action 0 with logits [0, ln 2, 0] (p = [1/4, 1/2,
    # 1/4]) and target [0, 1, 0]: CE = ln 2. IS weights [1, 0.5]: loss = (ln 3 + ln 2 / 2) / 2.
    logits = torch.zeros(2, 2, 3)
    logits[1, 0] = torch.tensor([0.0, math.log(2.0), 0.0])
    logits[0, 0] = torch.tensor([5.0, -1.0, 2.0])  # not taken: no loss, no gradient
    logits[1, 1] = torch.tensor([1.0, 1.0, 3.0])
    logits.requires_grad_(True)
    actions = torch.tensor([1, 0])
    target = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    weights = torch.tensor([1.0, 0.5])
    per_sample = losses.categorical_cross_entropy(logits, actions, target)
    torch.testing.assert_close(per_sample, torch.tensor([math.log(3.0), math.log(2.0)]))
    loss = losses.weighted_mean(per_sample, weights)
    torch.testing.assert_close(loss, torch.tensor((math.log(3.0) + 0.5 * math.log(2.0)) / 2))
    loss.backward()
    # d loss / d logits(s, a) = w / B · (p - m) for the action taken, 0 elsewhere.
    grad = torch.zeros(2, 2, 3)
    grad[0, 1] = 0.5 * torch.tensor([1 / 3 - 1, 1 / 3, 1 / 3])
    grad[1, 0] = 0.25 * torch.tensor([0.25, 0.5 - 1, 0.25])
    assert logits.grad is not None
    torch.testing.assert_close(logits.grad, grad)


def _batch(rng: np.random.Generator, b: int, num_actions: int) -> Batch:
    return Batch(
        obs=rng.integers(0, 255, (b, 4, 84, 84), dtype=np.uint8),
        actions=rng.integers(0, num_actions, b),
        returns=np.array([1.0, -0.5, 0.0, 3.0], np.float32),
        discounts=np.array([0.99, 0.0, 0.9801, 0.5], np.float32),
        next_obs=rng.integers(0, 255, (b, 4, 84, 84), dtype=np.uint8),
        indices=np.arange(b),
        weights=np.array([1.0, 0.5, 0.25, 1.0], np.float32),
    )


@pytest.mark.parametrize("double", [False, True])
def test_agent_categorical_update_loss_and_priorities_are_the_per_sample_cross_entropy(
    double: bool,
) -> None:
    torch.manual_seed(0)
    num_actions = 3

    def net() -> QNetwork:
        return QNetwork(num_actions, dueling=True, distributional=True, atoms=5,
                        v_min=-2.0, v_max=2.0)  # fmt: skip

    online, target = net(), net()
    optimizer = torch.optim.Adam(online.parameters(), lr=1e-3)
    agent = DQNAgent(online, target, optimizer, num_actions=num_actions,
                     device=torch.device("cpu"), double=double)  # fmt: skip
    with torch.no_grad():  # the target net differs from the online one after a sync
        for p in target.parameters():
            p.add_(0.01 * torch.randn_like(p))
    batch = _batch(np.random.default_rng(0), 4, num_actions)
    with torch.no_grad():  # independently: a* from Σ z p, then brute-force projection
        obs, next_obs = torch.from_numpy(batch.obs), torch.from_numpy(batch.next_obs)
        probs_next = target.logits(next_obs).softmax(-1)
        chooser = (online if double else target).logits(next_obs).softmax(-1)
        best = (chooser * Z).sum(-1).argmax(1)
        next_p = probs_next[torch.arange(4), best]
        m = brute_force(batch.returns.tolist(), batch.discounts.tolist(), next_p, Z)
        log_p = online.logits(obs).log_softmax(-1)[torch.arange(4), batch.actions]
        ce = -(torch.from_numpy(m).float() * log_p).sum(-1)
    result = agent.update(batch)
    torch.testing.assert_close(result.priority, ce, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(result.loss, (ce * torch.from_numpy(batch.weights)).mean(),
                               rtol=1e-5, atol=1e-5)  # fmt: skip
    q = (log_p.exp() * Z).sum(-1)
    torch.testing.assert_close(result.q_mean, q.mean(), rtol=1e-5, atol=1e-5)


def test_distributional_q_is_the_mean_of_the_distribution() -> None:
    torch.manual_seed(0)
    network = QNetwork(2, distributional=True, atoms=5, v_min=-2.0, v_max=2.0)
    obs = torch.randint(0, 255, (3, 4, 84, 84), dtype=torch.uint8)
    logits = network.logits(obs)
    assert logits.shape == (3, 2, 5)
    torch.testing.assert_close(network(obs), (logits.softmax(-1) * Z).sum(-1))
    meta = network.architecture()
    assert (meta["distributional"], meta["atoms"], meta["v_min"], meta["v_max"]) == (
        "true", "5", "-2.0", "2.0")  # fmt: skip


def test_the_loop_gives_prioritized_replay_the_per_sample_cross_entropy() -> None:
    from atari_dqn.build import build_training
    from atari_dqn.config import preset_config

    config = preset_config("rainbow").replace(
        total_steps=80, warmup_steps=40, buffer_size=500, batch_size=8, eval_every=1000,
        target_update=50,
    )  # fmt: skip
    training = build_training(config)
    agent, replay = training.learner.agent, training.replay
    assert replay.uses_priorities
    results, given = [], []
    update, update_priorities = agent.update, replay.update_priorities

    def recording_update(batch: Batch):
        result = update(batch)
        results.append(result.priority.clone())  # the per-sample CE (test above)
        return result

    def recording_priorities(indices: np.ndarray, td_errors: np.ndarray) -> None:
        given.append(np.array(td_errors))
        update_priorities(indices, td_errors)

    agent.update = recording_update  # type: ignore[method-assign]
    replay.update_priorities = recording_priorities  # type: ignore[method-assign]
    for _ in training.loop.run():
        pass
    assert len(results) == len(given) == training.loop.updates >= 5
    for result, priorities in zip(results, given, strict=True):
        np.testing.assert_array_equal(priorities, result.numpy())
        assert np.all(priorities > 0)  # a cross-entropy, here near ln 51 at the start
        assert abs(float(np.mean(priorities)) - math.log(51)) < 0.5
