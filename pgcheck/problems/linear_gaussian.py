"""A multi-step linear-Gaussian control problem: J(θ) in closed form, ∇J three ways.

State s_t ∈ R^n (continuous), features x(s) = [s; 1], scalar action

    a_t ~ N(θ_wᵀ x(s_t), σ²)            (σ fixed, or learned as θ's last entry log σ)
    s_{t+1} = A s_t + B a_t + C ξ_t     (ξ_t ~ N(0, 1); C = 0 without noise)
    r_t = −(s_t − c)ᵀ Q (s_t − c) − ρ a_t²

for t = 0..H−1, from a start state s₀ drawn from a few points with probabilities p₀. Every
episode has length H, and J(θ) = Σ_{s₀} p₀(s₀) Σ_t γ^t E[r_t].

**Closed form.** Given s₀ the state is Gaussian with mean m_t and covariance P_t: with
w = θ_w[:n], b = θ_w[n], F = A + B wᵀ,

    ā_t = wᵀ m_t + b,  Var a_t = wᵀ P_t w + σ²,
    E[r_t] = −tr(Q P_t) − (m_t − c)ᵀ Q (m_t − c) − ρ (Var a_t + ā_t²),
    m_{t+1} = A m_t + B ā_t,  P_{t+1} = F P_t Fᵀ + σ² B Bᵀ + C Cᵀ.

**Quadrature.** With a_t = μ(s_t) + σ z_t every quantity of a trajectory is a function of
the standard normals (z_0..z_{H−1}, ξ_0..ξ_{H−2}). A tensor grid of Gauss–Hermite nodes
(n nodes per variable, weights multiplied) integrates exactly every polynomial of degree
≤ 2n − 1 in each variable. States and actions are linear in these variables, rewards
quadratic, the score (a−μ)/σ² x(s) and (a−μ)²/σ² − 1 of degree ≤ 3: every correct estimator
(score × polynomial return) is a polynomial of degree ≤ 4 per variable, so n ≥ 3 is exact;
the default n = 5 (degree 9) also covers the polynomial mistakes (σ for σ², a missing
log σ, a squared return: degree ≤ 6). Non-polynomial integrands (a density used in place of
a log-density) are integrated only approximately. :meth:`support` returns the grid as
trajectories with their weights, so :mod:`pgcheck.exact` computes E[∇L] as a weighted sum,
with no sampling noise.

∇J comes as (i) autograd of the closed form, (ii) the policy gradient theorem
E[Σ_t γ^t G_t ∇log π(a_t|s_t)] by quadrature with the analytic score (no autograd), and
(iii) central finite differences of the closed form.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from pgcheck.problems.base import ActionKind, Problem, Trajectories
from pgcheck.problems.gaussian import hermite_nodes

#: Gauss–Hermite nodes per variable: exact for polynomials of degree ≤ 9 in each variable
#: (correct estimators have degree ≤ 4, the polynomial mistakes ≤ 6; tested against 9 nodes).
N_NODES = 5
#: ½ log(2πe): the entropy of N(μ, σ²) is log σ + ½ log(2πe).
HALF_LOG_2PI_E = 0.5 * math.log(2 * math.pi * math.e)


@dataclass
class StateTrajectories(Trajectories):
    """Trajectories whose states are continuous vectors.

    ``observations`` [B, T, n] holds s_t; ``states`` holds the step index t (there is no
    finite set of states to index).
    """

    observations: Tensor = field(default_factory=lambda: torch.zeros(0))

    def select(self, rows: Tensor | list[int]) -> StateTrajectories:
        """The sub-batch of the given rows (in that order)."""
        idx = torch.as_tensor(rows, dtype=torch.long)
        base = super().select(idx)
        return StateTrajectories(
            base.states,
            base.actions,
            base.rewards,
            base.mask,
            base.lengths,
            base.log_prob_dynamics,
            base.gamma,
            self.observations[idx],
        )


@dataclass(eq=False)
class LinearGaussianProblem(Problem):
    """s' = A s + B a + C ξ, a ~ N(θᵀ[s; 1], σ²), r = −(s − c)ᵀQ(s − c) − ρ a², H steps."""

    A: Tensor  # [n, n]
    B: Tensor  # [n]
    C: Tensor  # [n]  (zeros: deterministic dynamics)
    Q: Tensor  # [n, n] symmetric positive semi-definite
    c: Tensor  # [n]  target state
    rho: float  # action cost
    starts: Tensor  # [S, n]
    p0: Tensor  # [S]
    sigma: float
    learn_sigma: bool
    theta0: Tensor
    gamma: float
    horizon: int
    name: str = "linear-gaussian"
    n_nodes: int = N_NODES
    action_kind: ActionKind = field(default="gaussian", init=False)
    #: states are vectors: losses get ``observations`` [B,T,n], not state indices
    continuous_states: ClassVar[bool] = True

    # ------------------------------------------------------------------ policy
    @property
    def n_states(self) -> int:
        """The number of start states (the state space itself is R^n)."""
        return self.starts.shape[0]

    @property
    def state_dim(self) -> int:
        """n, the dimension of s."""
        return self.A.shape[0]

    def features(self, s: Tensor) -> Tensor:
        """x(s) = [s; 1] along the last axis."""
        return torch.cat([s, torch.ones_like(s[..., :1])], dim=-1)

    def split(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        """(θ_w [n+1], σ as a 0-d tensor: exp(θ[-1]) if learned, else the fixed σ)."""
        d = self.state_dim + 1
        if self.learn_sigma:
            return theta[:d], torch.exp(theta[d])
        return theta[:d], torch.tensor(self.sigma, dtype=theta.dtype)

    def step_outputs(self, theta: Tensor, traj: Trajectories) -> tuple[dict, dict]:
        """Per-step policy outputs on a batch and their Jacobians w.r.t. θ (no autograd).

        mean_bt = θ_wᵀ x(s_bt), ∂mean/∂θ = [x(s_bt), 0]; std_bt = σ, ∂std/∂θ = [0, σ] if
        log σ is learned (else 0). Returns ({"mean", "std"} [B,T], same with a trailing P).
        """
        theta = theta.detach()
        w, sigma = self.split(theta)
        x = self.features(traj.observations)  # type: ignore[attr-defined]
        B, T = traj.mask.shape
        P = theta.numel()
        mean = x @ w
        std = sigma.expand(B, T).clone()
        jm = torch.zeros(B, T, P, dtype=torch.float64)
        jm[..., : w.numel()] = x
        js = torch.zeros(B, T, P, dtype=torch.float64)
        if self.learn_sigma:
            js[..., -1] = sigma
        return {"mean": mean, "std": std}, {"mean": jm, "std": js}

    def reward(self, s: Tensor, a: Tensor) -> Tensor:
        """r(s, a) = −(s − c)ᵀ Q (s − c) − ρ a²."""
        e = s - self.c
        return -torch.einsum("...i,ij,...j->...", e, self.Q, e) - self.rho * a**2

    # ------------------------------------------------------------------ exact J
    def J(self, theta: Tensor) -> Tensor:
        """J(θ) by propagating the state's mean and covariance (see the module docstring)."""
        w_all, sigma = self.split(theta)
        w, b = w_all[:-1], w_all[-1]
        F = self.A + torch.outer(self.B, w)
        noise = sigma**2 * torch.outer(self.B, self.B) + torch.outer(self.C, self.C)
        total = theta.new_zeros(())
        for s0, p in zip(self.starts, self.p0, strict=True):
            m = s0.to(theta.dtype)
            Pcov = torch.zeros(self.state_dim, self.state_dim, dtype=theta.dtype)
            for t in range(self.horizon):
                a_mean = w @ m + b
                a_var = w @ Pcov @ w + sigma**2
                e = m - self.c
                r = -torch.trace(self.Q @ Pcov) - e @ self.Q @ e - self.rho * (a_var + a_mean**2)
                total = total + p * self.gamma**t * r
                m = self.A @ m + self.B * a_mean
                Pcov = F @ Pcov @ F.T + noise
        return total

    def entropy_objective(self, theta: Tensor) -> Tensor:
        """E[Σ_t γ^t H(π(·|s_t))] = Σ_t γ^t (log σ + ½ log 2πe): σ does not depend on s."""
        _, sigma = self.split(theta)
        return sum(self.gamma**t for t in range(self.horizon)) * (torch.log(sigma) + HALF_LOG_2PI_E)

    # ------------------------------------------------------------------ score and PGT
    def score(self, theta: Tensor, obs: Tensor, actions: Tensor) -> Tensor:
        """∇_θ log N(a; θ_wᵀx(s), σ²) = [(a − μ)/σ² x(s), ((a − μ)/σ)² − 1 (if log σ learned)]."""
        w, sigma = self.split(theta.detach())
        x = self.features(obs)
        u = actions - x @ w
        parts = [(u / sigma**2)[..., None] * x]
        if self.learn_sigma:
            parts.append(((u / sigma) ** 2 - 1)[..., None])
        return torch.cat(parts, dim=-1)

    def grad_J_pgt(self, theta: Tensor) -> Tensor:
        """∇J = E[Σ_t γ^t G_t ∇log π(a_t|s_t)] by Gauss–Hermite quadrature, analytic score."""
        traj, weights = self.support(theta)
        sc = self.score(theta, traj.observations, traj.actions)  # [K, T, P]
        w_t = traj.discounts * traj.reward_to_go  # [K, T]
        return torch.einsum("k,kt,ktp->p", weights, w_t, sc)

    # ------------------------------------------------------------------ trajectories
    def _rollout(self, theta: Tensor, s0: Tensor, z: Tensor, xi: Tensor) -> StateTrajectories:
        """Trajectories from start states s0 [K,n] and standard normals z [K,H], xi [K,H]."""
        w, sigma = self.split(theta.detach())
        K, H = z.shape
        obs = torch.empty(K, H, self.state_dim, dtype=torch.float64)
        actions = torch.empty(K, H, dtype=torch.float64)
        rewards = torch.empty(K, H, dtype=torch.float64)
        s = s0
        for t in range(H):
            a = self.features(s) @ w + sigma * z[:, t]
            obs[:, t], actions[:, t], rewards[:, t] = s, a, self.reward(s, a)
            s = s @ self.A.T + a[:, None] * self.B + xi[:, t, None] * self.C
        return StateTrajectories(
            torch.arange(H).repeat(K, 1),
            actions,
            rewards,
            torch.ones(K, H, dtype=torch.float64),
            torch.full((K,), H, dtype=torch.long),
            torch.zeros(K, dtype=torch.float64),
            self.gamma,
            obs,
        )

    @property
    def noisy(self) -> bool:
        """Whether the dynamics have noise (C ≠ 0)."""
        return bool(self.C.abs().max() > 0)

    def support(self, theta: Tensor | None = None) -> tuple[StateTrajectories, Tensor]:
        """The quadrature grid as trajectories at θ, and their weights p₀(s₀) Π w_k.

        One axis of ``n_nodes`` nodes per action noise z_t (H of them) and, with noise,
        per ξ_t for t < H − 1 (ξ_{H−1} moves only s_H, which earns no reward).
        """
        theta = (self.theta0 if theta is None else theta).detach()
        z_nodes, w_nodes = hermite_nodes(self.n_nodes)
        H = self.horizon
        n_xi = H - 1 if self.noisy else 0
        idx = torch.tensor(
            list(itertools.product(range(self.n_nodes), repeat=H + n_xi)), dtype=torch.long
        ).reshape(-1, H + n_xi)
        grid_w = w_nodes[idx].prod(-1)
        z = z_nodes[idx[:, :H]]
        xi = torch.zeros_like(z)
        xi[:, :n_xi] = z_nodes[idx[:, H:]]
        S, K = self.n_states, idx.shape[0]
        s0 = self.starts.repeat_interleave(K, dim=0)
        traj = self._rollout(theta, s0, z.repeat(S, 1), xi.repeat(S, 1))
        weights = (self.p0[:, None] * grid_w[None, :]).reshape(-1)
        return traj, weights

    def sample(
        self, n: int, theta: Tensor | None = None, generator: torch.Generator | None = None
    ) -> StateTrajectories:
        """Draw n episodes by Monte Carlo (for tests of the quadrature)."""
        theta = (self.theta0 if theta is None else theta).detach()
        s_idx = torch.multinomial(self.p0, n, replacement=True, generator=generator)
        z = torch.randn(n, self.horizon, generator=generator, dtype=torch.float64)
        xi = torch.randn(n, self.horizon, generator=generator, dtype=torch.float64)
        return self._rollout(theta, self.starts[s_idx], z, xi)


def linear_gaussian(
    seed: int = 0,
    *,
    state_dim: int = 2,
    n_starts: int = 2,
    horizon: int = 3,
    gamma: float = 0.9,
    sigma: float = 0.6,
    learn_sigma: bool = True,
    noise: float = 0.0,
    n_nodes: int = N_NODES,
    name: str | None = None,
) -> LinearGaussianProblem:
    """A random instance: stable-ish A, a random B, PSD Q, a target c ≠ 0, θ₀ ≠ 0.

    ``noise`` scales the dynamics noise direction C (0: deterministic dynamics).
    """
    g = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    n = state_dim
    A = 0.6 * torch.eye(n, dtype=torch.float64) + 0.3 * randn(n, n)
    B = randn(n)
    C = noise * randn(n)
    L = randn(n, n)
    Q = 0.5 * (L @ L.T) / n + 0.2 * torch.eye(n, dtype=torch.float64)
    c = randn(n)
    starts = randn(n_starts, n)
    p0 = torch.rand(n_starts, generator=g, dtype=torch.float64) + 0.3
    theta = 0.4 * randn(n + 1)
    if learn_sigma:
        theta = torch.cat([theta, torch.tensor([math.log(sigma)], dtype=torch.float64)])
    tag = f"lqg-n{n}H{horizon}g{gamma:g}{'-σ' if learn_sigma else ''}{'-noise' if noise else ''}"
    return LinearGaussianProblem(
        A,
        B,
        C,
        Q,
        c,
        0.3,
        starts,
        p0 / p0.sum(),
        sigma,
        learn_sigma,
        theta,
        gamma,
        horizon,
        name or f"{tag}-seed{seed}",
        n_nodes,
    )
