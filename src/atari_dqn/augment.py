"""Augmentation of sampled stacks: DrQ's random shift (Kostrikov et al. 2020).

Pure tensor code with no state but the generator it is given: each (C, H, W) stack is padded by
``pad`` pixels on every side, repeating the edge pixels (``ReplicationPad2d``), and an H x W
window is cropped at a random offset, the same window for all C frames of the stack. Done by
indexing with clamped coordinates, which is exactly that pad and crop, on any dtype (the uint8
stacks are augmented before they become floats) and any device.
"""

from __future__ import annotations

import torch


def shift(obs: torch.Tensor, offsets: torch.Tensor, pad: int) -> torch.Tensor:
    """Crop each stack of ``obs`` (B, C, H, W), padded by ``pad`` with its edge pixels, at
    ``offsets`` (B, 2): the (row, column) of the window's top-left corner in the padded image,
    each in ``[0, 2·pad]``. So ``out[b, c, y, x] = obs[b, c, clamp(y + dy), clamp(x + dx)]``
    with the shift ``(dy, dx) = offsets[b] - pad`` in ``[-pad, pad]²`` and the clamp to the
    image: offsets ``(pad, pad)`` give the stack back unchanged."""
    b, _, h, w = obs.shape
    dy, dx = (offsets.to(obs.device) - pad).unbind(dim=1)  # (B,) each
    rows = (torch.arange(h, device=obs.device) + dy[:, None]).clamp_(0, h - 1)  # (B, H)
    cols = (torch.arange(w, device=obs.device) + dx[:, None]).clamp_(0, w - 1)  # (B, W)
    batch = torch.arange(b, device=obs.device)[:, None, None, None]
    channels = torch.arange(obs.shape[1], device=obs.device)[None, :, None, None]
    return obs[batch, channels, rows[:, None, :, None], cols[:, None, None, :]]


class RandomShift:
    """DrQ's random shift of a batch of stacks: a fresh offset per stack from ``generator``
    (a CPU generator, so the draws are the same on every device, saved in checkpoints)."""

    def __init__(self, generator: torch.Generator, pad: int = 4) -> None:
        self.generator = generator
        self.pad = pad

    def offsets(self, batch: int) -> torch.Tensor:
        """(batch, 2) window corners, uniform on ``[0, 2·pad]²``."""
        return torch.randint(0, 2 * self.pad + 1, (batch, 2), generator=self.generator)

    def __call__(self, obs: torch.Tensor) -> torch.Tensor:
        return shift(obs, self.offsets(obs.shape[0]), self.pad)
