"""Check a learner's discounted state visitation d_γ of a tabular MDP against the exact one.

``check_visitation(fn)`` (registered as ``"visitation"``) calls ``fn(p0, P, pi, gamma)`` with
``p0`` [S] (the start distribution), ``P`` [S, A, S] (sub-stochastic: 1 − Σ_{s'} P(s'|s,a) is
the probability that the episode ends), ``pi`` [S, A] and a float ``gamma`` ∈ [0, 1], on several
episodic MDPs (γ = 0, γ = 1 and 0 < γ < 1), and compares the result with

    d_γ(s) = Σ_t γ^t Pr(s_t = s),   the solution of (I − γ P_πᵀ) d = p₀,

(for γ = 1, the expected number of visits of s in one episode). It recognises the undiscounted
visitation used with γ < 1, transposed transitions, a visitation normalised to sum to one (the
lecture's "distribution", which rescales the theorem), the start distribution alone, the sum
started at t = 1, and the state-action visitation d(s)π(a|s).
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
from pgcheck.problems.episodic import random_episodic_mdp
from pgcheck.problems.episodic import visitation as exact_visitation
from pgcheck.report import Report

NAME = "visitation"
PUBLIC = "check_visitation"
WHAT = "d_γ"
FORMULA = "d = Σ_t γ^t Pr(s_t = s), the solution of (I − γ P_πᵀ) d = p₀"

#: Every diagnosis of this check: its code, what it computes, and its message.
MISTAKES: tuple[Mistake, ...] = (
    Mistake(
        "correct",
        FORMULA,
        "Your d_γ(s) = Σ_t γ^t Pr(s_t = s) is exact on {n} episodic MDPs (γ = 0, γ = 1 and "
        "0 < γ < 1).",
    ),
    Mistake(
        "undiscounted_visitation",
        "Σ_t Pr(s_t = s) (γ ignored)",
        "You return the undiscounted visitation Σ_t Pr(s_t = s) although γ < 1. A visit at time "
        "t counts γ^t: solve (I − γ P_πᵀ) d = p₀.",
    ),
    Mistake(
        "transposed_transitions",
        "(I − γ P_π)^{-1} p₀",
        "Your transitions are transposed: probability flows forward, "
        "Pr(s_{t+1} = s2) = Σ_s Pr(s_t = s) P_π(s, s2), so the system is (I − γ P_πᵀ) d = p₀ "
        "(P_π.T), not (I − γ P_π) d = p₀.",
    ),
    Mistake(
        "normalised_visitation",
        "d_γ / Σ_s d_γ(s)",
        "You normalised d to sum to one (the lecture calls d_π a distribution). That is the "
        "state distribution up to the factor Σ_s d(s) = E[Σ_t γ^t], which the theorem needs: "
        "return d(s) = Σ_t γ^t Pr(s_t = s) unnormalised.",
    ),
    Mistake(
        "start_only",
        "p₀",
        "You return the start distribution p₀ only; add the later visits, "
        "d = p₀ + γ P_πᵀ p₀ + γ² (P_πᵀ)² p₀ + … = (I − γ P_πᵀ)^{-1} p₀.",
    ),
    Mistake(
        "missing_start",
        "Σ_{t≥1} γ^t Pr(s_t = s)",
        "Your sum starts at t = 1: the start state is visited too (t = 0 contributes p₀). "
        "d = (I − γ P_πᵀ)^{-1} p₀.",
    ),
    Mistake(
        "state_action_visitation",
        "d_γ(s) π(a|s) [S, A]",
        "You return the state-action visitation d(s)π(a|s); the exercise asks for the state "
        "visitation d(s) alone, shape [S].",
    ),
    Mistake(
        "mismatch",
        "none of the recognised answers",
        f"Compute {FORMULA}, with P_π = einsum('sa,sap->sp', pi, P).",
    ),
)
MESSAGES: dict[str, str] = {m.code: m.message for m in MISTAKES}

#: (seed, S, A, γ) of the fixed cases.
CASE_SPECS: tuple[tuple[int, int, int, float], ...] = (
    (811, 3, 2, 0.9),
    (812, 4, 3, 1.0),
    (813, 3, 2, 0.0),
    (814, 5, 2, 0.7),
    (815, 4, 3, 0.95),
)


def candidates(p0: Tensor, P: Tensor, pi: Tensor, gamma: float) -> dict[str, Tensor]:
    """The wrong answers of :data:`MISTAKES` on one case."""
    eye = torch.eye(P.shape[0], dtype=P.dtype)
    p_pi = torch.einsum("sa,sap->sp", pi, P)
    d = exact_visitation(p0, P, pi, gamma)
    return {
        "undiscounted_visitation": exact_visitation(p0, P, pi, 1.0),
        "transposed_transitions": torch.linalg.solve(eye - gamma * p_pi, p0),
        "normalised_visitation": d / d.sum(),
        "start_only": p0,
        "missing_start": d - p0,
        "state_action_visitation": d[:, None] * pi,
    }


@cache
def visitation_cases() -> tuple[TableCase, ...]:
    """The fixed cases: episodic MDPs of :data:`CASE_SPECS`, at their policy's θ₀."""
    cases = []
    for seed, S, A, gamma in CASE_SPECS:
        mdp = random_episodic_mdp(seed, n_states=S, n_actions=A, gamma=gamma)
        pi = mdp.policy.probs(mdp.theta0).detach()
        p0, P = mdp.p0, mdp.P
        cases.append(
            TableCase(
                label=f"an MDP with S={S}, A={A}, γ={gamma:g}",
                inputs={"p0": p0, "P": P, "pi": pi, "gamma": float(gamma)},
                reference=as_array(exact_visitation(p0, P, pi, gamma)),
                candidates={k: as_array(v) for k, v in candidates(p0, P, pi, gamma).items()},
            )
        )
    return tuple(cases)


def measure_visitation(
    fn: Callable[..., Any],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    **unknown: Any,
) -> TableMeasurement:
    """Call ``fn(p0, P, pi, gamma)`` on every case of :func:`visitation_cases`."""
    return measure_tables(
        fn, visitation_cases(), check=NAME, public=PUBLIC, timeout=timeout, unknown=unknown
    )


@finite_rows
def judge_visitation(
    measurement: TableMeasurement,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    **unknown: Any,
) -> Report:
    """Compare with d = (I − γ P_πᵀ)^{-1} p₀ on every case (|yours − d| ≤ atol + rtol·|d|),
    then name the wrong answer the results equal, by the rules of :mod:`pgcheck.checks.tables`."""
    return judge_tables(
        measurement,
        visitation_cases(),
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


CHECK = Check(NAME, measure_visitation, judge_visitation)


def check_visitation(fn: Callable[..., Any], *, timeout: float = 5.0, **options: Any) -> Report:
    """Check ``fn(p0 [S], P [S,A,S], pi [S,A], gamma) -> d [S]`` on five episodic MDPs.

    The exact answer is d_γ(s) = Σ_t γ^t Pr(s_t = s) = ((I − γ P_πᵀ)^{-1} p₀)(s);
    options ``rtol`` (1e-7) and ``atol`` (1e-9).
    """
    return run_check(CHECK, fn, timeout=timeout, **options)
