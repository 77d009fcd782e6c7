"""Matching a learner's expected gradient against the known mistakes.

E[ĝ] = α ∇J + r with ĝ = −∇_θ L (:func:`decompose`). When r ≠ 0 the mistake is named by
matching, up to a factor β (:func:`match_factor`):

1. the learner's exact per-step weights w_it against the weight patterns of
   :func:`pgcheck.diagnosis.estimators.weight_bank` (:func:`diagnose_weights`) — this tells
   apart mistakes with the same expectation, such as reward-to-come and immediate reward;
2. an action-dependence test of d_t = w_t − γ^t G_t, which must depend only on the history up
   to s_t for an unbiased estimator (:func:`action_dependence`);
3. the expected gradients of the reference estimators on every instance (:func:`diagnose`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from pgcheck.diagnosis import estimators
from pgcheck.exact.references import grad_j, reference_expectation
from pgcheck.exact.vocabulary import provides, requested_names
from pgcheck.problems import Problem, Trajectories, find

#: Relative tolerance on ‖E[ĝ] − ∇J‖ / ‖∇J‖. Correct estimators are exact to ~1e-14 in
#: float64; the subtlest mistake in the default suite (missing γ^t) is off by > 1e-2.
RTOL = 1e-6
#: Tolerance for matching a reference estimator (same expected gradient up to a factor).
MATCH_RTOL = 1e-7

#: (diagnosis code, factor β) of a recognised mistake.
Found = tuple[str, float]


def decompose(g: Tensor, grad_j: Tensor) -> tuple[float, float, float]:
    """α = ⟨g, ∇J⟩ / ‖∇J‖², the relative residual ‖r‖ / ‖g‖, and ‖g − ∇J‖ / ‖∇J‖."""
    denom = float(grad_j @ grad_j)
    alpha = float(g @ grad_j) / denom if denom > 0 else 0.0
    r = g - alpha * grad_j
    scale = max(float(g.norm()), abs(alpha) * float(grad_j.norm()), 1e-300)
    return (
        alpha,
        float(r.norm()) / scale,
        float((g - grad_j).norm()) / max(float(grad_j.norm()), 1e-300),
    )


def match_factor(gs: Sequence[Tensor], refs: Sequence[Tensor]) -> float | None:
    """β with gs ≈ β·refs on every instance (within MATCH_RTOL), or None."""
    num = sum(float(g @ m) for g, m in zip(gs, refs, strict=True))
    den = sum(float(m @ m) for m in refs)
    if den <= 0:
        return None
    beta = num / den
    if beta == 0:
        return None
    for g, m in zip(gs, refs, strict=True):
        scale = max(float(g.norm()), abs(beta) * float(m.norm()), 1e-300)
        if float((g - beta * m).norm()) > MATCH_RTOL * scale:
            return None
    return beta


def diagnose(gs: list[Tensor], probs: list[Problem], mode: str) -> Found | None:
    """The first reference whose expected gradients match the learner's up to a factor β."""
    bank = estimators.reference_bank() + list(estimators.GAUSSIAN_MISTAKES.items())
    if mode == "mixing":
        bank = estimators.mixing_bank() + bank
    for code, fn in bank:
        if not all(provides(p, requested_names(fn)) for p in probs):
            continue
        ref_mode = (
            "mixing"
            if (mode == "mixing" and (code, fn) in estimators.mixing_bank())
            else "separable"
        )
        refs = [reference_expectation(code, fn, p, ref_mode) for p in probs]
        beta = match_factor(gs, refs)
        if beta is not None and code != "correct":
            return code, beta
    return None


def diagnose_offsets(gs: list[Tensor], probs: list[Problem]) -> Found | None:
    """A mistake that adds a term: E[ĝ] − ∇J = β (E[ĝ_ref] − E[ĝ_correct]) on every instance
    for one β > 0 (e.g. an entropy bonus with the learner's coefficient β)."""
    for code, fn, base in estimators.OFFSET_MISTAKES:
        if not all(provides(p, requested_names(fn)) for p in probs):
            continue
        offsets = [
            reference_expectation(code, fn, p, "separable")
            - reference_expectation("correct", base, p, "separable")
            for p in probs
        ]
        if all(float(o.abs().max()) == 0.0 for o in offsets):
            continue
        gjs = [grad_j(p) for p in probs]
        residuals = [g - gj for g, gj in zip(gs, gjs, strict=True)]
        num = sum(float(r @ o) for r, o in zip(residuals, offsets, strict=True))
        beta = num / sum(float(o @ o) for o in offsets)
        # residuals are differences of nearly equal vectors: allow rounding relative to ∇J
        if beta > 0 and all(
            float((r - beta * o).norm())
            <= MATCH_RTOL * max(float(r.norm()), beta * float(o.norm())) + 1e-12 * float(gj.norm())
            for r, o, gj in zip(residuals, offsets, gjs, strict=True)
        ):
            return code, beta
    return None


def diagnose_weights(weights: dict[str, Any] | None) -> Found | None:
    """Match the learner's per-step weights w_it (exact, per sample) against known patterns,
    then try the action-dependence test."""
    if not weights or weights.get("w") is None:
        return None
    prob = find(weights["problem"])
    traj = prob.support()[0]
    w = torch.tensor(weights["w"], dtype=torch.float64)
    if w.shape != traj.mask.shape or not torch.isfinite(w).all():
        return None
    pi_taken = prob.policy.probs(prob.theta0)[traj.states, traj.actions]  # type: ignore[attr-defined]
    data = (traj.reward_to_go, traj.rewards, traj.returns, traj.gamma, traj.mask, traj.lengths)
    for spec in estimators.weight_bank():
        ref = spec.weights(*data)
        if spec.probs:
            ref = ref * pi_taken
        beta = match_factor([w.reshape(-1)], [ref.reshape(-1)])
        if beta is not None and spec.code != "correct":
            return spec.code, beta
    return action_dependence(w, traj)


def action_dependence(w: Tensor, traj: Trajectories) -> Found | None:
    """ "action_dependent_baseline" when d_t = w_t − γ^t G_t changes with a_t for the same
    history (s_0, a_0, …, s_t) but is fixed once a_t is given."""
    correct = traj.reward_to_go * traj.discounts
    d = (w - correct).tolist()
    by_history: dict[tuple[int, ...], set[float]] = {}
    by_action: dict[tuple[int, ...], set[float]] = {}
    states, actions, mask = traj.states.tolist(), traj.actions.tolist(), traj.mask.tolist()
    for i in range(len(states)):
        for t in range(len(states[i])):
            if not mask[i][t]:
                continue
            history = tuple(states[i][: t + 1] + actions[i][:t])
            by_history.setdefault(history, set()).add(round(d[i][t], 9))
            by_action.setdefault(history + (actions[i][t],), set()).add(round(d[i][t], 9))
    varies_with_action = any(len(v) > 1 for v in by_history.values())
    fixed_given_action = all(len(v) == 1 for v in by_action.values())
    if varies_with_action and fixed_given_action:
        return "action_dependent_baseline", 1.0
    return None
