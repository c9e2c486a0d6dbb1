"""NoisyNet by hand: factorised noise, initialisation, seeded noise, fresh noise per step,
evaluation with the mean weights, and model files that hold μ and σ, never a noise sample."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from atari_dqn.agent import DQNAgent
from atari_dqn.artifacts import load_model, save_model
from atari_dqn.networks import NoisyLinear, QNetwork, factorised_noise, mean_weights


def test_factorised_noise_is_signed_square_root() -> None:
    z = torch.tensor([4.0, -9.0, 0.0, 0.25, -0.01])
    torch.testing.assert_close(factorised_noise(z), torch.tensor([2.0, -3.0, 0.0, 0.5, -0.1]))


def test_noisy_layer_output_is_the_factorised_noisy_linear_map() -> None:
    torch.manual_seed(0)
    layer = NoisyLinear(6, 3, sigma0=0.5)
    z = torch.randn(9)
    layer.set_noise(z)
    assert layer.noise_in.shape == (6,) and layer.noise_out.shape == (3,)
    eps_in, eps_out = factorised_noise(z[:6]), factorised_noise(z[6:])
    # ε_w = f(ε_out) f(ε_in)ᵀ is (q, p) = (3, 6); ε_b = f(ε_out).
    w = layer.weight_mu + layer.weight_sigma * torch.outer(eps_out, eps_in)
    b = layer.bias_mu + layer.bias_sigma * eps_out
    x = torch.randn(4, 6)
    torch.testing.assert_close(layer(x), F.linear(x, w, b))
    layer.eval()  # evaluation: the mean weights only
    torch.testing.assert_close(layer(x), F.linear(x, layer.weight_mu, layer.bias_mu))


def test_noise_scale_is_that_of_f_of_a_unit_gaussian() -> None:
    # E[f(z)²] = E|z| = sqrt(2/π) ≈ 0.798 for z ~ N(0, 1); 3136 + 512 + 512 + 4 draws.
    network = QNetwork(4, noisy=True)
    network.resample_noise(torch.Generator().manual_seed(0))
    (first, second) = network.noisy_layers()
    assert first.noise_in.shape == (3136,) and first.noise_out.shape == (512,)
    assert second.noise_in.shape == (512,) and second.noise_out.shape == (4,)
    values = torch.cat([first.noise_in, first.noise_out, second.noise_in])
    assert abs(float((values**2).mean()) - math.sqrt(2 / math.pi)) < 0.05
    assert abs(float(values.mean())) < 0.05


def test_initialisation_bounds_mu_uniform_and_sigma_constant() -> None:
    network = QNetwork(4, noisy=True, dueling=True, sigma0=0.5,
                       generator=torch.Generator().manual_seed(0))  # fmt: skip
    network.requires_grad_(False)
    layers = network.noisy_layers()
    assert [(m.in_features, m.out_features) for m in layers] == [
        (3136, 512), (512, 1), (3136, 512), (512, 4)]  # fmt: skip
    for layer in layers:
        p = layer.in_features
        bound = 1 / math.sqrt(p)
        for mu in (layer.weight_mu, layer.bias_mu):
            assert float(mu.abs().max()) <= bound
        # U[-b, b] spreads to the bounds (1.6M draws for the 3136 -> 512 layer).
        if layer.weight_mu.numel() > 100_000:
            assert float(layer.weight_mu.max()) > 0.99 * bound
            assert float(layer.weight_mu.min()) < -0.99 * bound
            assert abs(float(layer.weight_mu.var()) - bound**2 / 3) < 0.01 * bound**2
        for sigma in (layer.weight_sigma, layer.bias_sigma):
            assert torch.all(sigma == torch.tensor(0.5 / math.sqrt(p)))


def _noise(network: QNetwork) -> list[torch.Tensor]:
    return [t.clone() for m in network.noisy_layers() for t in (m.noise_in, m.noise_out)]


def test_same_seed_same_noise_other_seed_other_noise() -> None:
    a, b = QNetwork(3, noisy=True), QNetwork(3, noisy=True)
    a.resample_noise(torch.Generator().manual_seed(7))
    b.resample_noise(torch.Generator().manual_seed(7))
    assert all(torch.equal(x, y) for x, y in zip(_noise(a), _noise(b), strict=True))
    b.resample_noise(torch.Generator().manual_seed(8))
    assert not any(torch.equal(x, y) for x, y in zip(_noise(a), _noise(b), strict=True))


def _agent(noise_seed: int = 0) -> DQNAgent:
    torch.manual_seed(0)
    online, target = QNetwork(3, noisy=True), QNetwork(3, noisy=True)
    optimizer = torch.optim.Adam(online.parameters(), lr=1e-4)
    return DQNAgent(online, target, optimizer, num_actions=3, device=torch.device("cpu"),
                    noise=torch.Generator().manual_seed(noise_seed))  # fmt: skip


def test_fresh_noise_at_every_acting_step_and_update_and_none_in_evaluation() -> None:
    from atari_dqn.bench.update import fixed_batch

    agent = _agent()
    obs = np.random.default_rng(0).integers(0, 255, (2, 4, 84, 84), dtype=np.uint8)
    rng = np.random.default_rng(0)
    agent.act(obs, 0.0, rng)
    first = _noise(agent.online)
    agent.act(obs, 0.0, rng)
    second = _noise(agent.online)
    assert not any(torch.equal(x, y) for x, y in zip(first, second, strict=True))
    agent.update(fixed_batch(3, 4))
    third, target_noise = _noise(agent.online), _noise(agent.target)
    assert not any(torch.equal(x, y) for x, y in zip(second, third, strict=True))
    assert not any(torch.equal(x, y) for x, y in zip(third, target_noise, strict=True))
    # Evaluation acts with μ only: the same actions whatever the current noise, and those of
    # the mean network.
    states = torch.from_numpy(obs)
    with torch.no_grad(), mean_weights(agent.online):
        greedy = agent.online(states).argmax(1).numpy()
    for _ in range(3):
        agent.act(obs, 0.0, rng)  # new noise
        assert np.array_equal(agent.act_eval(obs, 0.0, rng), greedy)
    # ... and evaluation draws nothing from the noise generator.
    assert agent.noise is not None
    before = agent.noise.get_state()
    agent.act_eval(obs, 0.0, rng)
    assert torch.equal(agent.noise.get_state(), before)


def test_same_noise_seed_same_updates() -> None:
    from atari_dqn.bench.update import fixed_batch

    batch = fixed_batch(3, 4)
    a, b, c = _agent(1), _agent(1), _agent(2)
    la = [float(a.update(batch).loss) for _ in range(2)]
    assert la == [float(b.update(batch).loss) for _ in range(2)]
    assert la != [float(c.update(batch).loss) for _ in range(2)]


def test_agent_state_holds_the_noise_generator_and_restores_it() -> None:
    a = _agent(3)
    assert a.noise is not None
    a.noise.manual_seed(11)
    tensors, meta = a.state()
    expected = torch.randn(5, generator=torch.Generator().manual_seed(11))
    b = _agent(4)
    b.load_state(tensors, meta)
    assert b.noise is not None
    assert torch.equal(torch.randn(5, generator=b.noise), expected)


def test_model_file_holds_the_mean_weights_and_sigma_never_noise(tmp_path: Path) -> None:
    network = QNetwork(3, noisy=True, dueling=True, distributional=True, atoms=11, sigma0=0.3)
    network.resample_noise(torch.Generator().manual_seed(0))
    path = tmp_path / "m.safetensors"
    save_model(path, network, {})
    saved = load_file(path)
    assert not any("noise" in key for key in saved)
    assert torch.equal(saved["value.0.weight_mu"], network.value[0].weight_mu)
    assert torch.equal(saved["value.0.weight_sigma"], network.value[0].weight_sigma)
    assert "value.0.weight" not in saved  # no μ + σ ε sample under any name
    loaded, meta = load_model(path)
    assert (meta["noisy"], meta["noisy_sigma0"], meta["atoms"]) == ("true", "0.3", "11")
    assert loaded.noisy and loaded.distributional and loaded.atoms == 11
    obs = torch.randint(0, 255, (2, 4, 84, 84), dtype=torch.uint8)
    with torch.no_grad(), mean_weights(network), mean_weights(loaded):
        torch.testing.assert_close(loaded(obs), network(obs))
