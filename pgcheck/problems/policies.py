"""Softmax policies over a finite state set, each with a closed-form score function.

Every policy maps a flat parameter vector θ (float64) to a table of logits [S, A] and gives
the score ∇_θ log π_θ(a|s) [S, A, P] by hand (no autograd), so the policy gradient theorem
can be evaluated independently of autograd. ``logits_jacobian`` gives ∂ logits / ∂θ
[S, A, P], used to turn gradients with respect to the logits into gradients w.r.t. θ.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


class SoftmaxPolicy:
    """Base class: π_θ(a|s) = exp(h_θ(s,a)) / Σ_b exp(h_θ(s,b)) with logits h."""

    n_states: int
    n_actions: int
    kind: str = "softmax"

    @property
    def n_params(self) -> int:  # pragma: no cover - abstract
        """P, the number of parameters θ."""
        raise NotImplementedError

    def logits(self, theta: Tensor) -> Tensor:  # pragma: no cover - abstract
        """The logits h_θ(s, a) as a table [S, A]."""
        raise NotImplementedError

    def logits_jacobian(self, theta: Tensor) -> Tensor:  # pragma: no cover - abstract
        """∂h_θ(s, a)/∂θ as a table [S, A, P]."""
        raise NotImplementedError

    def probs(self, theta: Tensor) -> Tensor:
        """π_θ(a|s) as a table [S, A]."""
        return torch.softmax(self.logits(theta), dim=-1)

    def log_probs(self, theta: Tensor) -> Tensor:
        """log π_θ(a|s) as a table [S, A]."""
        return torch.log_softmax(self.logits(theta), dim=-1)

    def score(self, theta: Tensor) -> Tensor:
        """∇_θ log π(a|s) = ∂h(s,a)/∂θ − Σ_b π(b|s) ∂h(s,b)/∂θ, a table [S, A, P]."""
        jac = self.logits_jacobian(theta)
        pi = self.probs(theta).detach()
        return jac - torch.einsum("sb,sbp->sp", pi, jac)[:, None, :]


@dataclass
class TabularSoftmax(SoftmaxPolicy):
    """One logit per state and action: h_θ(s,a) = θ[s·A + a]."""

    n_states: int
    n_actions: int
    kind: str = "tabular"

    @property
    def n_params(self) -> int:
        return self.n_states * self.n_actions

    def logits(self, theta: Tensor) -> Tensor:
        return theta.reshape(self.n_states, self.n_actions)

    def logits_jacobian(self, theta: Tensor) -> Tensor:
        eye = torch.eye(self.n_params, dtype=theta.dtype)
        return eye.reshape(self.n_states, self.n_actions, self.n_params)


@dataclass
class LinearSoftmax(SoftmaxPolicy):
    """The lecture's softmax-linear policy over state-action features: h_θ(s,a) = θᵀx(s,a)."""

    features: Tensor  # [S, A, d]
    kind: str = "linear"

    @property
    def n_states(self) -> int:  # type: ignore[override]
        return self.features.shape[0]

    @property
    def n_actions(self) -> int:  # type: ignore[override]
        return self.features.shape[1]

    @property
    def n_params(self) -> int:
        return self.features.shape[2]

    def logits(self, theta: Tensor) -> Tensor:
        return self.features @ theta

    def logits_jacobian(self, theta: Tensor) -> Tensor:
        return self.features.to(theta.dtype)


@dataclass
class MLPSoftmax(SoftmaxPolicy):
    """A one-hidden-layer tanh network on state inputs x(s): h = W₂ tanh(W₁x + b₁) + b₂.

    θ is the concatenation of W₁ [H, k], b₁ [H], W₂ [A, H], b₂ [A] (row-major).
    """

    inputs: Tensor  # [S, k]
    hidden: int
    n_actions: int
    kind: str = "mlp"

    @property
    def n_states(self) -> int:  # type: ignore[override]
        return self.inputs.shape[0]

    @property
    def n_params(self) -> int:
        k, h, a = self.inputs.shape[1], self.hidden, self.n_actions
        return h * k + h + a * h + a

    def unpack(self, theta: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Split θ into (W₁, b₁, W₂, b₂)."""
        k, h, a = self.inputs.shape[1], self.hidden, self.n_actions
        sizes = [h * k, h, a * h, a]
        w1, b1, w2, b2 = torch.split(theta, sizes)
        return w1.reshape(h, k), b1, w2.reshape(a, h), b2

    def logits(self, theta: Tensor) -> Tensor:
        w1, b1, w2, b2 = self.unpack(theta)
        hidden = torch.tanh(self.inputs @ w1.T + b1)
        return hidden @ w2.T + b2

    def logits_jacobian(self, theta: Tensor) -> Tensor:
        """∂h(s,a)/∂θ by the chain rule written out (backpropagation by hand)."""
        w1, b1, w2, _ = self.unpack(theta.detach())
        x = self.inputs.to(theta.dtype)
        u = torch.tanh(x @ w1.T + b1)  # [S, H]
        n_s, (n_h, n_k), n_a = x.shape[0], w1.shape, self.n_actions
        eye_a = torch.eye(n_a, dtype=theta.dtype)
        # ∂h_a/∂W₂[c, j] = δ_ac u_j ; ∂h_a/∂b₂[c] = δ_ac
        d_w2 = torch.einsum("ac,sj->sacj", eye_a, u).reshape(n_s, n_a, n_a * n_h)
        d_b2 = eye_a.expand(n_s, n_a, n_a)
        # ∂h_a/∂z_j = W₂[a, j] (1 − u_j²) ; ∂z_j/∂W₁[j, i] = x_i ; ∂z_j/∂b₁[j] = 1
        d_z = w2[None, :, :] * (1 - u**2)[:, None, :]  # [S, A, H]
        d_w1 = torch.einsum("saj,si->saji", d_z, x).reshape(n_s, n_a, n_h * n_k)
        return torch.cat([d_w1, d_z, d_w2, d_b2], dim=-1)
