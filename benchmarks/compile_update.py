"""Would `torch.compile` (inductor, CPU) make a training step faster on this host?

Issue #28 asks for `torch.compile` of the update and of acting "where it measures faster on
these CPUs". This script answers that question before any of it goes into the package: it
builds each piece twice from the package's own network (`atari_dqn.networks.QNetwork`,
channels-last as the presets run it), once eager and once compiled, and times the two in
interleaved blocks in one process (so a noisy neighbour hits both alike), after a warm-up that
includes the compilation.

Pieces, shaped as the presets run them:
- dqn-update: the `laptop-v1` preset's update: batch 32, online(s), online(s') and target(s')
  (Double DQN), Huber TD loss, gradients clamped to [-1, 1], fused Adam. The loss and the
  clamp+Adam step are compiled as two functions (backward runs between them).
- dqn-act-8: one greedy forward pass over 8 stacks (8 envs).
- pqn-update: one PQN minibatch: 128 stacks (128 envs x 32 steps / 32 minibatches), the
  LayerNorm network, squared error to given λ-returns, gradient-norm clip 10, RAdam.
- pqn-act-128: one forward pass over 128 stacks.

Run from the repository's venv: `python benchmarks/compile_update.py [--threads 2]
[--blocks 8] [--reps 10]`. It prints the host line, the compile time of each piece and the
median ms of each piece eager and compiled, and the ratio eager/compiled (>1: compiled faster).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from atari_dqn.host import host_info, host_line
from atari_dqn.networks import QNetwork

Step = Callable[[], object]


def stacks(batch: int) -> torch.Tensor:
    return torch.randint(0, 256, (batch, 4, 84, 84), dtype=torch.uint8)


def update_step(
    loss: Callable[[], torch.Tensor],
    apply: Callable[[], None],
    optimizer: torch.optim.Optimizer,
    compiled: bool,
) -> Step:
    """loss, backward, apply: as the package's `--compile` does, backward between the two."""
    loss_fn = torch.compile(loss) if compiled else loss
    apply_fn = torch.compile(apply) if compiled else apply

    def step() -> None:
        value = loss_fn()
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        apply_fn()

    return step


def dqn_update(compiled: bool) -> Step:
    torch.manual_seed(0)
    online, target = QNetwork(4, channels_last=True), QNetwork(4, channels_last=True)
    target.requires_grad_(False)
    optimizer = torch.optim.Adam(online.parameters(), lr=1e-4, eps=1e-8, fused=True)
    obs, next_obs = stacks(32), stacks(32)
    actions, rewards, discounts = torch.randint(0, 4, (32,)), torch.rand(32), torch.rand(32)

    def loss() -> torch.Tensor:
        q = online(obs).gather(1, actions[:, None]).squeeze(1)
        with torch.no_grad():
            best = online(next_obs).argmax(1, keepdim=True)
            y = rewards + discounts * target(next_obs).gather(1, best).squeeze(1)
        return F.huber_loss(q, y)

    def apply() -> None:
        for p in online.parameters():
            assert p.grad is not None
            p.grad.clamp_(-1, 1)
        optimizer.step()

    return update_step(loss, apply, optimizer, compiled)


def pqn_update(compiled: bool) -> Step:
    torch.manual_seed(0)
    net = QNetwork(4, channels_last=True, layer_norm=True)
    optimizer = torch.optim.RAdam(net.parameters(), lr=2.5e-4)
    obs, actions, returns = stacks(128), torch.randint(0, 4, (128,)), torch.rand(128)

    def loss() -> torch.Tensor:
        q = net(obs).gather(1, actions[:, None]).squeeze(1)
        return 0.5 * ((q - returns) ** 2).mean()

    def apply() -> None:
        torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
        optimizer.step()

    return update_step(loss, apply, optimizer, compiled)


def act(batch: int, layer_norm: bool) -> Callable[[bool], Step]:
    def build(compiled: bool) -> Step:
        torch.manual_seed(0)
        net = QNetwork(4, channels_last=True, layer_norm=layer_norm)
        obs = stacks(batch)

        def forward() -> torch.Tensor:
            with torch.no_grad():
                return net(obs).argmax(1)

        return torch.compile(forward) if compiled else forward

    return build


PIECES: dict[str, Callable[[bool], Step]] = {
    "dqn-update": dqn_update,
    "dqn-act-8": act(8, layer_norm=False),
    "pqn-update": pqn_update,
    "pqn-act-128": act(128, layer_norm=True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--blocks", type=int, default=8, help="timed blocks per variant")
    parser.add_argument("--reps", type=int, default=10, help="calls per block")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(host_line(host_info()), f"{args.threads} threads")
    print(
        f"{'piece':<12} {'compile s':>9} {'eager ms':>9} {'compiled ms':>11} {'eager/compiled':>14}"
    )
    for name, build in PIECES.items():
        eager, compiled = build(False), build(True)
        start = time.perf_counter()
        compiled()  # compiles
        compile_s = time.perf_counter() - start
        for _ in range(3):
            eager()
            compiled()
        times: dict[str, list[float]] = {"eager": [], "compiled": []}
        for _ in range(args.blocks):  # interleaved, so drifts in the host's speed hit both
            for label, fn in (("eager", eager), ("compiled", compiled)):
                start = time.perf_counter()
                for _ in range(args.reps):
                    fn()
                times[label].append((time.perf_counter() - start) / args.reps * 1e3)
        e, c = statistics.median(times["eager"]), statistics.median(times["compiled"])
        print(f"{name:<12} {compile_s:>9.1f} {e:>9.2f} {c:>11.2f} {e / c:>14.2f}")


if __name__ == "__main__":
    main()
