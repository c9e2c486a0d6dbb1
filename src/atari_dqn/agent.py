"""DQNAgent: acting (ε-greedy) and learning (one TD update) around an online and a target net.

With a distributional network the update is C51's (projected target distribution, cross-entropy);
with noisy networks the agent owns the noise generator and draws fresh noise before every network
pass that uses it: once per acting step, and per update once for the online net (Q(s) and the
Double-DQN argmax at s') and once for the target net.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from atari_dqn import losses
from atari_dqn.augment import RandomShift
from atari_dqn.networks import QNetwork, mean_weights
from atari_dqn.perf import compiled
from atari_dqn.replay.storage import Batch


@dataclass
class UpdateResult:
    """Outcome of one update, as detached tensors (reading them is the caller's choice)."""

    loss: torch.Tensor  # scalar
    q_mean: torch.Tensor  # scalar, mean Q(s, a) of the batch
    priority: torch.Tensor
    """(B,) each sample's new priority before α and ε (the replay applies them), on the
    update's device (no sync): the TD error |δ|, or with a distributional head the per-sample
    cross-entropy (as Rainbow: the KL up to the target's entropy)."""


class EpsilonGreedyPolicy:
    """Act-only: ε-greedy actions from a Q-network (evaluation, Ape-X actors, the learner).

    ``epsilon`` may be one value or one per state (an Ape-X actor's envs each have their own).
    ``noise``: a noisy network's generator; fresh noise is drawn from it before each greedy pass
    (training). Without one, noisy layers use their mean weights (evaluation, as Dopamine).
    """

    def __init__(
        self,
        network: QNetwork,
        num_actions: int,
        device: torch.device,
        noise: torch.Generator | None = None,
    ) -> None:
        self.network = network
        self.num_actions = num_actions
        self.device = device
        self.noise = noise

    @torch.no_grad()
    def q_values(self, obs: np.ndarray) -> torch.Tensor:
        """Q(s, ·) for a batch of uint8 stacks (N, 4, 84, 84): (N, A) on the device."""
        states = torch.from_numpy(obs).to(self.device)
        if self.noise is not None:
            self.network.resample_noise(self.noise)
            return self.network(states)
        if self.network.noisy:
            with mean_weights(self.network):
                return self.network(states)
        # no noisy layers: no train/eval switch over every module at each acting step
        return self.network(states)

    def greedy(self, obs: np.ndarray) -> np.ndarray:
        """argmax_a Q(s, a) for a batch of uint8 stacks (N, 4, 84, 84)."""
        return self.q_values(obs).argmax(dim=1).cpu().numpy()

    def _draw(
        self, n: int, epsilon: float | np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Who explores, and the random actions they take (one order of draws for both acts)."""
        explore = np.asarray(rng.random(n) < epsilon)
        return explore, np.asarray(rng.integers(0, self.num_actions, size=n))

    def act(
        self, obs: np.ndarray, epsilon: float | np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """ε-greedy actions for a batch of states; the network runs only if some act greedily."""
        explore, random_actions = self._draw(obs.shape[0], epsilon, rng)
        if explore.all():
            return random_actions
        return np.where(explore, random_actions, self.greedy(obs))

    def act_with_max_q(
        self, obs: np.ndarray, epsilon: float | np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, torch.Tensor]:
        """The actions :meth:`act` takes with the same ``rng``, and ``max_a Q(s, a)`` per state
        ((N,) on the device, float32): the network always runs (PQN's targets use its values)."""
        explore, random_actions = self._draw(obs.shape[0], epsilon, rng)
        q = self.q_values(obs).float()
        max_q, best = q.max(dim=1)
        return np.where(explore, random_actions, best.cpu().numpy()), max_q


class DQNAgent:
    """Owns the networks and the optimiser; takes batches, returns what it learned.

    ``double`` selects the Double-DQN target. A distributional ``online``/``target`` pair
    learns C51's way; ``noise`` (noisy networks) is the generator of all their noise, seeded
    from the run seed and saved in checkpoints, so runs and resumes are exact. Gradients are
    clamped element-wise to ``[-grad_clip, grad_clip]`` as the course project's
    ``param.grad.data.clamp_(-1, 1)``. ``bf16`` runs the update's network passes under bf16
    autocast: faster where the hardware has bf16 units, but it changes results beyond float
    rounding. Acting always runs in float32. ``compile`` runs the loss (with its forward passes)
    and the clamp + Adam step under ``torch.compile``, backward between them
    (:func:`atari_dqn.perf.compiled`). ``one_pass`` (with ``double``) runs the online
    net at s and s' as one pass over both batches (:meth:`_online_pair`). ``augment`` (DrQ's
    random shift) transforms the sampled s and s' stacks of every update, with independent
    draws for each (s first), as DrQ does; acting and evaluation see the frames as they are.
    """

    def __init__(
        self,
        online: QNetwork,
        target: QNetwork,
        optimizer: torch.optim.Optimizer,
        *,
        num_actions: int,
        device: torch.device,
        double: bool = False,
        grad_clip: float = 1.0,
        bf16: bool = False,
        noise: torch.Generator | None = None,
        augment: RandomShift | None = None,
        one_pass: bool = False,
        compile: bool = False,
    ) -> None:
        self.online = online
        self.target = target
        self.optimizer = optimizer
        self.num_actions = num_actions
        self.device = device
        self.double = double
        self.grad_clip = grad_clip
        self.bf16 = bf16
        if online.noisy and noise is None:
            raise ValueError("a noisy network needs a noise generator")
        self.noise = noise if online.noisy else None
        self.augment = augment
        self.one_pass = one_pass
        self.target.requires_grad_(False)
        self.sync_target()
        self.policy = EpsilonGreedyPolicy(online, num_actions, device, noise=self.noise)
        self.eval_policy = EpsilonGreedyPolicy(online, num_actions, device)
        # The update's two halves around backward(), compiled or as they are.
        loss = self._categorical_loss if online.distributional else self._td_loss
        self._loss, self._apply = loss, self._clamp_and_step
        if compile:
            self._loss = compiled(loss, "the loss")
            self._apply = compiled(self._clamp_and_step, "the Adam step")

    # ------------------------------------------------------------------ acting
    def act(
        self, obs: np.ndarray, epsilon: float | np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        return self.policy.act(obs, epsilon, rng)

    def act_eval(
        self, obs: np.ndarray, epsilon: float | np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """ε-greedy as evaluation plays: noisy layers with their mean weights (as Dopamine)."""
        return self.eval_policy.act(obs, epsilon, rng)

    # ------------------------------------------------------------------ learning
    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(array).to(self.device, non_blocking=True)

    def update(self, batch: Batch) -> UpdateResult:
        """One gradient step on the weighted loss of ``batch``: Huber TD, or C51's
        cross-entropy with a distributional network."""
        obs = self._to_device(batch.obs)
        next_obs = self._to_device(batch.next_obs)
        actions = self._to_device(batch.actions)
        returns = self._to_device(batch.returns)
        discounts = self._to_device(batch.discounts)
        weights = self._to_device(batch.weights)
        if self.augment is not None:  # DrQ: independent shifts for s and s'
            obs, next_obs = self.augment(obs), self.augment(next_obs)
        if self.noise is not None:  # fresh noise for this update: online, then target
            self.online.resample_noise(self.noise)
            self.target.resample_noise(self.noise)
        loss, priorities, q_taken = self._loss(obs, actions, returns, discounts, next_obs, weights)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self._apply()
        return UpdateResult(loss.detach(), q_taken, priorities)

    def _td_loss(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        returns: torch.Tensor,
        discounts: torch.Tensor,
        next_obs: torch.Tensor,
        weights: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The weighted Huber TD loss; with it the new priorities |TD| and the mean Q(s, a)."""
        q, next_q_target, next_q_online = self._passes(
            self.online.forward, self.target.forward, obs, next_obs
        )
        # Targets, TD errors and the loss in float32 whatever the networks ran in.
        q, next_q_target = q.float(), next_q_target.float()
        with torch.no_grad():
            if next_q_online is not None:
                y = losses.double_q_target(returns, discounts, next_q_target, next_q_online.float())
            else:
                y = losses.q_learning_target(returns, discounts, next_q_target)
        td = losses.td_errors(q, actions, y)
        loss = losses.weighted_huber(td, weights)
        q_taken = (y - td).detach()
        return loss, td.detach().abs(), q_taken.mean()

    def _categorical_loss(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        returns: torch.Tensor,
        discounts: torch.Tensor,
        next_obs: torch.Tensor,
        weights: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """C51: ``m = Φ(R + d·z, p_target(s', a*))`` with ``a* = argmax_a Σ z p(s', a)`` of the
        online net (Double) or the target net; loss ``w_i · CE(m, p(s, a))``; priorities CE."""
        support = self.online.support
        assert support is not None
        logits, next_logits, next_online = self._passes(
            self.online.logits, self.target.logits, obs, next_obs
        )
        logits = logits.float()
        with torch.no_grad():
            next_probs = next_logits.float().softmax(dim=-1)  # (B, A, K)
            chooser = next_probs if next_online is None else next_online.float().softmax(dim=-1)
            target = losses.categorical_target(returns, discounts, next_probs, chooser, support)
        per_sample = losses.categorical_cross_entropy(logits, actions, target)
        loss = losses.weighted_mean(per_sample, weights)
        with torch.no_grad():
            q_taken = self.online.q_values(logits).gather(1, actions.unsqueeze(1)).squeeze(1)
        return loss, per_sample.detach(), q_taken.mean()

    def _passes(
        self,
        online: Callable[[torch.Tensor], torch.Tensor],
        target: Callable[[torch.Tensor], torch.Tensor],
        obs: torch.Tensor,
        next_obs: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The update's network passes (under bf16 autocast with ``bf16``): the online net at s
        with gradients; without, the target net at s' and, with Double DQN, the online net at
        s' (None otherwise). ``online``/``target``: the nets' Q-values or C51 logits."""
        next_online: torch.Tensor | None
        with self._autocast():
            if self.double and self.one_pass:
                out, next_online = self._online_pair(online, obs, next_obs)
                with torch.no_grad():
                    next_target = target(next_obs)
            else:
                out = online(obs)
                with torch.no_grad():
                    next_target = target(next_obs)
                    next_online = online(next_obs) if self.double else None
        return out, next_target, next_online

    @staticmethod
    def _online_pair(
        net: Callable[[torch.Tensor], torch.Tensor], obs: torch.Tensor, next_obs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The online net at s (with gradients) and at s' (detached: Double DQN's argmax) in one
        pass over the stacked batch ``[s; s']``. A noisy net's noise is one sample per layer
        for the whole batch, drawn once per update, so both halves see the noise that the two
        separate passes saw. The backward pass then runs over both halves (the s' half's
        gradient is zero): fewer, larger kernels, but more arithmetic than two passes."""
        both = net(torch.cat([obs, next_obs]))
        b = obs.shape[0]
        return both[:b], both[b:].detach()

    def _clamp_and_step(self) -> None:
        clamp_gradients(self.online, self.grad_clip)
        self.optimizer.step()

    def _autocast(self) -> contextlib.AbstractContextManager[None]:
        """bf16 autocast for the update's network passes (weights and Adam stay float32)."""
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def sync_target(self) -> None:
        self.target.load_state_dict(self.online.state_dict())

    # ------------------------------------------------------------------ state
    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Networks and optimiser as flat tensors plus JSON-able metadata (no pickle)."""
        tensors = {f"online.{k}": v for k, v in self.online.state_dict().items()}
        tensors |= {f"target.{k}": v for k, v in self.target.state_dict().items()}
        if self.noise is not None:  # where the noise stream stands (resume draws what's next)
            tensors["noise_generator"] = self.noise.get_state()
        if self.augment is not None:  # where the augmentation's draws stand
            tensors["augment_generator"] = self.augment.generator.get_state()
        optim_tensors, meta = optimizer_state(self.optimizer)
        return tensors | optim_tensors, meta

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        self.online.load_state_dict(section(tensors, "online."))
        self.target.load_state_dict(section(tensors, "target."))
        if self.noise is not None:
            self.noise.set_state(tensors["noise_generator"])
        if self.augment is not None:
            self.augment.generator.set_state(tensors["augment_generator"])
        load_optimizer_state(self.optimizer, tensors, meta)


def section(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of ``tensors`` under ``prefix``, with the prefix taken off."""
    n = len(prefix)
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix)}


def optimizer_state(
    optimizer: torch.optim.Optimizer,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimiser's state as flat tensors (``optim.<param id>.<name>``) plus JSON-able
    metadata (its param groups; 0-d entries such as Adam's ``step`` as floats): no pickle."""
    opt = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, float]] = {}
    for pid, entries in opt["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor) and value.dim() > 0:
                tensors[f"optim.{pid}.{key}"] = value
            else:
                scalars.setdefault(str(pid), {})[key] = float(value)
    return tensors, {"param_groups": opt["param_groups"], "optim_scalars": scalars}


def load_optimizer_state(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    """Restore what :func:`optimizer_state` saved (other keys of ``tensors`` are ignored)."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in section(tensors, "optim.").items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    for pid, entries in meta["optim_scalars"].items():
        for name, value in entries.items():
            # Adam and RAdam keep `step` as a 0-d float tensor; restore it the same way.
            state.setdefault(int(pid), {})[name] = torch.tensor(value, dtype=torch.float32)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def clamp_gradients(module: nn.Module, clip: float) -> None:
    """Clamp each gradient element to [-clip, clip] in place (torch's foreach kernels)."""
    nn.utils.clip_grad_value_(module.parameters(), clip)
