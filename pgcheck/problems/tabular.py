"""Finite-horizon tabular MDPs with random termination, solved exactly.

The episode: s₀ ~ p₀; at step t the agent draws a_t ~ π_θ(·|s_t), receives r_t = R(s_t, a_t),
then the episode ends with probability 1 − Σ_{s'} P(s'|s_t,a_t) or moves to s_{t+1} ~ P(·|s_t,a_t);
it is cut after H steps. The objective is J(θ) = E[Σ_t γ^t r_t].

∇J is available three independent ways: autograd through backward induction
(:meth:`FiniteHorizonMDP.grad_J`), the policy gradient theorem with the state distribution
d_t and Q_t and the closed-form score (:meth:`FiniteHorizonMDP.grad_J_pgt`), and central
finite differences of J (:meth:`FiniteHorizonMDP.grad_J_fd`). Every trajectory can be
enumerated (:meth:`FiniteHorizonMDP.trajectories`) with its exact probability.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import torch
from torch import Tensor

from pgcheck.problems.base import (
    ActionKind,
    CategoricalProblem,
    Trajectories,
)
from pgcheck.problems.policies import LinearSoftmax, MLPSoftmax, SoftmaxPolicy, TabularSoftmax


@dataclass(eq=False)
class FiniteHorizonMDP(CategoricalProblem):
    """A tabular MDP with horizon H, sub-stochastic transitions (termination) and a softmax policy.

    Attributes:
        p0: initial state distribution [S].
        P: transitions [S, A, S]; 1 − P[s, a].sum() is the probability that the episode ends.
        R: rewards [S, A] (the reward for taking a in s).
        horizon: H, the largest number of steps.
        gamma: discount factor γ ∈ [0, 1].
        policy: a :class:`~pgcheck.policies.SoftmaxPolicy`.
        theta0: the parameters at which checks are made.
    """

    p0: Tensor
    P: Tensor
    R: Tensor
    horizon: int
    gamma: float
    policy: SoftmaxPolicy
    theta0: Tensor
    name: str = "mdp"
    action_kind: ActionKind = field(default="categorical", init=False)

    @property
    def n_states(self) -> int:
        return self.P.shape[0]

    @property
    def n_actions(self) -> int:
        return self.P.shape[1]

    # ------------------------------------------------------------------ exact solution
    def q_and_v(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        """Backward induction: V_H = 0, Q_t = R + γ P V_{t+1}, V_t(s) = Σ_a π(a|s) Q_t(s,a).

        Returns Q [H, S, A] and V [H, S] (differentiable in θ).
        """
        pi = self.policy.probs(theta)
        v_next = torch.zeros(self.n_states, dtype=theta.dtype)
        qs, vs = [], []
        for _ in range(self.horizon):
            q = self.R + self.gamma * self.P @ v_next
            v = (pi * q).sum(-1)
            qs.append(q)
            vs.append(v)
            v_next = v
        return torch.stack(qs[::-1]), torch.stack(vs[::-1])

    def J(self, theta: Tensor) -> Tensor:
        """J(θ) = Σ_s p₀(s) V_0(s)."""
        return self.p0 @ self.q_and_v(theta)[1][0]

    def state_distribution(self, theta: Tensor) -> Tensor:
        """d_t(s) = Pr(s_t = s, episode still running): d_0 = p₀, d_{t+1} = Σ d_t π P. [H, S]."""
        pi = self.policy.probs(theta)
        d = [self.p0]
        for _ in range(self.horizon - 1):
            d.append(torch.einsum("s,sa,sap->p", d[-1], pi, self.P))
        return torch.stack(d)

    def grad_J_pgt(self, theta: Tensor) -> Tensor:
        """Policy gradient theorem: ∇J = Σ_t γ^t Σ_s d_t(s) Σ_a π(a|s) Q_t(s,a) ∇log π(a|s)."""
        theta = theta.detach()
        q, _ = self.q_and_v(theta)
        d = self.state_distribution(theta)
        pi = self.policy.probs(theta)
        score = self.policy.score(theta)
        disc = self.gamma ** torch.arange(self.horizon, dtype=theta.dtype)
        return torch.einsum("t,ts,sa,tsa,sap->p", disc, d, pi, q, score)

    # ------------------------------------------------------------------ trajectories
    @cached_property
    def _trajectories(self) -> Trajectories:
        return enumerate_trajectories(self)

    def trajectories(self) -> Trajectories:
        """Every possible trajectory, padded to H steps, with its dynamics log-probability."""
        return self._trajectories

    def log_prob_policy(self, theta: Tensor, traj: Trajectories | None = None) -> Tensor:
        """Σ_t log π_θ(a_t|s_t) over the real steps of each trajectory [N]."""
        traj = traj or self.trajectories()
        logp = self.policy.log_probs(theta)[traj.states, traj.actions]
        return (logp * traj.mask).sum(-1)

    def prob(self, theta: Tensor, traj: Trajectories | None = None) -> Tensor:
        """p_θ(τ) = p₀(s₀) Π_t π_θ(a_t|s_t) P(s_{t+1}|s_t,a_t) for each enumerated τ [N]."""
        traj = traj or self.trajectories()
        return torch.exp(traj.log_prob_dynamics + self.log_prob_policy(theta, traj))

    def support(self, theta: Tensor | None = None) -> tuple[Trajectories, Tensor]:
        """Every trajectory and its probability p_θ(τ) (detached)."""
        theta = (self.theta0 if theta is None else theta).detach()
        traj = self.trajectories()
        return traj, self.prob(theta, traj)

    def J_enumerated(self, theta: Tensor) -> Tensor:
        """J(θ) = Σ_τ p_θ(τ) R(τ) by enumeration (a fourth, independent route to J)."""
        traj = self.trajectories()
        return self.prob(theta, traj) @ traj.returns

    def sample(
        self, n: int, theta: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Trajectories:
        """Draw n trajectories by simulation (for Monte Carlo estimates)."""
        theta = self.theta0 if theta is None else theta.detach()
        pi = self.policy.probs(theta)
        H, S = self.horizon, self.n_states
        cont = torch.cat([self.P, (1 - self.P.sum(-1, keepdim=True)).clamp_min(0)], dim=-1)
        states = torch.zeros(n, H, dtype=torch.long)
        actions = torch.zeros(n, H, dtype=torch.long)
        mask = torch.zeros(n, H, dtype=torch.float64)
        dyn = torch.zeros(n, dtype=torch.float64)
        s = torch.multinomial(self.p0, n, replacement=True, generator=generator)
        dyn += torch.log(self.p0[s])
        alive = torch.ones(n, dtype=torch.bool)
        for t in range(H):
            states[:, t] = s
            a = torch.multinomial(pi[s], 1, generator=generator).squeeze(1)
            actions[:, t] = torch.where(alive, a, torch.zeros_like(a))
            mask[:, t] = alive.double()
            if t == H - 1:
                break
            nxt = torch.multinomial(cont[s, a], 1, generator=generator).squeeze(1)
            dyn += torch.where(alive, torch.log(cont[s, a, nxt]), torch.zeros_like(dyn))
            ended = nxt == S
            alive = alive & ~ended
            s = torch.where(alive, nxt, s)
        lengths = mask.sum(-1).long()
        rewards = self.R[states, actions] * mask
        return Trajectories(states, actions, rewards, mask, lengths, dyn, self.gamma)


def enumerate_trajectories(mdp: FiniteHorizonMDP) -> Trajectories:
    """Depth-first enumeration of every trajectory with non-zero dynamics probability."""
    H, S, A = mdp.horizon, mdp.n_states, mdp.n_actions
    P, p0 = mdp.P.tolist(), mdp.p0.tolist()
    rows: list[tuple[list[int], list[int], float]] = []

    def extend(states: list[int], actions: list[int], logp: float) -> None:
        s = states[-1]
        for a in range(A):
            t = len(actions)
            if t == H - 1:
                rows.append((states, actions + [a], logp))
                continue
            end = 1.0 - sum(P[s][a])
            if end > 1e-12:
                rows.append((states, actions + [a], logp + math.log(end)))
            for s2 in range(S):
                if P[s][a][s2] > 0:
                    extend(states + [s2], actions + [a], logp + math.log(P[s][a][s2]))

    for s0 in range(S):
        if p0[s0] > 0:
            extend([s0], [], math.log(p0[s0]))

    n = len(rows)
    states = torch.zeros(n, H, dtype=torch.long)
    actions = torch.zeros(n, H, dtype=torch.long)
    mask = torch.zeros(n, H, dtype=torch.float64)
    dyn = torch.zeros(n, dtype=torch.float64)
    for i, (ss, aa, lp) in enumerate(rows):
        T = len(aa)
        states[i, :T] = torch.tensor(ss[:T])
        states[i, T:] = ss[T - 1]  # padding repeats the last real state (a real, non-zero log π)
        actions[i, :T] = torch.tensor(aa)
        mask[i, :T] = 1.0
        dyn[i] = lp
    lengths = mask.sum(-1).long()
    rewards = mdp.R[states, actions] * mask
    return Trajectories(states, actions, rewards, mask, lengths, dyn, mdp.gamma)


# ---------------------------------------------------------------------- factories
def _sparse_transitions(
    g: torch.Generator, S: int, A: int, fanout: int, termination: float
) -> Tensor:
    P = torch.zeros(S, A, S, dtype=torch.float64)
    for s in range(S):
        for a in range(A):
            nxt = torch.randperm(S, generator=g)[:fanout]
            w = torch.rand(len(nxt), generator=g, dtype=torch.float64) + 0.2
            end = termination * (0.5 + torch.rand(1, generator=g, dtype=torch.float64).item())
            P[s, a, nxt] = (1 - end) * w / w.sum()
    return P


def random_mdp(
    seed: int = 0,
    *,
    n_states: int = 3,
    n_actions: int = 2,
    horizon: int = 3,
    gamma: float = 0.9,
    policy: str = "linear",
    n_features: int = 3,
    hidden: int = 3,
    termination: float = 0.3,
    fanout: int = 2,
    theta_scale: float = 0.8,
    name: str | None = None,
) -> FiniteHorizonMDP:
    """A random small MDP with action-dependent rewards, random termination and a
    non-uniform policy of the given kind (``"tabular"``, ``"linear"`` or ``"mlp"``)."""
    g = torch.Generator().manual_seed(seed)
    S, A = n_states, n_actions
    p0 = torch.rand(S, generator=g, dtype=torch.float64) + 0.3
    p0 = p0 / p0.sum()
    P = _sparse_transitions(g, S, A, min(fanout, S), termination)
    R = torch.randn(S, A, generator=g, dtype=torch.float64) + 0.5
    pol: SoftmaxPolicy
    if policy == "tabular":
        pol = TabularSoftmax(S, A)
    elif policy == "linear":
        pol = LinearSoftmax(torch.randn(S, A, n_features, generator=g, dtype=torch.float64))
    elif policy == "mlp":
        inputs = torch.randn(S, n_features, generator=g, dtype=torch.float64)
        pol = MLPSoftmax(inputs, hidden, A)
    else:
        raise ValueError(f"unknown policy kind {policy!r}: use 'tabular', 'linear' or 'mlp'")
    theta0 = theta_scale * torch.randn(pol.n_params, generator=g, dtype=torch.float64)
    return FiniteHorizonMDP(
        p0,
        P,
        R,
        horizon,
        gamma,
        pol,
        theta0,
        name or f"mdp-{policy}-S{S}A{A}H{horizon}-γ{gamma:g}-seed{seed}",
    )


def categorical_bandit(
    seed: int = 0, *, n_actions: int = 4, theta_scale: float = 0.8, name: str | None = None
) -> FiniteHorizonMDP:
    """A one-step problem: one state, A actions with fixed rewards, softmax over θ ∈ R^A."""
    g = torch.Generator().manual_seed(seed)
    R = torch.randn(1, n_actions, generator=g, dtype=torch.float64) + 1.0
    pol = TabularSoftmax(1, n_actions)
    theta0 = theta_scale * torch.randn(n_actions, generator=g, dtype=torch.float64)
    return FiniteHorizonMDP(
        torch.ones(1, dtype=torch.float64),
        torch.zeros(1, n_actions, 1, dtype=torch.float64),
        R,
        1,
        1.0,
        pol,
        theta0,
        name or f"bandit-categorical-A{n_actions}-seed{seed}",
    )
