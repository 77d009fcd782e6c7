"""Check a learner's action values Q^π of a tabular MDP against the exact ones.

``check_q_values(fn)`` (registered as ``"q_values"``) calls ``fn(P, R, pi, gamma)`` with
``P`` [S, A, S] (sub-stochastic: 1 − Σ_{s'} P(s'|s,a) is the probability that the episode
ends), ``R`` [S, A], ``pi`` [S, A] (π(a|s), rows sum to one) and a float ``gamma`` ∈ [0, 1], on
several episodic MDPs (γ = 0, γ = 1 and 0 < γ < 1), and compares the result with

    Q^π(s,a) = R(s,a) + γ Σ_{s'} P(s'|s,a) V^π(s'),   V^π = (I − γ P_π)^{-1} r_π,

the solution of the Bellman equation. It recognises V^π instead of Q^π, the optimal Q*
(a max where the policy's average belongs), the immediate reward only, a single backup, γ
ignored or used once, transposed transitions, the policy ignored, and π(a|s)·Q(s,a).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import torch
from torch import Tensor

from pgcheck.checks.base import DEFAULT_TIMEOUT, Check, finite_rows, run_check
from pgcheck.checks.tables import (
    RULES,
    TableCase,
    TableMeasurement,
    as_array,
    judge_tables,
    measure_tables,
)
from pgcheck.diagnosis.mistakes import Mistake
from pgcheck.problems.episodic import q_values as exact_q_values
from pgcheck.problems.episodic import random_episodic_mdp, state_values
from pgcheck.report import Report

NAME = "q_values"
PUBLIC = "check_q_values"
WHAT = "Q^π"
FORMULA = "Q(s,a) = R(s,a) + γ Σ_{s'} P(s'|s,a) V(s'), with V = (I − γ P_π)^{-1} r_π"

#: Every diagnosis of this check: its code, what it computes, and its message.
MISTAKES: tuple[Mistake, ...] = (
    Mistake(
        "correct",
        FORMULA,
        "Your Q^π solves the Bellman equation Q = R + γ P V^π on {n} episodic MDPs "
        "(γ = 0, γ = 1 and 0 < γ < 1).",
    ),
    Mistake(
        "v_instead_of_q",
        "V^π(s) (for every a)",
        "You return the state value V^π(s) = Σ_a π(a|s) Q(s,a), not Q^π(s,a): one step more, "
        "Q(s,a) = R(s,a) + γ Σ_{s'} P(s'|s,a) V(s'), gives one value per state and action.",
    ),
    Mistake(
        "optimal_q",
        "Q*(s,a) = R + γ P max_a' Q*",
        "You compute the optimal Q* (a max over the next action, as in Q-learning). The theorem "
        "needs Q^π of the given policy: average the next action's value under π, "
        "V(s) = Σ_a π(a|s) Q(s,a).",
    ),
    Mistake(
        "immediate_reward",
        "R(s,a)",
        "You return the immediate reward R(s,a) only; add the discounted value of where a "
        "leads: + γ Σ_{s'} P(s'|s,a) V^π(s').",
    ),
    Mistake(
        "one_backup",
        "R + γ P r_π",
        "You look one step ahead (R + γ P r_π) and stop. V^π counts every later step too: "
        "solve V = r_π + γ P_π V (torch.linalg.solve) or iterate the backup until it converges.",
    ),
    Mistake(
        "undiscounted",
        "Q^π computed with γ = 1",
        "You ignore γ (your Q^π is the undiscounted one); discount the next state's value: "
        "Q = R + γ P V with V = (I − γ P_π)^{-1} r_π.",
    ),
    Mistake(
        "gamma_once",
        "γ in only one of V = r_π + γ P_π V and Q = R + γ P V",
        "γ appears in only one of your two equations; it belongs in both, V = r_π + γ P_π V and "
        "Q = R + γ P V.",
    ),
    Mistake(
        "transposed_transitions",
        "P_πᵀ or P[s', a, s] where P_π or P[s, a, s'] belongs",
        "Your transitions are transposed: P[s, a, s2] is the probability of moving from s to s2, "
        "so P_π(s, s2) = Σ_a π(a|s) P[s, a, s2] (einsum 'sa,sap->sp') and the value of where "
        "(s, a) leads is Σ_{s2} P[s, a, s2] V[s2] (P @ V).",
    ),
    Mistake(
        "policy_ignored",
        "Q of the uniform policy",
        "Your values do not depend on pi (they are those of the uniform policy): average the next "
        "action with π, r_π(s) = Σ_a π(a|s) R(s,a) and P_π(s, s2) = Σ_a π(a|s) P(s2|s,a).",
    ),
    Mistake(
        "pi_times_q",
        "π(a|s) Q^π(s,a)",
        "You return π(a|s)·Q(s,a); the theorem weights by π itself, so return Q(s,a) alone.",
    ),
    Mistake(
        "mismatch",
        "none of the recognised answers",
        f"Compute {FORMULA}: r_π = (pi * R).sum(-1), P_π = einsum('sa,sap->sp', pi, P).",
    ),
)
MESSAGES: dict[str, str] = {m.code: m.message for m in MISTAKES}

#: (seed, S, A, γ) of the fixed cases.
CASE_SPECS: tuple[tuple[int, int, int, float], ...] = (
    (801, 3, 2, 0.9),
    (802, 4, 3, 1.0),
    (803, 2, 2, 0.0),
    (804, 5, 2, 0.6),
    (805, 4, 4, 0.95),
)


def optimal_q(P: Tensor, R: Tensor, gamma: float, iterations: int = 2000) -> Tensor:
    """Q*(s,a) = R + γ P max_a' Q*(·, a') by value iteration (a contraction: every episode ends)."""
    q = R.clone()
    for _ in range(iterations):
        q_next = R + gamma * P @ q.max(-1).values
        if torch.max(torch.abs(q_next - q)) < 1e-15:
            return q_next
        q = q_next
    return q


def candidates(P: Tensor, R: Tensor, pi: Tensor, gamma: float) -> dict[str, Tensor]:
    """The wrong answers of :data:`MISTAKES` on one case (key ``code`` or ``code#variant``)."""
    S, A = R.shape
    eye = torch.eye(S, dtype=P.dtype)
    r_pi = (pi * R).sum(-1)
    p_pi = torch.einsum("sa,sap->sp", pi, P)
    v = state_values(P, R, pi, gamma)
    v_t = torch.linalg.solve(eye - gamma * p_pi.T, r_pi)
    back_t = P.permute(2, 1, 0)  # back_t[s, a, s2] = P[s2, a, s]
    uniform = torch.full_like(pi, 1.0 / A)
    return {
        "v_instead_of_q": v,
        "v_instead_of_q#broadcast": v[:, None].expand(S, A),
        "optimal_q": optimal_q(P, R, gamma),
        "immediate_reward": R,
        "one_backup": R + gamma * P @ r_pi,
        "undiscounted": exact_q_values(P, R, pi, 1.0),
        "gamma_once": R + P @ v,
        "gamma_once#2": R + gamma * P @ state_values(P, R, pi, 1.0),
        "transposed_transitions": R + gamma * P @ v_t,
        "transposed_transitions#2": R + gamma * back_t @ v,
        "transposed_transitions#3": R + gamma * back_t @ v_t,
        "policy_ignored": exact_q_values(P, R, uniform, gamma),
        "pi_times_q": pi * exact_q_values(P, R, pi, gamma),
    }


@cache
def q_cases() -> tuple[TableCase, ...]:
    """The fixed cases: episodic MDPs of :data:`CASE_SPECS`, at their policy's θ₀."""
    cases = []
    for seed, S, A, gamma in CASE_SPECS:
        mdp = random_episodic_mdp(seed, n_states=S, n_actions=A, gamma=gamma)
        pi = mdp.policy.probs(mdp.theta0).detach()
        P, R = mdp.P, mdp.R
        cases.append(
            TableCase(
                label=f"an MDP with S={S}, A={A}, γ={gamma:g}",
                inputs={"P": P, "R": R, "pi": pi, "gamma": float(gamma)},
                reference=as_array(exact_q_values(P, R, pi, gamma)),
                candidates={k: as_array(v) for k, v in candidates(P, R, pi, gamma).items()},
            )
        )
    return tuple(cases)


def measure_q_values(
    fn: Callable[..., Any],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    **unknown: Any,
) -> TableMeasurement:
    """Call ``fn(P, R, pi, gamma)`` on every case of :func:`q_cases`; plain numbers only."""
    return measure_tables(
        fn, q_cases(), check=NAME, public=PUBLIC, timeout=timeout, unknown=unknown
    )


@finite_rows
def judge_q_values(
    measurement: TableMeasurement,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    **unknown: Any,
) -> Report:
    """Compare with Q^π = R + γ P (I − γ P_π)^{-1} r_π on every case (|yours − Q| ≤ atol +
    rtol·|Q|), then name the wrong answer the results equal, by the rules of
    :mod:`pgcheck.checks.tables`."""
    return judge_tables(
        measurement,
        q_cases(),
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


CHECK = Check(NAME, measure_q_values, judge_q_values)


def check_q_values(fn: Callable[..., Any], *, timeout: float = 5.0, **options: Any) -> Report:
    """Check ``fn(P [S,A,S], R [S,A], pi [S,A], gamma) -> Q [S,A]`` on five episodic MDPs.

    The exact answer is Q^π(s,a) = R(s,a) + γ Σ_{s'} P(s'|s,a) V^π(s') with
    V^π = (I − γ P_π)^{-1} r_π; options ``rtol`` (1e-7) and ``atol`` (1e-9).
    """
    return run_check(CHECK, fn, timeout=timeout, **options)
