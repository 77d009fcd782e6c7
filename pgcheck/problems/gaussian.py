"""A contextual Gaussian bandit with a quadratic reward: J(θ) in closed form.

Context s ~ p₀ with features x(s) ∈ R^d; action a ~ N(θᵀx(s), σ²) (the lecture's Gaussian
policy); reward r(s, a) = −(a − c_s)². Then

    J(θ) = −Σ_s p₀(s) [(θᵀx(s) − c_s)² + σ²].

With ``learn_sigma`` the parameters are (θ, log σ). Expectations over the action are exact
with Gauss–Hermite quadrature for polynomial integrands (and accurate to ~1e-15 for smooth
ones), which gives the policy gradient theorem's integral and the learner's expected gradient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from pgcheck.problems.base import (
    ActionKind,
    GaussianProblem,
    Trajectories,
)

N_NODES = 24


def hermite_nodes(n: int = N_NODES) -> tuple[Tensor, Tensor]:
    """Nodes z_k and weights w_k with Σ_k w_k f(z_k) ≈ E_{z~N(0,1)}[f(z)] (Σ w_k = 1)."""
    z, w = np.polynomial.hermite_e.hermegauss(n)
    return torch.tensor(z, dtype=torch.float64), torch.tensor(w / math.sqrt(2 * math.pi))


@dataclass(eq=False)
class GaussianBandit(GaussianProblem):
    """π_θ(a|s) = N(a; θᵀx(s), σ²), r(s,a) = −(a − c_s)²."""

    p0: Tensor  # [S]
    x: Tensor  # [S, d]
    c: Tensor  # [S]
    sigma: float
    learn_sigma: bool
    theta0: Tensor
    name: str = "gaussian-bandit"
    gamma: float = 1.0
    horizon: int = 1
    n_nodes: int = N_NODES
    action_kind: ActionKind = field(default="gaussian", init=False)

    @property
    def n_states(self) -> int:
        return self.x.shape[0]

    def mean_std(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        """μ_s = θᵀx(s) [S] and σ (a tensor [S], from log σ = θ[-1] if learned)."""
        d = self.x.shape[1]
        mean = self.x @ theta[:d]
        if self.learn_sigma:
            std = torch.exp(theta[d]).expand(self.n_states)
        else:
            std = torch.full((self.n_states,), self.sigma, dtype=theta.dtype)
        return mean, std

    def J(self, theta: Tensor) -> Tensor:
        """J(θ) = −Σ_s p₀(s) [(μ_s − c_s)² + σ²]."""
        mean, std = self.mean_std(theta)
        return -(self.p0 * ((mean - self.c) ** 2 + std**2)).sum()

    def grad_J_closed(self, theta: Tensor) -> Tensor:
        """By hand: ∂J/∂θ = −2 Σ_s p₀(s)(μ_s − c_s) x(s); ∂J/∂log σ = −2σ²."""
        mean, std = self.mean_std(theta.detach())
        g = -2 * ((self.p0 * (mean - self.c))[:, None] * self.x).sum(0)
        if self.learn_sigma:
            g = torch.cat([g, (-2 * std[0] ** 2).reshape(1)])
        return g

    def score(self, theta: Tensor, states: Tensor, actions: Tensor) -> Tensor:
        """∇ log N(a; μ, σ²): (a − μ)/σ² · x(s) and, if learned, (a − μ)²/σ² − 1 for log σ."""
        mean, std = self.mean_std(theta.detach())
        mu, sd = mean[states], std[states]
        parts = [((actions - mu) / sd**2)[..., None] * self.x[states]]
        if self.learn_sigma:
            parts.append((((actions - mu) / sd) ** 2 - 1)[..., None])
        return torch.cat(parts, dim=-1)

    def rewards_of(self, states: Tensor, actions: Tensor) -> Tensor:
        """r(s, a) = −(a − c_s)²."""
        return -((actions - self.c[states]) ** 2)

    def grad_J_pgt(self, theta: Tensor) -> Tensor:
        """∇J = Σ_s p₀(s) E_{a~π(·|s)}[r(s,a) ∇log π(a|s)], by Gauss–Hermite quadrature."""
        traj, weights = self.support(theta)
        states, actions = traj.states[:, 0], traj.actions[:, 0]
        r = self.rewards_of(states, actions)
        return ((weights * r)[:, None] * self.score(theta, states, actions)).sum(0)

    def support(self, theta: Tensor | None = None) -> tuple[Trajectories, Tensor]:
        """Quadrature 'trajectories' (one step each) at θ and their weights p₀(s) w_k."""
        theta = (self.theta0 if theta is None else theta).detach()
        z, w = hermite_nodes(self.n_nodes)
        mean, std = self.mean_std(theta)
        S, K = self.n_states, len(z)
        states = torch.arange(S).repeat_interleave(K)
        actions = (mean[:, None] + std[:, None] * z[None, :]).reshape(-1)
        weights = (self.p0[:, None] * w[None, :]).reshape(-1)
        ones = torch.ones(S * K, 1, dtype=torch.float64)
        traj = Trajectories(
            states[:, None],
            actions[:, None],
            self.rewards_of(states, actions)[:, None],
            ones,
            torch.ones(S * K, dtype=torch.long),
            torch.log(self.p0[states]),
            self.gamma,
        )
        return traj, weights

    def sample(
        self, n: int, theta: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Trajectories:
        """Draw n one-step episodes."""
        theta = (self.theta0 if theta is None else theta).detach()
        mean, std = self.mean_std(theta)
        s = torch.multinomial(self.p0, n, replacement=True, generator=generator)
        eps = torch.randn(n, generator=generator, dtype=torch.float64)
        a = mean[s] + std[s] * eps
        ones = torch.ones(n, 1, dtype=torch.float64)
        return Trajectories(
            s[:, None],
            a[:, None],
            self.rewards_of(s, a)[:, None],
            ones,
            torch.ones(n, dtype=torch.long),
            torch.log(self.p0[s]),
            self.gamma,
        )


def gaussian_bandit(
    seed: int = 0,
    *,
    n_contexts: int = 3,
    n_features: int = 2,
    sigma: float = 0.7,
    learn_sigma: bool = True,
    name: str | None = None,
) -> GaussianBandit:
    """A random contextual Gaussian bandit (learning θ and, by default, log σ)."""
    g = torch.Generator().manual_seed(seed)
    p0 = torch.rand(n_contexts, generator=g, dtype=torch.float64) + 0.3
    x = torch.randn(n_contexts, n_features, generator=g, dtype=torch.float64)
    c = torch.randn(n_contexts, generator=g, dtype=torch.float64)
    theta = 0.5 * torch.randn(n_features, generator=g, dtype=torch.float64)
    if learn_sigma:
        theta = torch.cat([theta, torch.tensor([math.log(sigma)], dtype=torch.float64)])
    return GaussianBandit(
        p0 / p0.sum(),
        x,
        c,
        sigma,
        learn_sigma,
        theta,
        name
        or f"gaussian-bandit-S{n_contexts}d{n_features}{'-σ' if learn_sigma else ''}-seed{seed}",
    )
