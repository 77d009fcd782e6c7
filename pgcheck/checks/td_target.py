"""Check a learner's one-step TD target for a critic.

``check_td_target(fn)`` (registered as ``"td_target"``) calls ``fn(rewards, next_values,
terminated, truncated, gamma)`` on random batches ``[N]`` and compares with

    y_t = r_t + γ (1 − terminated_t) V(s_{t+1}),

which bootstraps after a truncation (a time limit cut the episode; its future is not zero)
and not after a termination. ``next_values`` require grad: the target is a constant for the
critic's regression (the semi-gradient), so it must not carry a gradient.

Recognised mistakes: the bootstrap kept after termination, no bootstrap after truncation
(masking with terminated or truncated), the mask inverted, γ missing, the reward alone,
the target not detached from the critic.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from pgcheck.checks.base import Check, finite_rows, instance_seed, run_check
from pgcheck.checks.casewise import Answer, CaseSpec, as_tensor, judge_cases, measure_cases
from pgcheck.report import Report


def td_cases(seed: int | None = None) -> list[dict[str, Any]]:
    """Fixed random batches with terminations and truncations, γ ∈ {0.9, 0.99, 1, 0.5}
    (``seed``: fresh batches of the same sizes, γ and kinds, see :func:`instance_seed`)."""
    rng = np.random.default_rng(instance_seed(1_212, seed))
    cases = []
    for n, gamma in ((1, 0.9), (6, 0.99), (8, 1.0), (10, 0.5)):
        kind = rng.integers(0, 3, n)  # 0 running, 1 terminated, 2 truncated
        if n > 2:
            kind[:3] = [0, 1, 2]
        cases.append(
            {
                "rewards": np.round(rng.normal(1.0, 1.0, n), 3).tolist(),
                "next_values": np.round(rng.normal(3.0, 2.0, n), 3).tolist(),
                "terminated": (kind == 1).astype(float).tolist(),
                "truncated": (kind == 2).astype(float).tolist(),
                "gamma": gamma,
            }
        )
    return cases


def _arrays(case: dict[str, Any]) -> tuple[np.ndarray, ...]:
    keys = ("rewards", "next_values", "terminated", "truncated")
    return tuple(np.array(case[k], dtype=np.float64) for k in keys)


def td_reference(case: dict[str, Any]) -> Answer:
    """y = r + γ (1 − terminated) V(s')."""
    r, vn, term, _ = _arrays(case)
    return r + case["gamma"] * (1 - term) * vn, None


def td_candidates(case: dict[str, Any]) -> dict[str, Answer]:
    """What the common mistakes return on this case."""
    r, vn, term, trunc = _arrays(case)
    g = case["gamma"]
    done = np.maximum(term, trunc)
    out = {
        "td_bootstraps_terminal": r + g * vn,
        "td_no_bootstrap_at_truncation": r + g * (1 - done) * vn,
        "td_mask_inverted": r + g * term * vn,
        "td_missing_gamma": r + (1 - term) * vn,
        "td_reward_only": r,
    }
    return {k: (a, None) for k, a in out.items()}


DIAGNOSES: dict[str, str] = {
    "td_bootstraps_terminal": "You bootstrap after termination: a terminal state has no "
    "future, y = r there. Multiply γV(s') by (1 − terminated).",
    "td_no_bootstrap_at_truncation": "You drop the bootstrap after a truncation too (you mask "
    "with terminated or truncated). A time limit cut the episode, the pole was still up: keep "
    "γV(s') there and mask only when terminated.",
    "td_mask_inverted": "Your mask is inverted: you bootstrap only after termination. Use "
    "(1 − terminated).",
    "td_missing_gamma": "γ is missing: y = r + γ (1 − terminated) V(s').",
    "td_reward_only": "You return the reward alone; add the bootstrap γ (1 − terminated) V(s').",
}

DETACH = (
    "Your targets are right but carry a gradient into V(s'): regressing V(s) on a target that "
    "moves with the same network is not TD learning (the semi-gradient treats y as a "
    "constant). Detach next_values (or compute y under torch.no_grad())."
)


def _arguments(case: dict[str, Any]) -> dict[str, Any]:
    args: dict[str, Any] = {
        k: as_tensor(case[k]) for k in ("rewards", "next_values", "terminated", "truncated")
    }
    args["gamma"] = float(case["gamma"])
    return args


SPEC = CaseSpec(
    name="td_target",
    public="check_td_target",
    cases=td_cases,
    arguments=_arguments,
    shape=lambda case: (len(case["rewards"]),),
    what="the TD targets y_t",
    reference=td_reference,
    candidates=td_candidates,
    diagnoses=DIAGNOSES,
    formula="y_t = r_t + γ(1 − terminated_t)V(s_{t+1})",
    describe=lambda case: f"N={len(case['rewards'])}, γ={case['gamma']}",
    critic="next_values",
    detach_diagnosis="target_not_detached",
    detach_message=DETACH,
)


def measure_td_target(fn: Callable[..., Any], **options: Any) -> dict[str, Any]:
    """Call ``fn`` on every batch; plain numbers (targets, attached-to-critic flags)."""
    return measure_cases(SPEC, fn, options)


@finite_rows
def judge_td_target(measurement: dict[str, Any], **options: Any) -> Report:
    """Compare with y = r + γ(1 − terminated)V(s'); name the mistake that fits every batch."""
    return judge_cases(SPEC, measurement, options)


CHECK = Check("td_target", measure_td_target, judge_td_target, fresh_instances=True)


def check_td_target(fn: Callable[..., Any], *, timeout: float = 5.0, **options: Any) -> Report:
    """Check ``fn(rewards, next_values, terminated, truncated, gamma) -> [N]`` (float64 [N]
    tensors; ``next_values`` require grad) against y = r + γ(1 − terminated)V(s'), detached."""
    return run_check(CHECK, fn, timeout=timeout, **options)
