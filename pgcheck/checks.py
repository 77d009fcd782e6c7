"""The public check functions, with their signatures and documentation.

Each is a thin front to a registered check (:data:`pgcheck.registry.REGISTRY`), so that the
same check can also be split into ``measure`` and ``judge`` by an isolated grader.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pgcheck import (  # noqa: F401  (importing registers the checks)
    log_prob_check,
    return_checks,
    rollout_checks,
    score_estimator_check,
    score_function_check,
    trajectory_check,
)
from pgcheck.pseudo_loss import check_pseudo_loss
from pgcheck.registry import REGISTRY
from pgcheck.report import Report

__all__ = ["check_log_prob", "check_pseudo_loss", "check_returns", "check_rollout",
           "check_score_estimator", "check_score_function", "check_trajectory_log_prob",
           "check_value_loss"]


def check_log_prob(fn: Callable[..., Any], policy: str = "softmax", *, timeout: float = 5.0,
                   require_grad: bool = True, **options: Any) -> Report:
    """Check a hand-written log π against torch.distributions and its normalisation.

    ``policy="softmax"``: ``fn(logits [N,A], actions [N]) -> [N]`` with
    log π(a) = z_a − log Σ_b exp z_b; ``policy="gaussian"``: ``fn(mean [N], std [N],
    actions [N]) -> [N]`` with log N(a; μ, σ²) = −(a−μ)²/(2σ²) − log σ − ½ log 2π.
    Also checks Σ_a π(a) = 1 (∫ p(a) da = 1), the gradient, and numerical stability.
    """
    return REGISTRY["log_prob"](fn, policy=policy, timeout=timeout, require_grad=require_grad,
                                **options)


def check_score_function(fn: Callable[..., Any], policy: str = "softmax_linear", *,
                         timeout: float = 5.0, **options: Any) -> Report:
    """Check a hand-derived score ∇_θ log π against autograd and finite differences.

    ``"softmax_linear"``: ``fn(theta [d], features [A,d], action) -> [d]``, the score
    x(s,a) − Σ_b π(b|s) x(s,b). ``"gaussian_linear"``: ``fn(theta [d], x [d], action, sigma)
    -> [d]``, the score (a − θᵀx) x / σ². ``"gaussian_linear_sigma"``: the same arguments,
    returning [d+1] with ∂/∂σ = ((a − θᵀx)² − σ²)/σ³ last.
    """
    return REGISTRY["score_function"](fn, policy=policy, timeout=timeout, **options)


def check_score_estimator(fn: Callable[..., Any], family: str = "gaussian", *, f: Any = None,
                          timeout: float = 5.0, **options: Any) -> Report:
    """Check an estimator of ∇_θ E_{x~p_θ}[f(x)] computed from samples.

    ``fn(samples [N], theta, f) -> estimate shaped like theta``. Families: ``"bernoulli"``
    (θ a logit), ``"categorical"`` (θ logits [K]), ``"gaussian"`` (θ = [μ, log σ]). The exact
    expectation of the estimator is compared with the exact gradient; an empirical mean and
    standard error over fixed-seed batches is reported too.
    """
    return REGISTRY["score_estimator"](fn, family=family, f=f, timeout=timeout, **options)


def check_returns(fn: Callable[..., Any], kind: str = "reward_to_go", *, timeout: float = 5.0,
                  **options: Any) -> Report:
    """Check a returns function ``fn(rewards [T], gamma) -> ...`` on several reward sequences.

    ``kind="return"``: R = Σ_t γ^t r_t; ``"reward_to_go"``: G_t = Σ_{t'≥t} γ^{t'−t} r_{t'};
    ``"discounted_reward_to_go"``: γ^t G_t.
    """
    return REGISTRY["returns"](fn, kind=kind, timeout=timeout, **options)


def check_trajectory_log_prob(fn: Callable[..., Any], *, timeout: float = 5.0,
                              require_grad: bool = False, **options: Any) -> Report:
    """Check the log-probability of one trajectory against the exact sum.

    ``fn(states [T+1] long, actions [T] long, log_p0 [S], log_pi [S,A], log_P [S,A,S])`` must
    return the scalar log p(τ) = log p(s_0) + Σ_t [log π(a_t|s_t) + log P(s_{t+1}|s_t,a_t)]
    (a tensor or a float). When the result is a tensor on the autograd graph, its gradient
    must be the count of each (s_t, a_t) pair (for log_pi), of each transition (for log_P)
    and the one-hot of s_0 (for log_p0); ``require_grad=True`` rejects a float result.
    """
    return REGISTRY["trajectory_log_prob"](fn, timeout=timeout, require_grad=require_grad,
                                           **options)


def check_rollout(fn: Callable[..., Any], *, timeout: float = 5.0, **options: Any) -> Report:
    """Check a collection loop ``fn(env, policy, rng) -> (observations [T,S], actions [T],
    rewards [T])`` on small environments whose every step is known.

    It must reset once (unseeded) at the start, record the observation the action was taken
    in, record the sampled action, and stop on ``terminated or truncated`` (gymnasium 1.x).
    """
    return REGISTRY["rollout"](fn, timeout=timeout, **options)


def check_value_loss(fn: Callable[..., Any], *, timeout: float = 5.0, **options: Any) -> Report:
    """Check a masked mean squared error ``fn(values [B,T], targets [B,T], mask [B,T])``:
    L = Σ mask·(V − G)² / Σ mask, with no gradient from padded steps."""
    return REGISTRY["value_loss"](fn, timeout=timeout, **options)
