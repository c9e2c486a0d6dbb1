"""The Q-network's options: LayerNorm as PQN's network has it, and model files that say so."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from atari_dqn.artifacts import load_model, save_model
from atari_dqn.build import build_network
from atari_dqn.config import Config
from atari_dqn.networks import ChannelLayerNorm, QNetwork


def kinds(module: nn.Module) -> list[str]:
    return [type(m).__name__ for m in module]  # type: ignore[attr-defined]


def test_channel_layer_norm_normalises_the_channels_of_each_position_by_hand() -> None:
    # (B, C, H, W) = (1, 2, 1, 2): position 0 holds channels (1, 3), position 1 holds (5, 5).
    x = torch.tensor([[[[1.0, 5.0]], [[3.0, 5.0]]]])
    y = ChannelLayerNorm(2)(x)  # scale 1, bias 0 at initialisation
    # position 0: mean 2, variance ((1-2)² + (3-2)²) / 2 = 1 -> (-1, 1) (ε 1e-6 aside)
    # position 1: both channels equal the mean -> (0, 0)
    expected = torch.tensor([[[[-1.0, 0.0]], [[1.0, 0.0]]]])
    torch.testing.assert_close(y, expected, atol=1e-5, rtol=0)


def test_layer_norm_before_each_relu_of_torso_and_hidden_layer_only() -> None:
    plain, normed = QNetwork(4), QNetwork(4, layer_norm=True)
    assert kinds(plain.torso) == ["Conv2d", "ReLU"] * 3 + ["Flatten"]
    assert kinds(normed.torso) == ["Conv2d", "ChannelLayerNorm", "ReLU"] * 3 + ["Flatten"]
    assert kinds(plain.head) == ["Linear", "ReLU", "Linear"]
    assert kinds(normed.head) == ["Linear", "LayerNorm", "ReLU", "Linear"]  # not the output
    assert [normed.torso[i].normalized_shape for i in (1, 4, 7)] == [(32,), (64,), (64,)]
    assert normed.head[1].normalized_shape == (512,)
    duel = QNetwork(4, layer_norm=True, dueling=True, noisy=True)
    assert kinds(duel.value) == ["NoisyLinear", "LayerNorm", "ReLU", "NoisyLinear"]
    assert kinds(duel.advantage) == ["NoisyLinear", "LayerNorm", "ReLU", "NoisyLinear"]
    # Off, the modules and state-dict keys are the plain network's (old files load as before).
    assert list(plain.state_dict()) == list(QNetwork(4, layer_norm=False).state_dict())


@pytest.mark.parametrize("options", [{}, {"dueling": True}, {"distributional": True, "atoms": 5}])
def test_layer_norm_shapes_and_gradients(options: dict) -> None:
    net = QNetwork(3, layer_norm=True, channels_last=True, **options)
    obs = torch.randint(0, 256, (5, 4, 84, 84), dtype=torch.uint8)
    q = net(obs)
    assert q.shape == (5, 3) and torch.isfinite(q).all()
    q.sum().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_same_seed_same_conv_and_linear_weights_with_or_without_layer_norm() -> None:
    """LayerNorm draws nothing at initialisation: the seed's weights are those of the plain
    network, so the option changes one thing only."""
    a = QNetwork(4, generator=torch.Generator().manual_seed(3))
    b = QNetwork(4, layer_norm=True, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a.torso[0].weight, b.torso[0].weight, rtol=0, atol=0)
    torch.testing.assert_close(a.head[2].weight, b.head[3].weight, rtol=0, atol=0)


def test_model_file_round_trip_rebuilds_layer_norm(tmp_path: Path) -> None:
    net = build_network(Config(layer_norm=True), 4)
    with torch.no_grad():  # make the LayerNorm parameters differ from their initial values
        for m in net.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    path = tmp_path / "m.safetensors"
    save_model(path, net, {})
    loaded, meta = load_model(path)
    assert meta["layer_norm"] == "true" and loaded.layer_norm
    assert kinds(loaded.torso) == kinds(net.torso)
    obs = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(obs), net(obs), rtol=0, atol=0)


def test_a_model_file_from_before_layer_norm_loads_as_before(tmp_path: Path) -> None:
    net = QNetwork(4)
    path = tmp_path / "m.safetensors"
    save_model(path, net, {})
    with safe_open(str(path), framework="pt") as f:  # rewritten without the new key
        meta = {k: v for k, v in (f.metadata() or {}).items() if k != "layer_norm"}
    save_file(load_file(path), str(path), metadata=meta)
    loaded, meta = load_model(path)
    assert "layer_norm" not in meta and not loaded.layer_norm
    assert kinds(loaded.torso) == ["Conv2d", "ReLU"] * 3 + ["Flatten"]
