# @save
"""The course's fastest CartPole agent: actor-critic with GAE(λ) on a numpy-vectorised env.

Defined in notebook 09 (cells starting with ``#@save``). One file, readable top to bottom:

* ``gym.make_vec(env_id, n_envs, vectorization_mode="vector_entry_point")`` steps ``n_envs``
  CartPoles in one numpy call, with no per-step wrapper. Gymnasium 1.x vector envs use
  *next-step autoreset*: the step after an episode ends ignores the action, returns the first
  observation of a new episode with reward 0, and is not a transition: ``valid`` masks it out.
* Acting: one numpy forward pass for all envs, and for two actions one uniform draw per env,
  a = [u < P(a=1|s)] with P(a=1|s) = sigmoid(logit₁ − logit₀).
* Update (no recomputation): one critic pass over the rollout's T+1 observations gives
  V(s_t) and V(s_{t+1}); GAE(λ) by the backward recursion
  δ_t = r_t + γ(1 − terminated_t)V(s_{t+1}) − V(s_t),  Â_t = δ_t + γλ(1 − done_t)Â_{t+1};
  a truncated episode (the 500-step limit) is bootstrapped from its final observation,
  a terminated one is not. Then one policy loss −mean(valid·Ã_t·log π(a_t|s_t)) with
  standardised advantages Ã, and a few value regression steps onto Â_t + V(s_t).
"""

import time

import gymnasium as gym
import numpy as np
import torch
from torch import nn


def make_mlp(n_in, n_out, hidden=32):
    """A one-hidden-layer tanh MLP: x ↦ W₂ tanh(W₁x + b₁) + b₂."""
    return nn.Sequential(nn.Linear(n_in, hidden), nn.Tanh(), nn.Linear(hidden, n_out))


def numpy_actor(policy):
    """A snapshot of a two-action ``policy`` as a batched numpy sampler ``act(obs [N,4], rng)``.

    a = 1 where u < sigmoid(logit₁ − logit₀), u ~ U(0,1): one draw per env.
    """
    W1 = policy[0].weight.detach().numpy().astype(np.float64)
    b1 = policy[0].bias.detach().numpy().astype(np.float64)
    W2 = policy[2].weight.detach().numpy().astype(np.float64)
    b2 = policy[2].bias.detach().numpy().astype(np.float64)
    w, b = W2[1] - W2[0], b2[1] - b2[0]  # logit difference

    def act(obs, rng):
        d = np.tanh(obs @ W1.T + b1) @ w + b
        return (rng.random(len(obs)) * (1.0 + np.exp(-d)) < 1.0).astype(np.int64)

    return act


def gae_numpy(rewards, values, next_values, terminated, dones, gamma, lam):
    """GAE(λ) for a rollout [T, N] by the backward recursion (A_T = 0 beyond the rollout).

    δ_t = r_t + γ(1 − terminated_t)V(s_{t+1}) − V(s_t);  Â_t = δ_t + γλ(1 − done_t)Â_{t+1}.
    """
    deltas = rewards + gamma * (1.0 - terminated) * next_values - values
    carry = gamma * lam * (1.0 - dones)
    adv = np.zeros_like(deltas)
    last = np.zeros(deltas.shape[1])
    for t in range(len(deltas) - 1, -1, -1):
        last = deltas[t] + carry[t] * last
        adv[t] = last
    return adv


class EpisodeLog:
    """Undiscounted episode returns, with the env steps and CPU seconds when each ended."""

    def __init__(self, window=20, threshold=475.0):
        self.returns, self.steps, self.cpu = [], [], []
        self.window, self.threshold = window, threshold
        self.start = time.process_time()
        self.solved_episode = None  # index of the first episode that completes a solved window

    def record(self, returns, total_steps):
        now = time.process_time() - self.start
        for R in returns:
            self.returns.append(float(R))
            self.steps.append(int(total_steps))
            self.cpu.append(now)
            n = len(self.returns)
            if (
                self.solved_episode is None
                and n >= self.window
                and sum(self.returns[-self.window :]) >= self.threshold * self.window
            ):
                self.solved_episode = n - 1

    @property
    def total_steps(self):
        return self.steps[-1] if self.steps else 0

    @property
    def solved(self):
        return self.solved_episode is not None


def train_vector_ac(
    seed=0,
    total_steps=100_000,
    env_id="CartPole-v1",
    n_envs=16,
    n_steps=16,
    lr=3e-2,
    value_lr=3e-2,
    gamma=0.99,
    lam=0.95,
    hidden=32,
    epochs=1,
    clip=0.2,
    bootstrap_truncation=True,
    stop_when_solved=True,
    threshold=475.0,
):
    """Train the vectorised actor-critic; returns (log, policy, value_net).

    ``epochs`` > 1 turns the update into PPO: after the first (plain actor-critic) step on a
    rollout, further steps on the same rollout maximise the clipped surrogate
    min(ρÃ, clip(ρ, 1 − clip, 1 + clip)Ã) with ρ = π_θ(a|s)/π_old(a|s).
    ``bootstrap_truncation=False`` treats a truncation like a termination (no V(s_T)).
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    envs = gym.make_vec(env_id, n_envs, vectorization_mode="vector_entry_point")
    obs, _ = envs.reset(seed=seed)
    obs_dim = envs.single_observation_space.shape[0]
    policy, value_net = make_mlp(obs_dim, 2, hidden), make_mlp(obs_dim, 1, hidden)
    optimizer = torch.optim.Adam(
        [
            {"params": policy.parameters(), "lr": lr},
            {"params": value_net.parameters(), "lr": value_lr},
        ],
    )
    log = EpisodeLog(threshold=threshold)
    T, N = n_steps, n_envs
    obs_buf = np.zeros((T + 1, N, obs_dim))
    act_buf = np.zeros((T, N), dtype=np.int64)
    rew_buf, term_buf, done_buf, valid_buf = (np.zeros((T, N)) for _ in range(4))
    valid = np.ones(N)  # False on the reset step that follows an episode's end
    ep_return, steps = np.zeros(N), 0
    while steps < total_steps and not (stop_when_solved and log.solved):
        act = numpy_actor(policy)
        obs_buf[0] = obs
        for t in range(T):
            action = act(obs, rng)
            obs, reward, terminated, truncated, _ = envs.step(action)
            done = terminated | truncated
            act_buf[t], rew_buf[t], valid_buf[t] = action, reward * valid, valid
            term_buf[t] = terminated if bootstrap_truncation else done
            done_buf[t] = done
            obs_buf[t + 1] = obs
            ep_return += reward * valid
            if done.any():
                log.record(ep_return[done], steps + (t + 1) * N)
                ep_return[done] = 0.0
            valid = 1.0 - done
        steps += T * N
        # ---- update: one critic pass, GAE, one policy step, a few value steps
        all_obs = torch.as_tensor(obs_buf, dtype=torch.float32)
        v_all = value_net(all_obs).squeeze(-1)  # V(s_0..s_T): the only critic pass
        v = v_all.detach().double().numpy()
        adv = gae_numpy(rew_buf, v[:-1], v[1:], term_buf, done_buf, gamma, lam) * valid_buf
        n_valid = valid_buf.sum()
        mean = adv.sum() / n_valid
        std = np.sqrt((((adv - mean) * valid_buf) ** 2).sum() / n_valid) + 1e-8
        w = torch.as_tensor((adv - mean) / std * valid_buf / n_valid, dtype=torch.float32)
        target = torch.as_tensor(adv + v[:-1], dtype=torch.float32)
        m = torch.as_tensor(valid_buf / n_valid, dtype=torch.float32)
        actions = torch.as_tensor(act_buf)[..., None]
        old_logp = None
        for epoch in range(epochs):  # epoch 0 is the plain actor-critic step
            if epoch > 0:
                v_all = value_net(all_obs).squeeze(-1)
            logp = torch.log_softmax(policy(all_obs[:-1]), -1).gather(-1, actions).squeeze(-1)
            if old_logp is None:
                old_logp = logp.detach()
            ratio = torch.exp(logp - old_logp)
            surrogate = torch.minimum(ratio * w, torch.clamp(ratio, 1 - clip, 1 + clip) * w)
            loss = -surrogate.sum() + (m * (v_all[:-1] - target) ** 2).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    envs.close()
    return log, policy, value_net
