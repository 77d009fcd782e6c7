"""What every problem with an exact answer provides, and the padded trajectory batch.

A problem declares its interface here (gymnasium's ``core.Env`` is the model): a name, the
nominal parameters θ₀, γ, a horizon, the kind of action, the exact J(θ) and ∇J three
independent ways. Problems whose trajectories can be enumerated (``enumerable``) also give
``support(θ)``: every trajectory with its probability p_θ(τ) (or quadrature nodes and weights
for continuous actions), which is what :mod:`pgcheck.exact` needs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor

from pgcheck.problems.policies import SoftmaxPolicy


def finite_differences(f: Callable[[Tensor], Tensor], theta: Tensor, eps: float = 1e-5) -> Tensor:
    """Central differences: ∂f/∂θ_i ≈ (f(θ + ε e_i) − f(θ − ε e_i)) / 2ε, in float64."""
    theta = theta.detach().to(torch.float64)
    grad = torch.empty_like(theta)
    with torch.no_grad():
        for i in range(theta.numel()):
            step = torch.zeros_like(theta)
            step[i] = eps
            grad[i] = (f(theta + step) - f(theta - step)) / (2 * eps)
    return grad


def discounted_cumsum(rewards: Tensor, gamma: float) -> Tensor:
    """G_t = Σ_{t'≥t} γ^{t'-t} r_{t'} along the last axis (zeros stay zeros after the end)."""
    out = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[..., 0])
    for t in range(rewards.shape[-1] - 1, -1, -1):
        running = rewards[..., t] + gamma * running
        out[..., t] = running
    return out


@dataclass
class Trajectories:
    """A batch of B trajectories padded to T steps.

    Padded steps (after an episode ended) have ``mask`` 0 and reward 0; their state repeats
    the last real state and their action is 0, so log π there is *not* zero.
    """

    states: Tensor  # [B, T] long
    actions: Tensor  # [B, T] long (categorical) or float64 (continuous)
    rewards: Tensor  # [B, T] float64
    mask: Tensor  # [B, T] float64
    lengths: Tensor  # [B] long
    log_prob_dynamics: Tensor  # [B]: log p₀(s₀) + Σ_t log P(s_{t+1}|s_t,a_t) (+ log of ending)
    gamma: float

    def __len__(self) -> int:
        return self.states.shape[0]

    @property
    def discounts(self) -> Tensor:
        """γ^t for t = 0..T-1 [T]."""
        return self.gamma ** torch.arange(self.states.shape[1], dtype=torch.float64)

    @property
    def returns(self) -> Tensor:
        """R(τ) = Σ_t γ^t r_t [B]."""
        return self.rewards @ self.discounts

    @property
    def reward_to_go(self) -> Tensor:
        """G_t = Σ_{t'≥t} γ^{t'-t} r_{t'} [B, T] (0 on padding)."""
        return discounted_cumsum(self.rewards, self.gamma) * self.mask

    def select(self, rows: Tensor | list[int]) -> Trajectories:
        """The sub-batch of the given rows (in that order)."""
        idx = torch.as_tensor(rows, dtype=torch.long)
        return Trajectories(
            self.states[idx],
            self.actions[idx],
            self.rewards[idx],
            self.mask[idx],
            self.lengths[idx],
            self.log_prob_dynamics[idx],
            self.gamma,
        )


ActionKind = Literal["categorical", "gaussian"]


class Problem(ABC):
    """A problem with an exact objective J(θ) and its gradient three independent ways.

    Subclasses implement ``J`` (differentiable), ``grad_J_pgt`` (policy gradient theorem,
    no autograd); ``grad_J`` is autograd of ``J`` and ``grad_J_fd`` central finite
    differences of it. Enumerable problems also implement :meth:`support`.
    """

    #: whether every trajectory can be listed (with its probability) by :meth:`support`
    enumerable: ClassVar[bool] = True

    name: str
    theta0: Tensor
    gamma: float
    horizon: int
    action_kind: ActionKind

    @property
    @abstractmethod
    def n_states(self) -> int:
        """The number of (discrete) states or contexts."""

    @abstractmethod
    def J(self, theta: Tensor) -> Tensor:
        """The exact objective J(θ) = E_{τ~p_θ}[Σ_t γ^t r_t], differentiable in θ."""

    def support(self, theta: Tensor | None = None) -> tuple[Trajectories, Tensor]:
        """Every trajectory (padded) and its probability p_θ(τ) (θ = θ₀ by default)."""
        raise TypeError(f"problem {self.name!r} has no finite set of trajectories")

    def grad_J(self, theta: Tensor | None = None) -> Tensor:
        """∇J by autograd through the exact J."""
        theta = (self.theta0 if theta is None else theta).detach().clone().requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(self.J(theta), theta)
        return grad

    @abstractmethod
    def grad_J_pgt(self, theta: Tensor) -> Tensor:
        """∇J by the policy gradient theorem in closed form (no autograd through J)."""

    def grad_J_fd(self, theta: Tensor, eps: float = 1e-5) -> Tensor:
        """Central finite differences of the exact J."""
        return finite_differences(self.J, theta, eps)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class CategoricalProblem(Problem):
    """A finite-horizon problem with a softmax policy over discrete actions."""

    policy: SoftmaxPolicy

    @property
    @abstractmethod
    def n_actions(self) -> int:
        """The number of actions A."""

    @abstractmethod
    def q_and_v(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        """Q_t(s, a) [H, S, A] and V_t(s) [H, S] by backward induction, differentiable in θ."""


class GaussianProblem(Problem):
    """A problem with a Gaussian policy N(μ_θ(s), σ_θ(s)²) over continuous actions."""

    @abstractmethod
    def mean_std(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        """μ_θ(s) and σ_θ(s) per state or context [S], differentiable in θ."""
