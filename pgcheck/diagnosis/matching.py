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
from pgcheck.exact.expectation import policy_outputs
from pgcheck.exact.references import grad_j, reference_expectation
from pgcheck.exact.vocabulary import build_inputs, provides, requested_names
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
        spec = getattr(fn, "spec", None)
        if isinstance(spec, estimators.WeightSpec) and ref_mode == "separable":
            refs = [weight_expectation(spec, p) for p in probs]
        else:
            refs = [reference_expectation(code, fn, p, ref_mode) for p in probs]
        beta = match_factor(*_informative(gs, refs, probs))
        if beta is not None and code != "correct":
            return code, beta
    return None


def _informative(
    gs: Sequence[Tensor], refs: Sequence[Tensor], probs: Sequence[Problem]
) -> tuple[list[Tensor], list[Tensor]]:
    """The instances where the learner's or the reference's E[ĝ] is not negligible next to
    ∇J (> 1e-6 ‖∇J‖): where both are ~0 (e.g. a normalisation of near-constant weights under
    quadrature) rounding, not the estimator, decides the match."""
    keep = [
        (g, m)
        for g, m, p in zip(gs, refs, probs, strict=True)
        if max(float(g.norm()), float(m.norm())) > 1e-6 * float(grad_j(p).norm())
    ]
    return [g for g, _ in keep], [m for _, m in keep]


_SCORES: dict[str, tuple[Tensor, Tensor]] = {}
_WEIGHT_REFS: dict[tuple[str, str], Tensor] = {}


def step_scores(prob: Problem) -> tuple[Tensor, Tensor]:
    """∇_θ log π(a_t|s_t) for every trajectory and step of the support [M, T, P] (padded
    steps included, with the states and actions stored there), and π(a_t|s_t) [M, T]."""
    if prob.name not in _SCORES:
        traj = prob.support()[0]
        outputs, jac = policy_outputs(prob, prob.theta0)
        with torch.enable_grad():
            inputs, leaves = build_inputs(prob, traj, ["log_probs"], outputs, jac)
            names = list(leaves.tensors)
            grads = torch.autograd.grad(
                inputs["log_probs"].sum(), [leaves.tensors[n] for n in names]
            )
        score: Tensor = sum(  # type: ignore[assignment]
            torch.einsum("bt...,bt...p->btp", g, leaves.jacobians[n])
            for n, g in zip(names, grads, strict=True)
        )
        _SCORES[prob.name] = (score, inputs["log_probs"].detach().exp())
    return _SCORES[prob.name]


def weight_expectation(spec: estimators.WeightSpec, prob: Problem) -> Tensor:
    """E[ĝ] = Σ_τ p(τ) Σ_t w_t(τ) ∇score_t(τ) of a weight pattern's pseudo-loss, without
    calling it: the same number as :func:`reference_expectation` of ``spec.loss()``, where
    ∇score_t = ∇log π(a_t|s_t), or π(a_t|s_t) ∇log π(a_t|s_t) with ``spec.probs``."""
    key = (
        spec.code + f"/{spec.pattern}/{spec.gamma_t}{spec.use_mask}{spec.per_episode_mean}"
        f"{spec.probs}",
        prob.name,
    )
    if key not in _WEIGHT_REFS:
        traj, p = prob.support(prob.theta0)
        score, pi_taken = step_scores(prob)
        w = spec.weights(
            traj.reward_to_go, traj.rewards, traj.returns, traj.gamma, traj.mask, traj.lengths
        )
        if spec.probs:
            w = w * pi_taken
        _WEIGHT_REFS[key] = torch.einsum("b,bt,btp->p", p, w, score)
    return _WEIGHT_REFS[key]


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
    first: Found | None = None
    for spec in estimators.weight_bank():
        ref = spec.weights(*data)
        if spec.probs:
            ref = ref * pi_taken
        beta = match_factor([w.reshape(-1)], [ref.reshape(-1)])
        if beta is not None and spec.code != "correct":
            if abs(beta - 1) <= 1e-6:  # an exact match beats one up to a factor (γ^t G_{t+1}
                return spec.code, beta  # is γ^{t+1} G_{t+1} up to the constant 1/γ)
            first = first or (spec.code, beta)
    if first is not None:
        return first
    return transformed_log_probs(w, traj, pi_taken) or action_dependence(w, traj)


def correct_weights(traj: Trajectories) -> list[tuple[str, Tensor]]:
    """The correct per-step weights of log π(a_t|s_t): γ^t G_t and R(τ) (masked)."""
    return [
        ("γ^t G_t", traj.reward_to_go * traj.discounts * traj.mask),
        ("R(τ)", traj.returns[:, None] * traj.mask),
    ]


def transformed_log_probs(w: Tensor, traj: Trajectories, pi_taken: Tensor) -> Found | None:
    """log π(a_t|s_t) transformed before it is weighted, so that its gradient vanishes.

    * ``log_probs_squared``: w_t = β·w*_t·log π(a_t|s_t), the weights of Σ_t w*_t (log π)²
      (∇(log π)² = 2 log π ∇log π → 0 as π → 1);
    * ``log_probs_clamped``: w_t = β·w*_t except w_t = 0 on the steps whose log π(a_t|s_t)
      lies beyond a threshold (``clamp`` has zero gradient where it is active);

    for a correct weight w* (γ^t G_t or R(τ)).
    """
    log_pi = pi_taken.log()
    real = traj.mask > 0
    flat_w = w[real]
    scale = max(float(flat_w.abs().max()), 1e-300)
    for _, ref in correct_weights(traj):
        beta = match_factor([flat_w], [(ref * log_pi)[real]])
        if beta is not None:
            return "log_probs_squared", beta
        zero = (flat_w.abs() <= 1e-12 * scale) & (ref[real].abs() > 1e-9 * scale)
        kept = ~zero
        if not bool(zero.any()) or not bool(kept.any()):
            continue
        beta = match_factor([flat_w[kept]], [ref[real][kept]])
        lz, lk = log_pi[real][zero], log_pi[real][kept]
        threshold = bool(lz.max() < lk.min()) or bool(lz.min() > lk.max())
        if beta is not None and threshold:
            return "log_probs_clamped", beta
    return None


def where_weights_differ(weights: dict[str, Any] | None, limit: int = 3) -> str | None:
    """Where the learner's per-step weights differ most from the nearest correct ones.

    Returns e.g. "on mdp-linear, trajectory 2 (s = [0, 1, 3], a = [1, 0, 1]): t = 1: your
    weight 0.81, γ^t G_t = 0.58; …" for the ``limit`` largest differences, or None.
    """
    if not weights or weights.get("w") is None:
        return None
    prob = find(weights["problem"])
    traj = prob.support()[0]
    w = torch.tensor(weights["w"], dtype=torch.float64)
    if w.shape != traj.mask.shape or not torch.isfinite(w).all():
        return None
    w = w * traj.mask
    name, ref = min(correct_weights(traj), key=lambda nr: float((w - nr[1]).norm()))
    diff = (w - ref).abs()
    if float(diff.max()) <= 1e-9 * max(float(ref.abs().max()), 1e-300):
        return None
    order = torch.argsort(diff.reshape(-1), descending=True)[:limit].tolist()
    T = w.shape[1]
    parts = []
    for k in order:
        i, t = divmod(int(k), T)
        if float(diff[i, t]) <= 1e-9:
            break
        n = int(traj.lengths[i])
        s, a = traj.states[i, :n].tolist(), traj.actions[i, :n].tolist()
        parts.append(
            f"trajectory {i} (s = {s}, a = {a}), t = {t}: your weight "
            f"{float(w[i, t]):.4g}, {name} = {float(ref[i, t]):.4g}"
        )
    steps = sorted({divmod(int(k), T)[1] for k in order})
    return (
        f"Your per-step weights of log π(a_t|s_t) on {prob.name} differ from {name} most at: "
        + "; ".join(parts)
        + f" (t = {', '.join(map(str, steps))}; of {len(traj)} trajectories)."
    )


def entropy_bonus(
    gs: Sequence[Tensor], gjs: Sequence[Tensor], probs: Sequence[Problem]
) -> tuple[str, float, float] | None:
    """E[ĝ] = a ∇J + b_k E_H on every instance k, with a > 0 shared and b_k ≠ 0 on some.

    E_H = E[Σ_t ∇_θ H(π(·|s_t))] is the expected gradient of the policy's entropy at the
    visited states (:data:`estimators.ENTROPY_REFERENCES`): the loss is a correct policy
    gradient (up to the scale a) plus an entropy bonus. Returns (code, a, β) with β the
    coefficient on the first instance that has an entropy direction.
    """
    for code, fn in estimators.ENTROPY_REFERENCES:
        if not all(provides(p, requested_names(fn)) for p in probs):
            continue
        coeffs, bonus = [], False
        for g, gj, p in zip(gs, gjs, probs, strict=True):
            eh = reference_expectation(code, fn, p, "separable")
            if float(eh.norm()) <= 1e-12 * float(gj.norm()) or g.numel() < 3:
                a, rr, _ = decompose(g, gj)  # no entropy direction here: g must be a ∇J
                if rr > RTOL:
                    break
                coeffs.append((a, 0.0))
                continue
            basis = torch.stack([gj, eh], 1)
            sol = torch.linalg.lstsq(basis, g[:, None]).solution[:, 0]
            resid = float((basis @ sol - g).norm())
            if resid > 1e-7 * max(float(g.norm()), 1e-300):
                break
            coeffs.append((float(sol[0]), float(sol[1])))
            bonus = bonus or abs(float(sol[1])) * float(eh.norm()) > 1e-7 * float(g.norm())
        else:
            alphas = [c[0] for c in coeffs]
            betas = [c[1] for c in coeffs if c[1] != 0.0]
            # a bonus has β > 0 (a negative β is e.g. a Gaussian log-density without −log σ)
            if bonus and alphas and betas and min(alphas) > 0 and min(betas) > 0:
                if max(alphas) - min(alphas) <= 1e-6 * max(alphas):
                    return code, alphas[0], betas[0]
    return None


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
