"""Check a learner's assembly of the policy gradient theorem against the exact ∇J.

``check_theorem_gradient(fn)`` (registered as ``"theorem_gradient"``) calls
``fn(p0, P, R, pi, score, gamma)`` with ``p0`` [S], ``P`` [S, A, S] (sub-stochastic: every
episode ends), ``R`` [S, A], ``pi`` [S, A] = π_θ(a|s), ``score`` [S, A, n] =
∇_θ log π_θ(a|s) and a float ``gamma`` ∈ (0, 1], on episodic MDPs with softmax-linear and
tabular-softmax policies, and compares the result with the exact gradient ∇_θ J(θ) of
J(θ) = Σ_s p₀(s) V^π(s), obtained by autograd through the linear solve — independently of the
theorem, which says

    ∇J = Σ_s d_γ(s) Σ_a π(a|s) Q^π(s,a) ∇log π(a|s),   d_γ = (I − γ P_πᵀ)^{-1} p₀.

It recognises the undiscounted visitation with γ < 1 (the expectation of the common estimator
Σ_t G_t ∇log π(a_t|s_t), which is not ∇J), the missing π(a|s) weight, V instead of Q (whose
sum is exactly zero), a normalised visitation, transposed transitions, Q computed without γ,
the optimal Q*, π² weights, p₀ where d belongs, the visitation left out, and a flipped sign.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import torch
from torch import Tensor

from pgcheck.checks.base import DEFAULT_TIMEOUT, Check, finite_rows, run_check
from pgcheck.checks.q_values import optimal_q
from pgcheck.checks.tables import (
    RULES,
    TableCase,
    TableMeasurement,
    as_array,
    judge_tables,
    measure_tables,
)
from pgcheck.diagnosis.mistakes import Mistake
from pgcheck.problems.episodic import (
    q_values,
    random_episodic_mdp,
    state_values,
    theorem_gradient,
    visitation,
)
from pgcheck.report import Report

NAME = "theorem_gradient"
PUBLIC = "check_theorem_gradient"
WHAT = "∇J"
FORMULA = "∇J = Σ_s d_γ(s) Σ_a π(a|s) Q^π(s,a) ∇log π(a|s)"

#: Every diagnosis of this check: its code, what it computes, and its message.
MISTAKES: tuple[Mistake, ...] = (
    Mistake(
        "correct",
        FORMULA,
        "Your gradient equals the exact ∇J (autograd through J = p₀ᵀ V^π) on {n} episodic "
        "MDPs, softmax-linear and tabular policies, γ < 1 and γ = 1.",
    ),
    Mistake(
        "undiscounted_visitation",
        "Σ_s d_1(s) Σ_a π Q ∇log π with γ < 1",
        "You weight the states by the undiscounted visitation Σ_t Pr(s_t = s) although γ < 1. "
        "That is the expectation of the common estimator Σ_t G_t ∇log π(a_t|s_t), and it is not "
        "∇J: a visit at time t counts γ^t, d = (I − γ P_πᵀ)^{-1} p₀.",
    ),
    Mistake(
        "missing_pi_weight",
        "Σ_s d(s) Σ_a Q(s,a) ∇log π(a|s)",
        "The weight π(a|s) is missing: the inner sum is the expectation over a ~ π(·|s), "
        "Σ_a π(a|s) Q(s,a) ∇log π(a|s).",
    ),
    Mistake(
        "v_instead_of_q",
        "Σ_s d(s) Σ_a π(a|s) V(s) ∇log π(a|s) = 0",
        "Your gradient is zero on every case. That is what V(s) in place of Q(s,a) gives: "
        "Σ_a π(a|s) ∇log π(a|s) = ∇ Σ_a π(a|s) = 0, so V(s) works only as a baseline. Use "
        "Q(s,a) = R(s,a) + γ Σ_{s'} P(s'|s,a) V(s').",
    ),
    Mistake(
        "normalised_visitation",
        "∇J / Σ_s d(s)",
        "You normalised the visitation to sum to one; the direction is right but the length is "
        "∇J / Σ_s d(s). The gradient of J uses d(s) = Σ_t γ^t Pr(s_t = s) unnormalised.",
    ),
    Mistake(
        "transposed_transitions",
        "P_π or P transposed in d or Q",
        "Your transitions are transposed somewhere: P[s, a, s2] is the probability of s → s2, so "
        "d solves (I − γ P_πᵀ) d = p₀ and Q = R + γ P @ V.",
    ),
    Mistake(
        "q_undiscounted",
        "d discounted, Q with γ = 1",
        "Your Q ignores γ while your d uses it: Q = R + γ P V with V = (I − γ P_π)^{-1} r_π.",
    ),
    Mistake(
        "optimal_q",
        "Q* in place of Q^π",
        "You use the optimal Q* (a max over next actions). The theorem needs Q^π of the current "
        "policy: the next action is averaged under π.",
    ),
    Mistake(
        "pi_squared",
        "Σ_s d Σ_a π² Q ∇log π",
        "You weight by π(a|s) twice (π·∇π?): π(a|s) ∇log π(a|s) = ∇π(a|s), so use either "
        "π·Q·score or Q·∇π, not both.",
    ),
    Mistake(
        "start_instead_of_visitation",
        "Σ_s p₀(s) Σ_a π Q ∇log π",
        "You weight the states by the start distribution p₀ only. The theorem sums over every "
        "state the episode visits: d(s) = Σ_t γ^t Pr(s_t = s) = ((I − γ P_πᵀ)^{-1} p₀)(s).",
    ),
    Mistake(
        "visitation_missing",
        "Σ_s Σ_a π Q ∇log π",
        "Every state counts the same in your sum; weight each by how often it is visited, d(s).",
    ),
    Mistake(
        "mismatch",
        "none of the recognised answers",
        f"Assemble {FORMULA}: einsum('s,sa,sa,sap->p', d, pi, q, score), with q = Q^π and "
        "d = (I − γ P_πᵀ)^{-1} p₀.",
    ),
)
MESSAGES: dict[str, str] = {m.code: m.message for m in MISTAKES}

#: (seed, S, A, γ, policy) of the fixed cases.
CASE_SPECS: tuple[tuple[int, int, int, float, str], ...] = (
    (821, 3, 2, 0.9, "linear"),
    (822, 4, 3, 1.0, "linear"),
    (823, 3, 3, 0.7, "tabular"),
    (824, 5, 2, 0.95, "linear"),
)


def exact_gradient(mdp: Any) -> Tensor:
    """∇_θ J(θ₀) by autograd through J(θ) = p₀ᵀ (I − γ P_π)^{-1} r_π (no theorem involved)."""
    theta = mdp.theta0.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(mdp.J(theta), theta)
    return grad


def candidates(
    p0: Tensor, P: Tensor, R: Tensor, pi: Tensor, score: Tensor, gamma: float
) -> dict[str, Tensor]:
    """The wrong answers of :data:`MISTAKES` on one case (key ``code`` or ``code#variant``)."""
    eye = torch.eye(P.shape[0], dtype=P.dtype)
    p_pi = torch.einsum("sa,sap->sp", pi, P)
    d, q = visitation(p0, P, pi, gamma), q_values(P, R, pi, gamma)
    d_t = torch.linalg.solve(eye - gamma * p_pi, p0)
    v_t = torch.linalg.solve(eye - gamma * p_pi.T, (pi * R).sum(-1))
    q_t = R + gamma * P @ v_t
    q_t2 = R + gamma * P.permute(2, 1, 0) @ state_values(P, R, pi, gamma)
    grad = theorem_gradient(d, pi, q, score)
    return {
        "undiscounted_visitation": theorem_gradient(visitation(p0, P, pi, 1.0), pi, q, score),
        "missing_pi_weight": torch.einsum("s,sa,sap->p", d, q, score),
        "v_instead_of_q": theorem_gradient(
            d, pi, (pi * q).sum(-1, keepdim=True).expand_as(q), score
        ),
        "normalised_visitation": grad / d.sum(),
        "transposed_transitions": theorem_gradient(d_t, pi, q, score),
        "transposed_transitions#2": theorem_gradient(d, pi, q_t, score),
        "transposed_transitions#3": theorem_gradient(d_t, pi, q_t, score),
        "transposed_transitions#4": theorem_gradient(d, pi, q_t2, score),
        "q_undiscounted": theorem_gradient(d, pi, q_values(P, R, pi, 1.0), score),
        "optimal_q": theorem_gradient(d, pi, optimal_q(P, R, gamma), score),
        "pi_squared": theorem_gradient(d, pi * pi, q, score),
        "start_instead_of_visitation": theorem_gradient(p0, pi, q, score),
        "visitation_missing": theorem_gradient(torch.ones_like(d), pi, q, score),
    }


@cache
def theorem_cases() -> tuple[TableCase, ...]:
    """The fixed cases of :data:`CASE_SPECS` at θ₀, each with the exact ∇J by autograd."""
    cases = []
    for seed, S, A, gamma, policy in CASE_SPECS:
        mdp = random_episodic_mdp(seed, n_states=S, n_actions=A, gamma=gamma, policy=policy)
        theta = mdp.theta0.detach()
        pi = mdp.policy.probs(theta).detach()
        score = mdp.policy.score(theta).detach()
        inputs = {
            "p0": mdp.p0,
            "P": mdp.P,
            "R": mdp.R,
            "pi": pi,
            "score": score,
            "gamma": float(gamma),
        }
        cases.append(
            TableCase(
                label=f"an MDP with S={S}, A={A}, γ={gamma:g}, {policy} softmax policy",
                inputs=inputs,
                reference=as_array(exact_gradient(mdp)),
                candidates={
                    k: as_array(v)
                    for k, v in candidates(mdp.p0, mdp.P, mdp.R, pi, score, gamma).items()
                },
            )
        )
    return tuple(cases)


def measure_theorem_gradient(
    fn: Callable[..., Any],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    **unknown: Any,
) -> TableMeasurement:
    """Call ``fn(p0, P, R, pi, score, gamma)`` on every case of :func:`theorem_cases`."""
    return measure_tables(
        fn, theorem_cases(), check=NAME, public=PUBLIC, timeout=timeout, unknown=unknown
    )


@finite_rows
def judge_theorem_gradient(
    measurement: TableMeasurement,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    **unknown: Any,
) -> Report:
    """Compare with the exact ∇J (autograd) on every case (|yours − ∇J| ≤ atol + rtol·|∇J|),
    then name the wrong answer the results equal, by the rules of :mod:`pgcheck.checks.tables`."""
    return judge_tables(
        measurement,
        theorem_cases(),
        check=NAME,
        public=PUBLIC,
        what=WHAT,
        formula=FORMULA,
        messages=MESSAGES,
        rules=RULES,
        rtol=rtol,
        atol=atol,
        unknown=unknown,
    )


CHECK = Check(NAME, measure_theorem_gradient, judge_theorem_gradient)


def check_theorem_gradient(
    fn: Callable[..., Any], *, timeout: float = 5.0, **options: Any
) -> Report:
    """Check ``fn(p0, P, R, pi, score, gamma) -> ∇J [n]`` on four episodic MDPs.

    The exact answer is ∇_θ J by autograd through J = p₀ᵀ V^π, which the policy gradient
    theorem writes as Σ_s d_γ(s) Σ_a π(a|s) Q^π(s,a) ∇log π(a|s); options ``rtol`` (1e-7)
    and ``atol`` (1e-9).
    """
    return run_check(CHECK, fn, timeout=timeout, **options)
