"""A discounted infinite-horizon tabular MDP, solved with a linear solve.

V^π = (I − γ P_π)^{-1} r_π, J(θ) = p₀ᵀ V^π, Q = R + γ P V^π, and the (unnormalised) discounted
state visitation d_π = (I − γ P_πᵀ)^{-1} p₀, so that the policy gradient theorem reads
∇J = Σ_s d_π(s) Σ_a π(a|s) Q(s,a) ∇log π(a|s).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from pgcheck.problems.base import ActionKind, Problem
from pgcheck.problems.policies import LinearSoftmax, SoftmaxPolicy, TabularSoftmax


@dataclass(eq=False)
class DiscountedMDP(Problem):
    """Infinite-horizon discounted MDP with stochastic transitions P [S, A, S]."""

    p0: Tensor
    P: Tensor
    R: Tensor
    gamma: float
    policy: SoftmaxPolicy
    theta0: Tensor
    name: str = "discounted-mdp"
    horizon: int = 0  # infinite: J is found by a linear solve, not by enumeration
    action_kind: ActionKind = field(default="categorical", init=False)
    enumerable: ClassVar[bool] = False

    @property
    def n_states(self) -> int:
        return int(self.P.shape[0])

    def _system(self, theta: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        pi = self.policy.probs(theta)
        p_pi = torch.einsum("sa,sap->sp", pi, self.P)
        r_pi = (pi * self.R).sum(-1)
        eye = torch.eye(self.P.shape[0], dtype=theta.dtype)
        return pi, eye - self.gamma * p_pi, r_pi

    def values(self, theta: Tensor) -> Tensor:
        """V^π = (I − γ P_π)^{-1} r_π [S]."""
        _, a, r_pi = self._system(theta)
        return torch.linalg.solve(a, r_pi)

    def J(self, theta: Tensor) -> Tensor:
        """J(θ) = Σ_s p₀(s) V^π(s)."""
        return self.p0 @ self.values(theta)

    def visitation(self, theta: Tensor) -> Tensor:
        """d_π(s) = Σ_t γ^t Pr(s_t = s): solves (I − γ P_πᵀ) d = p₀."""
        _, a, _ = self._system(theta)
        return torch.linalg.solve(a.T, self.p0)

    def grad_J_pgt(self, theta: Tensor) -> Tensor:
        """∇J = Σ_s d_π(s) Σ_a π(a|s) Q(s,a) ∇log π(a|s) (closed-form score, no autograd)."""
        theta = theta.detach()
        pi = self.policy.probs(theta)
        q = self.R + self.gamma * self.P @ self.values(theta)
        return torch.einsum(
            "s,sa,sa,sap->p", self.visitation(theta), pi, q, self.policy.score(theta)
        )


def random_discounted_mdp(
    seed: int = 0,
    *,
    n_states: int = 4,
    n_actions: int = 2,
    gamma: float = 0.9,
    policy: str = "linear",
    n_features: int = 3,
    name: str | None = None,
) -> DiscountedMDP:
    """A random discounted MDP with dense stochastic transitions."""
    g = torch.Generator().manual_seed(seed)
    S, A = n_states, n_actions
    p0 = torch.rand(S, generator=g, dtype=torch.float64) + 0.2
    P = torch.rand(S, A, S, generator=g, dtype=torch.float64) ** 2
    P = P / P.sum(-1, keepdim=True)
    R = torch.randn(S, A, generator=g, dtype=torch.float64)
    pol: SoftmaxPolicy
    if policy == "tabular":
        pol = TabularSoftmax(S, A)
    else:
        pol = LinearSoftmax(torch.randn(S, A, n_features, generator=g, dtype=torch.float64))
    theta0 = 0.8 * torch.randn(pol.n_params, generator=g, dtype=torch.float64)
    return DiscountedMDP(
        p0 / p0.sum(),
        P,
        R,
        gamma,
        pol,
        theta0,
        name or f"discounted-{policy}-S{S}A{A}-γ{gamma:g}-seed{seed}",
    )
