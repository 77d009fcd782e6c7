"""Check a learner's generalised advantage estimator GAE(λ) against exact values.

``check_gae(fn)`` (registered as ``"gae"``) calls ``fn(rewards, values, next_values,
terminated, dones, gamma, lam)`` on random rollouts ``[T, N]`` (time first, N environments)
with episode ends by termination and by truncation inside the rollout, and compares with

    δ_t = r_t + γ (1 − terminated_t) V(s_{t+1}) − V(s_t),
    Â_t = δ_t + γλ (1 − done_t) Â_{t+1},    Â_T = 0 beyond the rollout,

where ``dones = terminated or truncated`` ends the episode (the sum stops) and only
``terminated`` removes the bootstrap V(s_{t+1}) (a truncated episode's future is not zero).
The reference is computed independently as the explicit sum
Â_t = Σ_{k≥0} (γλ)^k Π_{j<k} (1 − done_{t+j}) δ_{t+k}. ``values`` require grad: the advantages
must not carry a gradient into the critic.

Recognised mistakes: the sum not cut at episode ends (no done mask), the bootstrap kept after
termination, no bootstrap after truncation, both masks missing, λ or γ missing from the
trace, the one-step TD advantage (λ = 0) or the λ-return Â + V returned, the critic not
detached.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from pgcheck.checks.base import Check, finite_rows, instance_seed, run_check
from pgcheck.checks.casewise import Answer, CaseSpec, as_tensor, judge_cases, measure_cases
from pgcheck.report import Report


def gae_cases(seed: int | None = None) -> list[dict[str, Any]]:
    """Fixed random rollouts: T ∈ {1, 4, 9, 12}, N ∈ {1, 3}, γ, λ ∈ [0, 1], ends inside
    (``seed``: fresh rollouts of the same shapes, γ, λ and ends, see :func:`instance_seed`)."""
    rng = np.random.default_rng(instance_seed(909, seed))
    cases = []
    for T, N, gamma, lam in ((1, 2, 0.9, 0.95), (4, 1, 0.99, 0.0), (9, 3, 0.9, 0.8),
                             (12, 3, 1.0, 0.7), (9, 2, 0.8, 1.0)):  # fmt: skip
        terminated = rng.random((T, N)) < 0.2
        truncated = (rng.random((T, N)) < 0.2) & ~terminated
        if T > 3:  # make sure both kinds of end occur inside the rollout
            terminated[1, 0], truncated[1, 0] = True, False
            truncated[T - 2, N - 1], terminated[T - 2, N - 1] = True, False
        cases.append(
            {
                "rewards": np.round(rng.normal(1.0, 1.0, (T, N)), 3).tolist(),
                "values": np.round(rng.normal(2.0, 1.5, (T, N)), 3).tolist(),
                "next_values": np.round(rng.normal(2.0, 1.5, (T, N)), 3).tolist(),
                "terminated": terminated.astype(float).tolist(),
                "dones": (terminated | truncated).astype(float).tolist(),
                "gamma": gamma,
                "lam": lam,
            }
        )
    return cases


def gae_recursion(
    r: np.ndarray,
    v: np.ndarray,
    v_next: np.ndarray,
    boot: np.ndarray,
    carry: np.ndarray,
) -> np.ndarray:
    """Â_t = δ_t + carry_t Â_{t+1} with δ_t = r_t + boot_t V(s_{t+1}) − V(s_t), Â_T = 0."""
    delta = r + boot * v_next - v
    adv = np.zeros_like(delta)
    last = np.zeros(delta.shape[1:])
    for t in range(len(delta) - 1, -1, -1):
        last = delta[t] + carry[t] * last
        adv[t] = last
    return adv


def _arrays(case: dict[str, Any]) -> tuple[np.ndarray, ...]:
    keys = ("rewards", "values", "next_values", "terminated", "dones")
    return tuple(np.array(case[k], dtype=np.float64) for k in keys)


def gae_reference(case: dict[str, Any]) -> Answer:
    """The explicit sum Â_t = Σ_k (γλ)^k Π_{j<k}(1 − done_{t+j}) δ_{t+k} (no recursion)."""
    r, v, vn, term, done = _arrays(case)
    g, lam = case["gamma"], case["lam"]
    delta = r + g * (1 - term) * vn - v
    T = len(r)
    adv = np.zeros_like(r)
    for t in range(T):
        weight = np.ones(r.shape[1])
        for k in range(T - t):
            adv[t] += weight * delta[t + k]
            weight = weight * g * lam * (1 - done[t + k])
    return adv, None


def gae_candidates(case: dict[str, Any]) -> dict[str, Answer]:
    """What the common mistakes return on this case."""
    r, v, vn, term, done = _arrays(case)
    g, lam = case["gamma"], case["lam"]
    right = gae_recursion(r, v, vn, g * (1 - term), g * lam * (1 - done))
    out = {
        "gae_no_done_mask": gae_recursion(r, v, vn, g * (1 - term), g * lam + 0 * done),
        "gae_bootstraps_terminal": gae_recursion(r, v, vn, g + 0 * term, g * lam * (1 - done)),
        "gae_no_bootstrap_at_truncation": gae_recursion(
            r, v, vn, g * (1 - done), g * lam * (1 - done)
        ),
        "gae_no_masks": gae_recursion(r, v, vn, g + 0 * term, g * lam + 0 * done),
        "gae_missing_lambda": gae_recursion(r, v, vn, g * (1 - term), g * (1 - done)),
        "gae_missing_gamma_in_trace": gae_recursion(r, v, vn, g * (1 - term), lam * (1 - done)),
        "gae_td_only": r + g * (1 - term) * vn - v,
        "gae_lambda_return": right + v,
    }
    return {k: (a, None) for k, a in out.items()}


DIAGNOSES: dict[str, str] = {
    "gae_no_done_mask": "Your sum runs across episode ends: an advantage of one episode "
    "collects the TD errors of the next. Cut the recursion where an episode ends: "
    "Â_t = δ_t + γλ (1 − done_t) Â_{t+1}.",
    "gae_bootstraps_terminal": "You bootstrap after termination: a terminated episode has no "
    "future, so δ_t = r_t − V(s_t) there. Multiply γV(s_{t+1}) by (1 − terminated_t).",
    "gae_no_bootstrap_at_truncation": "You drop V(s_{t+1}) after a truncation too (you mask "
    "with done instead of terminated). A truncated episode was cut by a time limit, its "
    "future is not zero: keep γV(s_{t+1}) there and mask it only when terminated.",
    "gae_no_masks": "Neither the episode ends nor termination are taken into account: cut the "
    "sum with (1 − done_t) and drop the bootstrap with (1 − terminated_t).",
    "gae_missing_lambda": "Your trace decays by γ only: that is GAE(1) whatever λ is. Use "
    "γλ in Â_t = δ_t + γλ (1 − done_t) Â_{t+1}.",
    "gae_missing_gamma_in_trace": "Your trace decays by λ only; it should decay by γλ.",
    "gae_td_only": "You return the one-step TD error δ_t (that is GAE(0)); add the "
    "discounted later errors: Â_t = δ_t + γλ (1 − done_t) Â_{t+1}.",
    "gae_lambda_return": "You return the λ-return Â_t + V(s_t) (the critic's target); the "
    "advantage is that minus V(s_t).",
}

DETACH = (
    "Your advantages are right but carry a gradient into the critic's values: the actor's "
    "loss would then push V around too. Compute them from detached values "
    "(values.detach(), or under torch.no_grad())."
)


def _describe(case: dict[str, Any]) -> str:
    T, N = len(case["rewards"]), len(case["rewards"][0])
    return f"T={T}, N={N}, γ={case['gamma']}, λ={case['lam']}"


def _arguments(case: dict[str, Any]) -> dict[str, Any]:
    args: dict[str, Any] = {
        k: as_tensor(case[k]) for k in ("rewards", "values", "next_values", "terminated", "dones")
    }
    args["gamma"], args["lam"] = float(case["gamma"]), float(case["lam"])
    return args


SPEC = CaseSpec(
    name="gae",
    public="check_gae",
    cases=gae_cases,
    arguments=_arguments,
    shape=lambda case: (len(case["rewards"]), len(case["rewards"][0])),
    what="the advantages Â_t",
    reference=gae_reference,
    candidates=gae_candidates,
    diagnoses=DIAGNOSES,
    formula="Â_t = δ_t + γλ(1 − done_t)Â_{t+1}, δ_t = r_t + γ(1 − terminated_t)V(s_{t+1}) − V(s_t)",
    describe=_describe,
    critic="values",
    detach_diagnosis="critic_not_detached",
    detach_message=DETACH,
)


def measure_gae(fn: Callable[..., Any], **options: Any) -> dict[str, Any]:
    """Call ``fn`` on every rollout; plain numbers (advantages, attached-to-critic flags)."""
    return measure_cases(SPEC, fn, options)


@finite_rows
def judge_gae(measurement: dict[str, Any], **options: Any) -> Report:
    """Compare with the explicit-sum reference; name the mistake that fits every rollout."""
    return judge_cases(SPEC, measurement, options)


CHECK = Check("gae", measure_gae, judge_gae, fresh_instances=True)


def check_gae(fn: Callable[..., Any], *, timeout: float = 5.0, **options: Any) -> Report:
    """Check ``fn(rewards, values, next_values, terminated, dones, gamma, lam) -> [T, N]``.

    All arrays are ``[T, N]`` float64 tensors (``values`` require grad); the result must be
    Â_t = δ_t + γλ(1 − done_t)Â_{t+1} with δ_t = r_t + γ(1 − terminated_t)V(s_{t+1}) − V(s_t),
    detached from the critic.
    """
    return run_check(CHECK, fn, timeout=timeout, **options)
