"""Targets, losses, the gradient clamp and target sync, on hand-built cases."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from atari_dqn import losses
from atari_dqn.agent import DQNAgent, clamp_gradients
from atari_dqn.networks import QNetwork
from atari_dqn.replay.storage import Batch


def test_q_learning_target_by_hand() -> None:
    returns = torch.tensor([1.0, 0.0, -1.0])
    discounts = torch.tensor([0.99, 0.0, 0.5])  # the second transition is terminal
    next_q = torch.tensor([[1.0, 3.0], [10.0, 20.0], [-2.0, -4.0]])
    y = losses.q_learning_target(returns, discounts, next_q)
    # 1 + 0.99 * 3 ; 0 + 0 * 20 ; -1 + 0.5 * -2
    torch.testing.assert_close(y, torch.tensor([3.97, 0.0, -2.0]))


def test_double_target_differs_from_max_target_by_hand() -> None:
    returns = torch.tensor([0.0, 1.0])
    discounts = torch.tensor([1.0, 0.5])
    next_q_target = torch.tensor([[5.0, 1.0, 2.0], [0.0, 4.0, 8.0]])
    next_q_online = torch.tensor([[0.0, 9.0, 1.0], [3.0, 2.0, 1.0]])
    # online argmax: action 1 and action 0 -> target values 1.0 and 0.0
    y = losses.double_q_target(returns, discounts, next_q_target, next_q_online)
    torch.testing.assert_close(y, torch.tensor([1.0, 1.0]))
    y_max = losses.q_learning_target(returns, discounts, next_q_target)
    torch.testing.assert_close(y_max, torch.tensor([5.0, 5.0]))


def test_td_errors_and_huber_by_hand() -> None:
    q = torch.tensor([[1.0, 2.0], [0.0, -1.0], [3.0, 0.0]], requires_grad=True)
    actions = torch.tensor([1, 0, 0])
    y = torch.tensor([2.5, 3.0, 3.0])
    td = losses.td_errors(q, actions, y)
    torch.testing.assert_close(td, torch.tensor([0.5, 3.0, 0.0]))
    # huber: 0.5*0.5^2 = 0.125 ; |3| - 0.5 = 2.5 ; 0  -> mean 0.875
    loss = losses.weighted_huber(td)
    assert loss.item() == pytest.approx(0.875)
    # Equal to the course project's smooth_l1_loss(Q(s,a), y)
    q_taken = q.gather(1, actions[:, None]).squeeze(1)
    assert F.smooth_l1_loss(q_taken, y).item() == pytest.approx(loss.item())
    # Importance weights multiply each sample's loss before the mean.
    w = torch.tensor([2.0, 0.5, 1.0])
    assert losses.weighted_huber(td, w).item() == pytest.approx((0.25 + 1.25 + 0.0) / 3)
    # The gradient flows into Q(s, a) only, not into the target.
    loss.backward()
    assert q.grad is not None
    torch.testing.assert_close(q.grad, torch.tensor([[0.0, -0.5 / 3], [-1.0 / 3, 0.0], [0, 0]]))


def test_gradient_clamp_elementwise() -> None:
    lin = nn.Linear(2, 1)
    lin.weight.grad = torch.tensor([[3.0, -0.25]])
    lin.bias.grad = torch.tensor([-7.0])
    clamp_gradients(lin, 1.0)
    torch.testing.assert_close(lin.weight.grad, torch.tensor([[1.0, -0.25]]))
    torch.testing.assert_close(lin.bias.grad, torch.tensor([-1.0]))


def tiny_batch(rng: np.random.Generator, n: int = 4) -> Batch:
    return Batch(
        obs=rng.integers(0, 255, size=(n, 4, 84, 84), dtype=np.uint8),
        actions=rng.integers(0, 3, size=n).astype(np.int64),
        returns=rng.normal(size=n).astype(np.float32),
        discounts=np.array([0.99, 0.0, 0.99, 0.99][:n], dtype=np.float32),
        next_obs=rng.integers(0, 255, size=(n, 4, 84, 84), dtype=np.uint8),
        indices=np.arange(n),
        weights=np.ones(n, dtype=np.float32),
    )


def make_agent(double: bool = False, lr: float = 1e-3, **agent_args: bool) -> DQNAgent:
    g = torch.Generator().manual_seed(0)
    online, target = QNetwork(3, generator=g), QNetwork(3, generator=g)
    opt = torch.optim.Adam(online.parameters(), lr=lr, eps=1.5e-4)
    return DQNAgent(online, target, opt, num_actions=3, device=torch.device("cpu"),
                    double=double, **agent_args)  # fmt: skip


def test_agent_update_matches_hand_computation_of_the_loss() -> None:
    agent = make_agent()
    batch = tiny_batch(np.random.default_rng(0))
    with torch.no_grad():
        q = agent.online(torch.from_numpy(batch.obs))
        nq = agent.target(torch.from_numpy(batch.next_obs))
    y = torch.from_numpy(batch.returns) + torch.from_numpy(batch.discounts) * nq.max(1).values
    expected = F.smooth_l1_loss(q.gather(1, torch.from_numpy(batch.actions)[:, None])[:, 0], y)
    result = agent.update(batch)
    assert result.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert result.priority.shape == (4,)
    # The online net moved, the target did not until sync.
    moved = any(
        not torch.equal(a, b)
        for a, b in zip(agent.online.parameters(), agent.target.parameters(), strict=True)
    )
    assert moved
    agent.sync_target()
    for a, b in zip(agent.online.parameters(), agent.target.parameters(), strict=True):
        assert torch.equal(a, b)


def test_agent_applies_the_clamp_before_the_optimizer_step() -> None:
    # SGD with lr 1: each parameter moves by exactly its (clamped) gradient.
    g = torch.Generator().manual_seed(0)
    online, target = QNetwork(3, generator=g), QNetwork(3, generator=g)
    before = [p.detach().clone() for p in online.parameters()]
    opt = torch.optim.SGD(online.parameters(), lr=1.0)
    agent = DQNAgent(online, target, opt, num_actions=3, device=torch.device("cpu"), grad_clip=1e-3)
    batch = tiny_batch(np.random.default_rng(1))
    batch.returns[:] = 1000.0  # huge TD errors -> raw gradients far above the clamp
    agent.update(batch)
    steps = torch.cat(
        [(b - p.detach()).abs().flatten() for b, p in zip(before, online.parameters(), strict=True)]
    )
    assert steps.max().item() == pytest.approx(1e-3, rel=1e-4)


def test_act_is_greedy_at_zero_epsilon_and_random_at_one() -> None:
    agent = make_agent()
    obs = np.random.default_rng(0).integers(0, 255, size=(5, 4, 84, 84), dtype=np.uint8)
    with torch.no_grad():
        greedy = agent.online(torch.from_numpy(obs)).argmax(1).numpy()  # argmax_a Q(s, a)
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(agent.act(obs, 0.0, rng), greedy)
    draws = np.concatenate([agent.act(obs, 1.0, rng) for _ in range(200)])
    assert set(draws.tolist()) == {0, 1, 2}


def test_network_shapes_and_dueling_aggregation() -> None:
    x = torch.randint(0, 255, (6, 4, 84, 84), dtype=torch.uint8)
    plain = QNetwork(4)
    assert plain(x).shape == (6, 4)
    assert all(m.bias is None for m in plain.torso if isinstance(m, nn.Conv2d))
    duel = QNetwork(4, dueling=True)
    q = duel(x)
    feats = duel.torso(x.float() / 255)
    v, a = duel.value(feats), duel.advantage(feats)
    # Q - V has zero mean over actions for every state: the advantages are centred.
    torch.testing.assert_close((q - v).mean(dim=1), torch.zeros(6), atol=1e-5, rtol=0)
    torch.testing.assert_close(q, v + a - a.mean(1, keepdim=True))


def test_init_is_reproducible_from_a_generator() -> None:
    a = QNetwork(3, generator=torch.Generator().manual_seed(7))
    b = QNetwork(3, generator=torch.Generator().manual_seed(7))
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize("fused, channels_last", [(True, False), (False, True), (True, True)])
def test_fast_update_equals_the_plain_update_within_float_tolerance(
    fused: bool, channels_last: bool
) -> None:
    """The fast paths (one fused Adam kernel, NHWC convolutions) learn what the plain path learns:
    same loss, TD errors and (clamped) gradients on each fixed batch, so the same parameters."""

    def agent(fused: bool, channels_last: bool) -> DQNAgent:
        g = torch.Generator().manual_seed(0)
        online = QNetwork(3, generator=g, channels_last=channels_last)
        target = QNetwork(3, generator=g, channels_last=channels_last)
        opt = torch.optim.Adam(online.parameters(), lr=1e-3, eps=1.5e-4, fused=fused)
        return DQNAgent(online, target, opt, num_actions=3, device=torch.device("cpu"))

    plain, fast = agent(False, False), agent(fused, channels_last)
    rng = np.random.default_rng(0)
    for _ in range(3):
        batch = tiny_batch(rng)
        a, b = plain.update(batch), fast.update(batch)
        assert b.loss.item() == pytest.approx(a.loss.item(), rel=1e-5)
        torch.testing.assert_close(b.priority, a.priority, rtol=1e-5, atol=1e-5)  # Q ~ 1: ~10 ulp
        for p, q in zip(plain.online.parameters(), fast.online.parameters(), strict=True):
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6)
            torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("double", [False, True])
def test_bf16_update_is_close_to_the_float32_update_and_keeps_float32_state(double: bool) -> None:
    """--bf16 changes results beyond float rounding, but only by bf16's precision: the loss and
    TD errors stay within a few percent of the float32 path; weights and TD errors stay float32."""

    plain, half = make_agent(double), make_agent(double, bf16=True)
    batch = tiny_batch(np.random.default_rng(1))
    a, b = plain.update(batch), half.update(batch)
    assert b.loss.dtype == torch.float32 and b.priority.dtype == torch.float32
    assert b.loss.item() == pytest.approx(a.loss.item(), rel=5e-2)
    torch.testing.assert_close(b.priority, a.priority, rtol=5e-2, atol=5e-2)
    assert not torch.equal(b.priority, a.priority)  # it does run in bf16
    for p in half.online.parameters():
        assert p.dtype == torch.float32 and p.grad is not None


@pytest.mark.parametrize(
    "head",
    [{}, {"dueling": True}, {"noisy": True}, {"distributional": True, "atoms": 11},
     {"distributional": True, "atoms": 11, "noisy": True, "dueling": True}],
)  # fmt: skip
def test_one_pass_double_is_the_two_pass_update_within_float_rounding(head: dict) -> None:
    """--one-pass-double: the online net at s and s' in one pass over [s; s'] learns what the
    two passes learn (the same loss, TD errors or cross-entropies, and gradients, to ~1e-5),
    with one pass of each net per update. Noisy nets: one noise sample per layer for the whole
    batch, drawn once per update, so both halves see the noise they saw before and the noise
    stream stays where it was."""

    def agent(one_pass: bool) -> tuple[DQNAgent, list[int]]:
        g = torch.Generator().manual_seed(0)
        online, target = QNetwork(3, generator=g, **head), QNetwork(3, generator=g, **head)
        opt = torch.optim.Adam(online.parameters(), lr=1e-3, eps=1.5e-4)
        calls = [0, 0]  # torso passes of the online and the target net
        online.torso.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
        target.torso.register_forward_hook(lambda *_: calls.__setitem__(1, calls[1] + 1))
        noise = torch.Generator().manual_seed(1) if online.noisy else None
        return DQNAgent(online, target, opt, num_actions=3, device=torch.device("cpu"),
                        double=True, noise=noise, one_pass=one_pass), calls  # fmt: skip

    (two, two_calls), (one, one_calls) = agent(False), agent(True)
    rng = np.random.default_rng(2)
    for _ in range(2):
        batch = tiny_batch(rng)
        a, b = two.update(batch), one.update(batch)
        assert b.loss.item() == pytest.approx(a.loss.item(), rel=1e-5)
        torch.testing.assert_close(b.priority, a.priority, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(b.q_mean, a.q_mean, rtol=1e-5, atol=1e-5)
        for p, q in zip(two.online.parameters(), one.online.parameters(), strict=True):
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-5, atol=1e-5)
    assert two_calls == [4, 2] and one_calls == [2, 2]  # per update: 2 + 1 passes, then 1 + 1
    if two.noise is not None and one.noise is not None:
        assert torch.equal(two.noise.get_state(), one.noise.get_state())


def test_compiled_falls_back_to_the_plain_function_where_compiling_fails() -> None:
    """perf.compiled: a backend that fails (as inductor does without a C++ compiler) gives one
    warning and the plain function's result, that call and every later one; an error of the
    function itself is not swallowed."""
    from atari_dqn.perf import compiled

    def failing_backend(gm: torch.fx.GraphModule, inputs: list[torch.Tensor]) -> None:
        raise RuntimeError("no C++ compiler")

    calls = [0]

    def f(x: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        if x.sum() < 0:
            raise ValueError("negative")
        return x * 2 + 1

    torch._dynamo.reset()
    g = compiled(f, "f", backend=failing_backend)
    x = torch.arange(3.0)
    with pytest.warns(RuntimeWarning, match=r"torch.compile of f failed .*running it uncompiled"):
        assert torch.equal(g(x), x * 2 + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the warning is given once
        assert torch.equal(g(x + 1), x * 2 + 3)
        with pytest.raises(ValueError, match="negative"):
            g(-x - 1)


@pytest.mark.slow  # compiles with inductor: about a minute on host B
@pytest.mark.skipif(shutil.which("c++") is None, reason="inductor needs a C++ compiler")
def test_a_compiled_update_learns_what_the_plain_update_learns() -> None:
    """--compile (laptop-v1's Double DQN update): the loss and the clamp + Adam step
    under torch.compile give the plain update's loss, priorities and Q mean to float rounding
    (1e-5) on the first update; Adam then carries the rounding on, so three updates later the
    weights agree to 1e-4, as a wrong loss could not."""

    plain, fast = make_agent(double=True), make_agent(double=True, compile=True)
    start = [p.detach().clone() for p in fast.online.parameters()]
    rng = np.random.default_rng(3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback: it did compile
        for i in range(3):
            batch = tiny_batch(rng)
            a, b = plain.update(batch), fast.update(batch)
            tol = 1e-5 if i == 0 else 1e-3
            assert b.loss.item() == pytest.approx(a.loss.item(), rel=tol)
            torch.testing.assert_close(b.priority, a.priority, rtol=tol, atol=tol)
            torch.testing.assert_close(b.q_mean, a.q_mean, rtol=tol, atol=tol)
    for p, q in zip(plain.online.parameters(), fast.online.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-4)
    assert any(not torch.equal(q, s) for q, s in zip(fast.online.parameters(), start, strict=True))
