"""Check a learner's PPO clipped surrogate loss, its value and its gradient.

``check_ppo_surrogate(fn)`` (registered as ``"ppo_surrogate"``) calls
``fn(log_probs, old_log_probs, advantages, clip)`` (``[N]`` float64 tensors, ``log_probs``
require grad; ``clip`` = ε) and expects the loss to *minimise*

    L = −(1/N) Σ_i min(ρ_i A_i, clip(ρ_i, 1 − ε, 1 + ε) A_i),   ρ_i = exp(log π_θ − log π_old),

with gradient ∂L/∂log π_θ(i) = −(1/N) ρ_i A_i when the unclipped term is the smaller one
(A_i > 0 and ρ_i < 1 + ε, or A_i < 0 and ρ_i > 1 − ε), else 0. It is checked at θ = θ_old
(every ρ = 1: the gradient is the policy gradient's −A_i/N, clipping inactive) and at a moved
θ with ratios on both sides of the clip range for both signs of A.

Recognised mistakes: the ratio computed with the new log-probs detached (no gradient), the
clipping applied to the advantage instead of the ratio, the unclipped surrogate, the
clipped term alone, max instead of min, the ratio inverted, log π_θ − log π_old instead of
the ratio, the sign, a sum instead of a mean.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from pgcheck.checks.base import Check, finite_rows, instance_seed, run_check
from pgcheck.checks.casewise import Answer, CaseSpec, as_tensor, judge_cases, measure_cases
from pgcheck.report import Report


def ppo_cases(seed: int | None = None) -> list[dict[str, Any]]:
    """At θ_old (ρ = 1) and at moved θ (ρ inside and outside [1 − ε, 1 + ε], both signs of A)
    (``seed``: fresh cases of the same sizes, ε and regions, see :func:`instance_seed`)."""
    rng = np.random.default_rng(instance_seed(2_017, seed))
    cases = []
    for n, eps, moved in ((5, 0.2, False), (8, 0.2, True), (12, 0.1, True), (6, 0.3, False)):
        old = np.round(np.log(rng.uniform(0.05, 0.95, n)), 4)
        adv = np.round(rng.normal(0.0, 1.5, n), 3)
        adv[:2] = [1.2, -0.9]
        if moved:  # log-ratios well away from the clip boundaries ±log(1 ± ε)
            shift = rng.choice([-0.6, -0.02, 0.03, 0.5], n) + rng.uniform(-0.01, 0.01, n)
            shift[:4] = [0.5, 0.5, -0.6, -0.6]
            adv[2:4] = [0.8, -1.1]
        else:
            shift = np.zeros(n)
        cases.append(
            {
                "log_probs": (old + np.round(shift, 4)).tolist(),
                "old_log_probs": old.tolist(),
                "advantages": adv.tolist(),
                "clip": eps,
            }
        )
    return cases


def _parts(case: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, float]:
    new, old = np.array(case["log_probs"]), np.array(case["old_log_probs"])
    return np.exp(new - old), np.array(case["advantages"]), float(case["clip"])


def surrogate_answer(case: dict[str, Any]) -> Answer:
    """L and ∂L/∂log π_θ of the clipped surrogate (see the module docstring)."""
    rho, adv, eps = _parts(case)
    n = len(adv)
    unclipped, clipped = rho * adv, np.clip(rho, 1 - eps, 1 + eps) * adv
    value = -np.minimum(unclipped, clipped).mean()
    active = unclipped <= clipped  # the unclipped term is the min: gradient flows
    return np.asarray(value), -(active * rho * adv) / n


def ppo_candidates(case: dict[str, Any]) -> dict[str, Answer]:
    """Value and gradient of each common mistake on this case."""
    rho, adv, eps = _parts(case)
    n = len(adv)
    right_value, right_grad = surrogate_answer(case)
    assert right_grad is not None  # the surrogate's gradient is always part of its answer
    clip_rho = np.clip(rho, 1 - eps, 1 + eps)
    inside = (rho > 1 - eps) & (rho < 1 + eps)
    clip_adv = np.clip(adv, 1 - eps, 1 + eps)
    a_first = rho * adv <= rho * clip_adv
    inv = 1 / rho
    inv_un, inv_cl = inv * adv, np.clip(inv, 1 - eps, 1 + eps) * adv
    inv_active = inv_un <= inv_cl
    log_ratio = np.log(rho)
    lr_un, lr_cl = log_ratio * adv, np.clip(log_ratio, 1 - eps, 1 + eps) * adv
    lr_inside = (log_ratio > 1 - eps) & (log_ratio < 1 + eps)
    big_un = rho * adv >= clip_rho * adv
    return {
        "ratio_new_log_probs_detached": (right_value, np.zeros(n)),
        "clip_on_advantage": (
            np.asarray(-np.minimum(rho * adv, rho * clip_adv).mean()),
            -rho * np.where(a_first, adv, clip_adv) / n,
        ),
        "clip_on_advantage_no_min": (np.asarray(-(rho * clip_adv).mean()), -rho * clip_adv / n),
        "no_clipping": (np.asarray(-(rho * adv).mean()), -rho * adv / n),
        "clipped_term_only": (np.asarray(-(clip_rho * adv).mean()), -(inside * rho * adv) / n),
        "max_instead_of_min": (
            np.asarray(-np.maximum(rho * adv, clip_rho * adv).mean()),
            -np.where(big_un, rho * adv, inside * rho * adv) / n,
        ),
        "ratio_inverted": (
            np.asarray(-np.minimum(inv_un, inv_cl).mean()),
            (inv_active * inv * adv) / n,
        ),
        "log_ratio_instead_of_ratio": (
            np.asarray(-np.minimum(lr_un, lr_cl).mean()),
            -np.where(lr_un <= lr_cl, adv, lr_inside * adv) / n,
        ),
        "sign_flipped": (-right_value, -right_grad),
        "sum_instead_of_mean": (n * right_value, n * right_grad),
    }


DIAGNOSES: dict[str, str] = {
    "ratio_new_log_probs_detached": "Your loss has the right value but no gradient: the "
    "ratio was computed from detached new log-probs. Only the old ones are constants: "
    "ρ = exp(log_probs − old_log_probs.detach()).",
    "clip_on_advantage": "You clip the advantage instead of the ratio. The clip keeps the new "
    "policy near the old one: clip(ρ, 1 − ε, 1 + ε)·A.",
    "clip_on_advantage_no_min": "You clip the advantage (and take no min). Clip the ratio and "
    "take the min: min(ρA, clip(ρ, 1 − ε, 1 + ε)A).",
    "no_clipping": "Your loss is the unclipped surrogate −mean(ρA): right at θ_old, but once θ "
    "moves nothing stops ρ from running away. Take min(ρA, clip(ρ, 1 − ε, 1 + ε)A).",
    "clipped_term_only": "You keep only the clipped term clip(ρ)A; without the min it also "
    "removes the pessimistic bound. Use min(ρA, clip(ρ, 1 − ε, 1 + ε)A).",
    "max_instead_of_min": "You take the max of the two terms; PPO takes the min (a "
    "pessimistic bound on the improvement).",
    "ratio_inverted": "Your ratio is π_old/π_θ; it should be π_θ/π_old = exp(log_probs − "
    "old_log_probs).",
    "log_ratio_instead_of_ratio": "You use log π_θ − log π_old where the ratio belongs; take "
    "its exp: ρ = exp(log_probs − old_log_probs).",
    "sign_flipped": "Your loss is the negative of the right one: PPO maximises the surrogate, "
    "so the loss to minimise is −mean(min(ρA, clip(ρ)A)).",
    "sum_instead_of_mean": "You sum over the batch; the surrogate is a mean.",
}


def _arguments(case: dict[str, Any]) -> dict[str, Any]:
    args: dict[str, Any] = {
        k: as_tensor(case[k]) for k in ("log_probs", "old_log_probs", "advantages")
    }
    args["clip"] = float(case["clip"])
    return args


def _describe(case: dict[str, Any]) -> str:
    moved = any(a != b for a, b in zip(case["log_probs"], case["old_log_probs"], strict=True))
    where = "a moved θ" if moved else "θ = θ_old"
    return f"N={len(case['advantages'])}, ε={case['clip']} at {where}"


SPEC = CaseSpec(
    name="ppo_surrogate",
    public="check_ppo_surrogate",
    cases=ppo_cases,
    arguments=_arguments,
    shape=lambda case: (),
    what="the loss (a number)",
    reference=surrogate_answer,
    candidates=ppo_candidates,
    diagnoses=DIAGNOSES,
    formula="L = −mean(min(ρA, clip(ρ, 1 − ε, 1 + ε)A)), ρ = exp(log π_θ − log π_old), "
    "value and gradient,",
    describe=_describe,
    grad_of="log_probs",
)


def measure_ppo_surrogate(fn: Callable[..., Any], **options: Any) -> dict[str, Any]:
    """Call ``fn`` on every case; plain numbers (loss value, ∂L/∂log_probs)."""
    return measure_cases(SPEC, fn, options)


@finite_rows
def judge_ppo_surrogate(measurement: dict[str, Any], **options: Any) -> Report:
    """Compare value and gradient at θ_old and at moved θ; name the mistake that fits."""
    return judge_cases(SPEC, measurement, options)


CHECK = Check("ppo_surrogate", measure_ppo_surrogate, judge_ppo_surrogate, fresh_instances=True)


def check_ppo_surrogate(fn: Callable[..., Any], *, timeout: float = 5.0, **options: Any) -> Report:
    """Check ``fn(log_probs, old_log_probs, advantages, clip) -> L`` (a scalar to minimise):
    L = −mean(min(ρA, clip(ρ, 1 − ε, 1 + ε)A)), ρ = exp(log_probs − old_log_probs), with its
    gradient with respect to ``log_probs``, at θ = θ_old and at a moved θ."""
    return run_check(CHECK, fn, timeout=timeout, **options)
