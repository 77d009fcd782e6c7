"""Episodic tabular MDPs (every episode ends), solved exactly by linear solves.

The transitions P[s, a, s'] are sub-stochastic: 1 − Σ_{s'} P(s'|s,a) > 0 is the probability
that the episode ends after taking a in s, so episodes end with probability one and γ = 1 is
allowed. With π(a|s) a table, P_π(s, s') = Σ_a π(a|s) P(s'|s,a) and r_π(s) = Σ_a π(a|s) R(s,a):

* V^π = (I − γ P_π)^{-1} r_π (the Bellman equation V = r_π + γ P_π V, solved);
* Q^π(s,a) = R(s,a) + γ Σ_{s'} P(s'|s,a) V^π(s');
* d_γ(s) = Σ_t γ^t Pr(s_t = s) solves (I − γ P_πᵀ) d = p₀ (for γ = 1: the expected number of
  visits of s in one episode);
* J(θ) = Σ_s p₀(s) V^π(s), and the policy gradient theorem
  ∇J = Σ_s d_γ(s) Σ_a π(a|s) Q^π(s,a) ∇log π(a|s).

The functions below take plain tables (tensors), so the checks of notebook 08 can call them as
references; :func:`random_episodic_mdp` builds an instance as a
:class:`~pgcheck.problems.discounted.DiscountedMDP` (whose solves are the same formulas).
"""

from __future__ import annotations

import torch
from torch import Tensor

from pgcheck.problems.discounted import DiscountedMDP
from pgcheck.problems.policies import LinearSoftmax, SoftmaxPolicy, TabularSoftmax


def policy_transitions(P: Tensor, pi: Tensor) -> Tensor:
    """P_π(s, s') = Σ_a π(a|s) P(s'|s,a), a table [S, S]."""
    return torch.einsum("sa,sap->sp", pi, P)


def state_values(P: Tensor, R: Tensor, pi: Tensor, gamma: float) -> Tensor:
    """V^π = (I − γ P_π)^{-1} r_π with r_π(s) = Σ_a π(a|s) R(s,a), a vector [S]."""
    eye = torch.eye(P.shape[0], dtype=P.dtype)
    return torch.linalg.solve(eye - gamma * policy_transitions(P, pi), (pi * R).sum(-1))


def q_values(P: Tensor, R: Tensor, pi: Tensor, gamma: float) -> Tensor:
    """Q^π(s,a) = R(s,a) + γ Σ_{s'} P(s'|s,a) V^π(s'), a table [S, A]."""
    return R + gamma * P @ state_values(P, R, pi, gamma)


def visitation(p0: Tensor, P: Tensor, pi: Tensor, gamma: float) -> Tensor:
    """d_γ(s) = Σ_t γ^t Pr(s_t = s): the solution of (I − γ P_πᵀ) d = p₀, a vector [S]."""
    eye = torch.eye(P.shape[0], dtype=P.dtype)
    return torch.linalg.solve(eye - gamma * policy_transitions(P, pi).T, p0)


def theorem_gradient(d: Tensor, pi: Tensor, q: Tensor, score: Tensor) -> Tensor:
    """Σ_s d(s) Σ_a π(a|s) q(s,a) score(s,a,:), a vector [n_params]."""
    return torch.einsum("s,sa,sa,sap->p", d, pi, q, score)


def random_episodic_mdp(
    seed: int = 0,
    *,
    n_states: int = 4,
    n_actions: int = 3,
    gamma: float = 0.9,
    termination: float = 0.2,
    policy: str = "linear",
    n_features: int = 3,
    theta_scale: float = 0.8,
    name: str | None = None,
) -> DiscountedMDP:
    """A random episodic MDP: dense transitions, termination probability in
    [termination/2, 3·termination/2] after every (s, a), rewards N(0.5, 1), and a non-uniform
    softmax policy (``"linear"`` over random features x(s,a), or ``"tabular"``)."""
    if not 0.0 < termination < 2.0 / 3.0:
        raise ValueError("termination must lie in (0, 2/3) so that every episode ends")
    g = torch.Generator().manual_seed(seed)
    S, A = n_states, n_actions
    p0 = torch.rand(S, generator=g, dtype=torch.float64) + 0.2
    P = torch.rand(S, A, S, generator=g, dtype=torch.float64) ** 2 + 0.02
    end = termination * (0.5 + torch.rand(S, A, 1, generator=g, dtype=torch.float64))
    P = (1 - end) * P / P.sum(-1, keepdim=True)
    R = torch.randn(S, A, generator=g, dtype=torch.float64) + 0.5
    pol: SoftmaxPolicy
    if policy == "tabular":
        pol = TabularSoftmax(S, A)
    elif policy == "linear":
        pol = LinearSoftmax(torch.randn(S, A, n_features, generator=g, dtype=torch.float64))
    else:
        raise ValueError(f"unknown policy kind {policy!r}: use 'linear' or 'tabular'")
    theta0 = theta_scale * torch.randn(pol.n_params, generator=g, dtype=torch.float64)
    return DiscountedMDP(
        p0 / p0.sum(),
        P,
        R,
        gamma,
        pol,
        theta0,
        name or f"episodic-{policy}-S{S}A{A}-γ{gamma:g}-seed{seed}",
    )
