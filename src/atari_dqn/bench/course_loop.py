"""The course project's one-file training loop, transcribed: the baseline row of ``bench
train``.

It runs as a row in a process of its own (:func:`atari_dqn.bench.train.course_loop_row`), with
the defaults a plain ``python main.py`` gets, so the ratios of the other rows are over the
course project's loop.
"""

from __future__ import annotations

from collections.abc import Iterator


def course_loop_segments(
    *, env_id: str, warmup: int, measure_from: int, total: int, epsilon: float, seed: int = 0
) -> Iterator[int]:
    """A faithful single-file transcription of the course project's training loop, as bench
    segments.

    As the course project's ``main.py``: one env, a deque of the last 5 frames, batch-1 acting
    from a float tensor stack, a replay of 5-frame uint8 stacks pushed every step
    (``make_folded_state``), ``torch.randint`` sampling, an update every 4 steps with batch 32
    (policy and target forwards, smooth L1, backward, ``clamp_(-1, 1)``, per-tensor Adam
    6.25e-5), ``loss.item()``, target sync every 10,000 steps. Preprocessing is atari-dqn's env
    with a stack of 1, so the emulator cost is the same on both sides and the difference is the
    loop. ε is held at ``epsilon`` (the course project decays it) so the acting cost is that of
    the bulk of a run. Yields every 100 steps, like a training row: the steps that count once
    ``measure_from`` has passed.
    """
    import random
    from collections import deque

    import torch
    import torch.nn.functional as F

    from atari_dqn.envs import EnvSettings, make_env, resolve_actions
    from atari_dqn.networks import QNetwork

    actions = resolve_actions(env_id, "course")
    env = make_env(EnvSettings(env_id, actions), training=True, frame_stack=1)
    device = torch.device("cpu")
    capacity = total + 1
    g = torch.Generator().manual_seed(seed)
    policy, target = QNetwork(len(actions), generator=g), QNetwork(len(actions))
    target.load_state_dict(policy.state_dict())
    optimizer = torch.optim.Adam(policy.parameters(), lr=6.25e-5, eps=1.5e-4)
    m_states = torch.zeros((capacity, 5, 84, 84), dtype=torch.uint8)
    m_actions = torch.zeros((capacity, 1), dtype=torch.long)
    m_rewards = torch.zeros((capacity, 1), dtype=torch.int8)
    m_dones = torch.zeros((capacity, 1), dtype=torch.bool)
    pos, size = 0, 0
    r = random.Random(seed)
    obs_queue: deque[torch.Tensor] = deque(maxlen=5)
    done = True
    for step in range(total):
        if step and step % 100 == 0:
            yield 100 if step - 100 >= measure_from else 0
        if done:
            obs, _ = env.reset(seed=seed) if step == 0 else env.reset()
            frame = torch.from_numpy(obs[-1]).view(1, 84, 84)
            for _ in range(5):
                obs_queue.append(frame)
        training = size > warmup
        state = torch.cat(list(obs_queue)[1:]).unsqueeze(0).to(device).float()
        if r.random() > epsilon:
            with torch.no_grad():
                action = policy(state).max(1).indices.item()
        else:
            action = r.randint(0, len(actions) - 1)
        obs, reward, terminated, truncated, _ = env.step(action)
        done = terminated or truncated
        obs_queue.append(torch.from_numpy(obs[-1]).view(1, 84, 84))
        m_states[pos] = torch.cat(list(obs_queue)).unsqueeze(0)
        m_actions[pos, 0], m_rewards[pos, 0], m_dones[pos, 0] = action, int(float(reward)), done
        pos = (pos + 1) % capacity
        size = max(size, pos)
        if step % 4 == 0 and training:
            idx = torch.randint(0, high=size, size=(32,))
            b_state = m_states[idx, :4].to(device).float()
            b_next = m_states[idx, 1:].to(device).float()
            b_action = m_actions[idx].to(device)
            b_reward = m_rewards[idx].to(device).float()
            b_done = m_dones[idx].to(device).float()
            values = policy(b_state).gather(1, b_action)
            values_next = target(b_next).max(1).values.detach()
            expected = (0.99 * values_next.unsqueeze(1)) * (1.0 - b_done) + b_reward
            loss = F.smooth_l1_loss(values, expected)
            optimizer.zero_grad()
            loss.backward()
            for param in policy.parameters():
                if param.grad is not None:  # always, after backward(); for the type checker
                    param.grad.data.clamp_(-1, 1)
            optimizer.step()
            loss.item()
        if step % 10_000 == 0:
            target.load_state_dict(policy.state_dict())
    last = (total - 1) // 100 * 100
    yield total - last if last >= measure_from else 0
