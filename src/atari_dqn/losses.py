"""Pure functions for DQN targets and losses (no state, no optimiser).

Notation as in the papers: ``R`` is the (n-step) return, ``d = γ^n · (1 - done)`` the bootstrap
discount, ``s'`` the bootstrap state.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def q_learning_target(
    returns: torch.Tensor, discounts: torch.Tensor, next_q_target: torch.Tensor
) -> torch.Tensor:
    """``y = R + d · max_a Q_target(s', a)`` (Mnih et al. 2015)."""
    return returns + discounts * next_q_target.max(dim=1).values


def double_q_target(
    returns: torch.Tensor,
    discounts: torch.Tensor,
    next_q_target: torch.Tensor,
    next_q_online: torch.Tensor,
) -> torch.Tensor:
    """``y = R + d · Q_target(s', argmax_a Q_online(s', a))`` (van Hasselt et al. 2016)."""
    best = next_q_online.argmax(dim=1, keepdim=True)
    return returns + discounts * next_q_target.gather(1, best).squeeze(1)


def td_errors(q: torch.Tensor, actions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``δ = y - Q(s, a)`` for the actions taken; targets carry no gradient."""
    q_taken = q.gather(1, actions.unsqueeze(1)).squeeze(1)
    return targets.detach() - q_taken


def weighted_huber(td: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over the batch of ``w_i · huber(δ_i)`` (δ = 1, as PyTorch's smooth_l1_loss).

    With all weights 1 this equals ``F.smooth_l1_loss(Q(s, a), y)``, the seed's loss.
    """
    per_sample = F.huber_loss(td, torch.zeros_like(td), reduction="none", delta=1.0)
    if weights is not None:
        per_sample = per_sample * weights
    return per_sample.mean()
