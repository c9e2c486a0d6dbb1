"""DrQ's random shift of sampled stacks: the shift by hand, its range, its seeding, and that
it is off (nothing drawn, nothing changed) unless asked for."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from atari_dqn.augment import RandomShift, shift
from atari_dqn.bench.update import fixed_batch
from atari_dqn.build import build_agent, build_learner, build_online
from atari_dqn.config import Config
from atari_dqn.networks import QNetwork


def test_shift_of_a_hand_built_stack() -> None:
    # A 5x5 frame holding 10·y + x, and a second frame 100 above it: one stack of 2 frames.
    frame = torch.tensor([[10 * y + x for x in range(5)] for y in range(5)], dtype=torch.uint8)
    stack = torch.stack([frame, frame + 100])[None]  # (1, 2, 5, 5)
    # pad 4, window corner (3, 6) in the padded image: shift (dy, dx) = (3 - 4, 6 - 4) = (-1, 2)
    # rows read clamp(y - 1) = 0, 0, 1, 2, 3; columns clamp(x + 2) = 2, 3, 4, 4, 4 (the edge
    # repeated, as replicate padding does)
    out = shift(stack, torch.tensor([[3, 6]]), pad=4)
    expected = torch.tensor(
        [
            [2, 3, 4, 4, 4],
            [2, 3, 4, 4, 4],
            [12, 13, 14, 14, 14],
            [22, 23, 24, 24, 24],
            [32, 33, 34, 34, 34],
        ],
        dtype=torch.uint8,
    )
    assert out.dtype == torch.uint8 and out.shape == (1, 2, 5, 5)
    assert torch.equal(out[0, 0], expected)
    assert torch.equal(out[0, 1], expected + 100)  # the same window for every frame of a stack
    # the centre window (pad, pad) is the stack itself
    assert torch.equal(shift(stack, torch.tensor([[4, 4]]), pad=4), stack)


def test_shift_is_replicate_padding_then_a_crop() -> None:
    """Against the textbook form (DrQ: ReplicationPad2d(4), then a random 84x84 crop)."""
    g = torch.Generator().manual_seed(0)
    obs = torch.randint(0, 256, (6, 4, 84, 84), dtype=torch.uint8, generator=g)
    offsets = torch.randint(0, 9, (6, 2), generator=g)
    padded = F.pad(obs.float(), (4, 4, 4, 4), mode="replicate")
    reference = torch.stack(
        [padded[i, :, r : r + 84, c : c + 84] for i, (r, c) in enumerate(offsets.tolist())]
    )
    assert torch.equal(shift(obs, offsets, pad=4).float(), reference)


def test_shifts_are_within_4_pixels_and_cover_all_81() -> None:
    aug = RandomShift(torch.Generator().manual_seed(1), pad=4)
    offsets = aug.offsets(2000)
    assert offsets.min() >= 0 and offsets.max() <= 8  # shift = offset - 4 in [-4, 4]
    assert len({tuple(o) for o in offsets.tolist()}) == 81
    # every output stack is its input moved by one (dy, dx) in [-4, 4]²
    obs = torch.randint(0, 256, (8, 4, 84, 84), dtype=torch.uint8)
    out = aug(obs)
    for i in range(8):
        found = [
            (dy, dx)
            for dy in range(-4, 5)
            for dx in range(-4, 5)
            if torch.equal(out[i], shift(obs[i : i + 1], torch.tensor([[dy + 4, dx + 4]]), 4)[0])
        ]
        assert found


def _agent(augment: str, seed: int = 5):
    config = Config(augment=augment, double=True)
    online = build_online(
        config, 3, torch.device("cpu"), generator=torch.Generator().manual_seed(0)
    )
    return build_agent(
        config, 3, torch.device("cpu"), online=online, augment=torch.Generator().manual_seed(seed)
    )


def test_an_update_trains_on_independently_shifted_s_and_s_prime() -> None:
    """The augmented update is the plain update of the batch shifted by the generator's next
    two draws: first the windows of s, then others for s' (independent, as DrQ)."""
    batch = fixed_batch(3, 8)
    augmented, plain = _agent("shift", seed=5), _agent("none")
    assert plain.augment is None and augmented.augment is not None
    draws = RandomShift(torch.Generator().manual_seed(5), pad=4)
    s_offsets, next_offsets = draws.offsets(8), draws.offsets(8)
    assert not torch.equal(s_offsets, next_offsets)
    shifted = dataclasses.replace(
        batch,
        obs=shift(torch.from_numpy(batch.obs), s_offsets, 4).numpy(),
        next_obs=shift(torch.from_numpy(batch.next_obs), next_offsets, 4).numpy(),
    )
    a, b = augmented.update(batch), plain.update(shifted)
    assert torch.equal(a.loss, b.loss) and torch.equal(a.priority, b.priority)
    for p, q in zip(augmented.online.parameters(), plain.online.parameters(), strict=True):
        assert torch.equal(p, q)


def test_agent_state_holds_the_shift_generator_and_restores_it() -> None:
    a = _agent("shift", seed=5)
    a.update(fixed_batch(3, 4))
    tensors, meta = a.state()
    assert "augment_generator" in tensors
    b = _agent("shift", seed=99)
    b.load_state(tensors, meta)
    assert a.augment is not None and b.augment is not None
    assert torch.equal(a.augment.offsets(16), b.augment.offsets(16))
    assert "augment_generator" not in _agent("none").state()[0]


def test_off_the_seed_streams_are_those_before_augmentation() -> None:
    """Seven SeedSequence children now; the first six are what they were, so a run without
    --augment starts from the same weights, env seeds and generators as before."""
    config = Config(seed=5, total_steps=100, warmup_steps=10, eval_every=50)
    learner = build_learner(config)
    assert learner.agent.augment is None
    old = np.random.SeedSequence(5).spawn(6)  # the streams as they were
    expected = QNetwork(
        len(learner.actions),
        generator=torch.Generator().manual_seed(int(old[2].generate_state(1)[0])),
    )
    for p, q in zip(learner.online.parameters(), expected.parameters(), strict=True):
        assert torch.equal(p, q)
    env_seed, eval_seed = (int(s.generate_state(1)[0] >> 1) for s in old[:2])
    assert (learner.settings.env_seed, learner.settings.eval_seed) == (env_seed, eval_seed)
    assert learner.loop_rng.random() == np.random.default_rng(old[4]).random()
    assert learner.replay_rng.random() == np.random.default_rng(old[3]).random()
    learner.eval_env.close()
