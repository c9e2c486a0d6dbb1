"""Q-networks: the Nature CNN torso (as the course project has it) with a plain or a dueling
head, each with scalar outputs or a categorical distribution per action (C51), and plain or
noisy linear layers (NoisyNet)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def factorised_noise(z: torch.Tensor) -> torch.Tensor:
    """``f(x) = sign(x) · sqrt(|x|)`` (Fortunato et al. 2018, eq. 10-11), elementwise."""
    return z.sign() * z.abs().sqrt()


class NoisyLinear(nn.Module):
    """A factorised-Gaussian noisy linear layer (Fortunato et al. 2018, section 3.2).

    ``y = (μ_w + σ_w ⊙ ε_w) x + μ_b + σ_b ⊙ ε_b`` with ``ε_w = f(ε_out) f(ε_in)ᵀ`` and
    ``ε_b = f(ε_out)``: p + q unit Gaussians per sample for a p -> q layer. Initialisation:
    ``μ ~ U[-1/√p, 1/√p]``, ``σ = σ0/√p`` (weights and biases alike, as the paper).

    In training mode the current noise sample is used (drawn by :meth:`set_noise`, never here,
    so whoever owns the generator decides when noise is fresh); in eval mode only the mean
    weights ``μ``. The noise is a non-persistent buffer: state dicts (model files, checkpoints)
    hold ``μ`` and ``σ`` only.
    """

    def __init__(self, in_features: int, out_features: int, sigma0: float = 0.5) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.sigma0 = sigma0
        self.weight_mu = nn.Parameter(torch.empty(out_features, in_features))
        self.weight_sigma = nn.Parameter(torch.empty(out_features, in_features))
        self.bias_mu = nn.Parameter(torch.empty(out_features))
        self.bias_sigma = nn.Parameter(torch.empty(out_features))
        self.register_buffer("noise_in", torch.zeros(in_features), persistent=False)
        self.register_buffer("noise_out", torch.zeros(out_features), persistent=False)
        self.reset_parameters()

    noise_in: torch.Tensor
    noise_out: torch.Tensor

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        bound = 1.0 / math.sqrt(self.in_features)
        with torch.no_grad():
            self.weight_mu.uniform_(-bound, bound, generator=generator)
            self.bias_mu.uniform_(-bound, bound, generator=generator)
            self.weight_sigma.fill_(self.sigma0 / math.sqrt(self.in_features))
            self.bias_sigma.fill_(self.sigma0 / math.sqrt(self.in_features))

    @property
    def noise_size(self) -> int:
        return self.in_features + self.out_features

    def set_noise(self, z: torch.Tensor) -> None:
        """Take ``noise_size`` unit Gaussians: ``ε_in = f(z[:p])``, ``ε_out = f(z[p:])``."""
        eps = factorised_noise(z).to(self.noise_in.device, non_blocking=True)
        self.noise_in.copy_(eps[: self.in_features])
        self.noise_out.copy_(eps[self.in_features :])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight_mu, self.bias_mu)
        if not self.training:
            return y
        # (σ_w ⊙ f(ε_out) f(ε_in)ᵀ) x = f(ε_out) ⊙ (σ_w (f(ε_in) ⊙ x)): no q x p noise matrix.
        noisy = F.linear(x * self.noise_in, self.weight_sigma) * self.noise_out
        return y + noisy + self.bias_sigma * self.noise_out


@contextlib.contextmanager
def mean_weights(network: nn.Module) -> Iterator[None]:
    """Noisy layers act with their mean weights ``μ`` inside (evaluation, as Dopamine's
    ``eval_mode``); other layers are unaffected (the networks have no dropout or batch norm)."""
    was_training = network.training
    network.eval()
    try:
        yield
    finally:
        network.train(was_training)


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of each position of a (B, C, H, W) feature map, with a scale
    and a bias per channel: what ``flax.linen.LayerNorm`` does to the NHWC maps of purejaxql's
    PQN network (it normalises the last axis). ε = 1e-6 as flax's default."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class QNetwork(nn.Module):
    """Nature CNN (Mnih et al. 2015) mapping uint8 stacks (B, 4, 84, 84) to Q-values (B, A).

    Torso as in the course project: conv 32 8x8/4, 64 4x4/2, 64 3x3/1, all without bias, ReLU, input
    scaled by 1/255. Plain head: fc 512 -> A. Dueling head (Wang et al. 2016): two fc 512 streams,
    V(s) and A(s, a), combined as ``Q = V + A - mean_a A`` so V and A are identifiable.

    ``distributional`` (C51, Bellemare et al. 2017): each action's output is ``atoms`` logits
    over the support ``z_i = v_min + i·Δz``; ``p_i(s, a) = softmax_i``, ``Q = Σ_i z_i p_i``. With
    dueling the streams are over atoms, ``logits = V(s) + A(s, a) - mean_a A(s, a)`` per atom,
    as Rainbow (Hessel et al. 2018). ``noisy``: both fc layers of every stream are
    :class:`NoisyLinear` with ``sigma0`` (the torso stays plain).

    ``layer_norm`` (PQN, Gallici et al. 2024, as purejaxql's ``pqn_atari.py``): a LayerNorm
    after each convolution (over the channels at each position, :class:`ChannelLayerNorm`) and
    after the hidden fc layer of each stream (over its 512 units), before the ReLU. Without it
    the modules and state-dict keys are those of the plain network. ε = 1e-6 (flax's default).

    ``channels_last`` feeds the convolutions NHWC tensors when gradients are computed: the same
    function (up to float summation order), but oneDNN's NHWC backward kernels are faster on
    CPU, conv1's weight gradient most of all (3.0 -> 1.0 ms at batch 32 on the 2-core machine).
    Weights keep their usual layout, so state dicts, model files and checkpoints do not depend
    on it.
    """

    def __init__(
        self,
        num_actions: int,
        *,
        dueling: bool = False,
        in_frames: int = 4,
        generator: torch.Generator | None = None,
        channels_last: bool = False,
        distributional: bool = False,
        atoms: int = 51,
        v_min: float = -10.0,
        v_max: float = 10.0,
        noisy: bool = False,
        sigma0: float = 0.5,
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        self.num_actions = num_actions
        self.dueling = dueling
        self.channels_last = channels_last
        self.distributional = distributional
        self.atoms = atoms if distributional else 1
        self.v_min, self.v_max = float(v_min), float(v_max)
        self.noisy = noisy
        self.sigma0 = float(sigma0)
        self.layer_norm = layer_norm
        support = torch.linspace(self.v_min, self.v_max, self.atoms) if distributional else None
        self.register_buffer("support", support, persistent=False)

        def norm(module: nn.Module, outputs: int, conv: bool) -> list[nn.Module]:
            """``module``, its LayerNorm where ``layer_norm`` asks for one, then the ReLU."""
            if not layer_norm:
                return [module, nn.ReLU()]
            layer = ChannelLayerNorm(outputs) if conv else nn.LayerNorm(outputs, eps=1e-6)
            return [module, layer, nn.ReLU()]

        self.torso = nn.Sequential(
            *norm(nn.Conv2d(in_frames, 32, kernel_size=8, stride=4, bias=False), 32, True),
            *norm(nn.Conv2d(32, 64, kernel_size=4, stride=2, bias=False), 64, True),
            *norm(nn.Conv2d(64, 64, kernel_size=3, stride=1, bias=False), 64, True),
            nn.Flatten(),
        )
        features = 64 * 7 * 7

        def stream(outputs: int) -> nn.Sequential:
            def linear(inputs: int, outputs: int) -> nn.Module:
                return NoisyLinear(inputs, outputs, sigma0) if noisy else nn.Linear(inputs, outputs)

            return nn.Sequential(*norm(linear(features, 512), 512, False), linear(512, outputs))

        if dueling:
            self.value = stream(self.atoms)
            self.advantage = stream(num_actions * self.atoms)
        else:
            self.head = stream(num_actions * self.atoms)
        self.reset_parameters(generator)

    support: torch.Tensor | None

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Kaiming-normal weights (ReLU gain) and zero biases, as the course project's
        ``init_weights``; noisy layers their own initialisation (:class:`NoisyLinear`), in module
        order."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu", generator=generator)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, NoisyLinear):
                module.reset_parameters(generator)

    def noisy_layers(self) -> list[NoisyLinear]:
        return [m for m in self.modules() if isinstance(m, NoisyLinear)]

    def resample_noise(self, generator: torch.Generator) -> None:
        """Fresh factorised noise for every noisy layer, from ``generator`` (a CPU generator:
        the same draws on every device), in one draw of Σ (p + q) unit Gaussians."""
        layers = self.noisy_layers()
        z = torch.randn(sum(m.noise_size for m in layers), generator=generator)
        for layer, part in zip(layers, z.split([m.noise_size for m in layers]), strict=True):
            layer.set_noise(part)

    def _features(self, obs: torch.Tensor) -> torch.Tensor:
        if self.channels_last and torch.is_grad_enabled():
            # Only where gradients flow: without them (acting, the target) NCHW is as fast or
            # faster. Converted as uint8, a quarter of the bytes of the float tensor.
            obs = obs.contiguous(memory_format=torch.channels_last)
        # uint8 / 255.0 is one kernel with the same float32 result as obs.float() / 255.0.
        return self.torso(obs / 255.0)  # Flatten copies NHWC back to (C, H, W) order

    def logits(self, obs: torch.Tensor) -> torch.Tensor:
        """Distributional head: (B, A, atoms) logits of ``p_i(s, a)``."""
        x = self._features(obs)
        b, k = x.shape[0], self.atoms
        if not self.dueling:
            return self.head(x).view(b, self.num_actions, k)
        value = self.value(x).view(b, 1, k)
        advantage = self.advantage(x).view(b, self.num_actions, k)
        return value + advantage - advantage.mean(dim=1, keepdim=True)

    def q_values(self, logits: torch.Tensor) -> torch.Tensor:
        """``Q(s, a) = Σ_i z_i p_i(s, a)`` from (B, A, atoms) logits, in float32."""
        assert self.support is not None
        return (logits.float().softmax(dim=-1) * self.support).sum(dim=-1)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if self.distributional:
            return self.q_values(self.logits(obs))
        x = self._features(obs)
        if not self.dueling:
            return self.head(x)
        value = self.value(x)  # (B, 1)
        advantage = self.advantage(x)  # (B, A)
        return value + advantage - advantage.mean(dim=1, keepdim=True)

    def architecture(self) -> dict[str, str]:
        """What a model file records so the network can be rebuilt without flags."""
        arch = {
            "arch": "nature-cnn",
            "dueling": str(self.dueling).lower(),
            "num_actions": str(self.num_actions),
            "in_frames": str(self.torso[0].in_channels),
            "distributional": str(self.distributional).lower(),
            "noisy": str(self.noisy).lower(),
            "layer_norm": str(self.layer_norm).lower(),
        }
        if self.distributional:
            arch |= {"atoms": str(self.atoms), "v_min": repr(self.v_min), "v_max": repr(self.v_max)}
        if self.noisy:
            arch["noisy_sigma0"] = repr(self.sigma0)
        return arch

    @classmethod
    def from_architecture(cls, arch: Mapping[str, str]) -> QNetwork:
        """The network :meth:`architecture` describes (fresh weights). Files from before the
        distributional and noisy heads and LayerNorm lack their keys: plain heads, no norm.
        KeyError or ValueError where a key is missing or not a number."""
        distributional = arch.get("distributional", "false") == "true"
        noisy = arch.get("noisy", "false") == "true"
        heads: dict[str, Any] = {
            "distributional": distributional,
            "noisy": noisy,
            "layer_norm": arch.get("layer_norm", "false") == "true",
        }
        if distributional:
            heads |= {
                "atoms": int(arch["atoms"]),
                "v_min": float(arch["v_min"]),
                "v_max": float(arch["v_max"]),
            }
        if noisy:
            heads["sigma0"] = float(arch["noisy_sigma0"])
        return cls(
            int(arch["num_actions"]),
            dueling=arch["dueling"] == "true",
            in_frames=int(arch["in_frames"]),
            **heads,
        )
