"""Q-networks: the Nature CNN torso (as the seed has it) with a plain or a dueling head."""

from __future__ import annotations

import torch
from torch import nn


class QNetwork(nn.Module):
    """Nature CNN (Mnih et al. 2015) mapping uint8 stacks (B, 4, 84, 84) to Q-values (B, A).

    Torso as in the seed: conv 32 8x8/4, 64 4x4/2, 64 3x3/1, all without bias, ReLU, input scaled
    by 1/255. Plain head: fc 512 -> A. Dueling head (Wang et al. 2016): two fc 512 streams,
    V(s) and A(s, a), combined as ``Q = V + A - mean_a A`` so V and A are identifiable.

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
    ) -> None:
        super().__init__()
        self.num_actions = num_actions
        self.dueling = dueling
        self.channels_last = channels_last
        self.torso = nn.Sequential(
            nn.Conv2d(in_frames, 32, kernel_size=8, stride=4, bias=False),
            nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=4, stride=2, bias=False),
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, stride=1, bias=False),
            nn.ReLU(),
            nn.Flatten(),
        )
        features = 64 * 7 * 7
        if dueling:
            self.value = nn.Sequential(nn.Linear(features, 512), nn.ReLU(), nn.Linear(512, 1))
            self.advantage = nn.Sequential(
                nn.Linear(features, 512), nn.ReLU(), nn.Linear(512, num_actions)
            )
        else:
            self.head = nn.Sequential(
                nn.Linear(features, 512), nn.ReLU(), nn.Linear(512, num_actions)
            )
        self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Kaiming-normal weights (ReLU gain) and zero biases, as the seed's ``init_weights``."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu", generator=generator)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if self.channels_last and torch.is_grad_enabled():
            # Only where gradients flow: without them (acting, the target) NCHW is as fast or
            # faster. Converted as uint8, a quarter of the bytes of the float tensor.
            obs = obs.contiguous(memory_format=torch.channels_last)
        # uint8 / 255.0 is one kernel with the same float32 result as obs.float() / 255.0.
        x = self.torso(obs / 255.0)  # Flatten copies NHWC back to (C, H, W) order
        if not self.dueling:
            return self.head(x)
        value = self.value(x)  # (B, 1)
        advantage = self.advantage(x)  # (B, A)
        return value + advantage - advantage.mean(dim=1, keepdim=True)

    def architecture(self) -> dict[str, str]:
        """What a model file records so the network can be rebuilt without flags."""
        return {
            "arch": "nature-cnn",
            "dueling": str(self.dueling).lower(),
            "num_actions": str(self.num_actions),
            "in_frames": str(self.torso[0].in_channels),
        }
