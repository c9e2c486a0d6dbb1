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

    With all weights 1 this equals ``F.smooth_l1_loss(Q(s, a), y)``, the course project's loss.
    """
    per_sample = F.huber_loss(td, torch.zeros_like(td), reduction="none", delta=1.0)
    if weights is not None:
        per_sample = per_sample * weights
    return per_sample.mean()


def categorical_projection(
    returns: torch.Tensor,
    discounts: torch.Tensor,
    next_probs: torch.Tensor,
    support: torch.Tensor,
) -> torch.Tensor:
    """The C51 target (Bellemare et al. 2017, algorithm 1): the distribution of
    ``T z_j = R + d · z_j`` with mass ``p_j(s', a*)``, clipped to ``[v_min, v_max]`` and projected
    onto the support ``z``.

    Each ``T z_j`` lands at ``b_j = (T z_j - v_min) / Δz`` and splits its mass between the atoms
    ``l = ⌊b_j⌋`` and ``u = ⌈b_j⌉`` in proportion to its closeness: ``m_l += p_j (u - b_j)``,
    ``m_u += p_j (b_j - l)``; exactly on an atom (``l = u``) all of it goes there. A terminal
    transition (``d = 0``) puts all mass at the clipped ``R``; a return cut at ``k < n`` steps
    arrives with ``d = γ^k``. ``returns, discounts``: (B,); ``next_probs``: (B, K); ``support``:
    (K,) evenly spaced. Returns (B, K) rows that sum to 1.
    """
    k = support.shape[0]
    v_min, v_max = support[0], support[-1]  # tensors: no device sync
    delta = (v_max - v_min) / (k - 1)
    tz = returns.unsqueeze(1) + discounts.unsqueeze(1) * support.unsqueeze(0)
    tz = torch.minimum(torch.maximum(tz, v_min), v_max)
    b = ((tz - v_min) / delta).clamp(0, k - 1)  # clamp: float rounding must stay on the grid
    lower, upper = b.floor(), b.ceil()
    on_atom = (lower == upper).to(next_probs.dtype)
    m = torch.zeros_like(next_probs)
    m.scatter_add_(1, lower.long(), next_probs * (upper - b + on_atom))
    m.scatter_add_(1, upper.long(), next_probs * (b - lower))
    return m


def categorical_target(
    returns: torch.Tensor,
    discounts: torch.Tensor,
    next_probs: torch.Tensor,
    chooser_probs: torch.Tensor,
    support: torch.Tensor,
) -> torch.Tensor:
    """C51's target for a batch: :func:`categorical_projection` of ``next_probs[a*]``, the
    bootstrap net's distribution (B, A, K) at ``a* = argmax_a Σ_i z_i chooser_probs[a, i]``. The
    chooser is the online net's distribution at s' (Double) or ``next_probs`` itself."""
    best = (chooser_probs * support).sum(dim=-1).argmax(dim=1)
    rows = torch.arange(len(best), device=best.device)
    return categorical_projection(returns, discounts, next_probs[rows, best], support)


def categorical_cross_entropy(
    logits: torch.Tensor, actions: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    """Per sample ``-Σ_i m_i log p_i(s, a)`` for the actions taken: (B, A, K) logits, (B,)
    actions, (B, K) target distributions (no gradient). Returns (B,)."""
    taken = logits[torch.arange(logits.shape[0], device=logits.device), actions]
    return -(target.detach() * taken.log_softmax(dim=-1)).sum(dim=-1)


def weighted_mean(per_sample: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over the batch of ``w_i · loss_i`` (prioritized replay's IS weights)."""
    if weights is not None:
        per_sample = per_sample * weights
    return per_sample.mean()


def q_lambda_returns(
    rewards: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    next_max_q: torch.Tensor,
    *,
    gamma: float,
    lam: float,
) -> torch.Tensor:
    """Q(λ) targets of a rollout, as PQN (Gallici et al. 2024, eq. for ``G^λ_t``) defines them.

    All arguments are ``[T, N]`` (T steps of N envs), on any device; ``next_max_q[t]`` is
    ``max_a Q(s_{t+1}, a)`` of the *true* successor of step t (also at a truncation: never the
    first state of the next episode) as the network computed it while acting. Backwards from the
    rollout's end, with ``G_T := max_a Q(s_T, a)`` (the bootstrap, ``next_max_q[T-1]``)::

        G_t = r_t + γ (1 - term_t) [ λ_t G_{t+1} + (1 - λ_t) max_a Q(s_{t+1}, a) ],
        λ_t = λ (1 - end_t),   end_t = term_t or trunc_t

    * a **terminal** step (game over, or a life loss: training episodes end there in this
      project) has no bootstrap: ``G_t = r_t``;
    * a **truncation** (the frame cap) bootstraps from the state it was cut at and nothing
      after it: ``G_t = r_t + γ max_a Q(s_{t+1}, a)``;
    * so the recursion never runs across an episode's end (``λ_t = 0`` there). If both flags
      are set the step is terminal.

    ``λ = 0`` gives one-step Q-learning targets ``r_t + γ (1 - term_t) max_a Q(s_{t+1}, a)``;
    ``λ = 1`` the discounted sum of the rewards to the episode's end, or to the rollout's end
    bootstrapped with ``max_a Q(s_T, a)``. No gradient flows through the result. Returns
    ``[T, N]`` float32.
    """
    if not (rewards.shape == terminated.shape == truncated.shape == next_max_q.shape):
        raise ValueError(
            "rewards, terminated, truncated and next_max_q must have one shape [T, N], got "
            f"{tuple(rewards.shape)}, {tuple(terminated.shape)}, {tuple(truncated.shape)},"
            f" {tuple(next_max_q.shape)}"
        )
    with torch.no_grad():
        r = rewards.float()
        q_next = next_max_q.float()
        bootstrap = gamma * (~terminated.bool()).float()  # γ (1 - term_t)
        lam_t = lam * (~(terminated.bool() | truncated.bool())).float()  # λ (1 - end_t)
        returns = torch.empty_like(r)
        g = q_next[-1]  # G_T = max_a Q(s_T, a)
        for t in range(r.shape[0] - 1, -1, -1):
            g = r[t] + bootstrap[t] * (lam_t[t] * g + (1.0 - lam_t[t]) * q_next[t])
            returns[t] = g
    return returns


def masked_half_squared(td: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the samples where ``mask`` is 1 of ``½ δ²`` (PQN's loss, as purejaxql's
    ``0.5 * square(Q(s, a) - G).mean()``); samples with mask 0 add nothing. 0 if none count."""
    mask = mask.to(td.dtype)
    return (0.5 * td.square() * mask).sum() / mask.sum().clamp(min=1.0)
