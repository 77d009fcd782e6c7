"""pgcheck: is the gradient of your pseudo-loss a correct policy gradient?

>>> import pgcheck
>>> def pseudo_loss(log_probs, q_values, gamma, mask):
...     discount = gamma ** torch.arange(mask.shape[1])
...     return -(discount * q_values * log_probs * mask).sum(1).mean()
>>> pgcheck.check_pseudo_loss(pseudo_loss)

pgcheck enumerates every trajectory of small problems with exact answers, so the expected
gradient of your loss is compared with the exact ∇J with no sampling noise.

The layers, bottom up: :mod:`pgcheck.problems` (exact J and ∇J) → :mod:`pgcheck.exact` (the
exact expectation of a learner's gradient) → :mod:`pgcheck.diagnosis` (naming the mistake) →
:mod:`pgcheck.checks` (one module per check) → :mod:`pgcheck.report`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names below, for type checkers and editors
    from pgcheck import checks, diagnosis, exact, grading, problems
    from pgcheck.checks.continuous_rollout import check_continuous_rollout
    from pgcheck.checks.gae import check_gae
    from pgcheck.checks.log_prob import check_log_prob
    from pgcheck.checks.ppo_surrogate import check_ppo_surrogate
    from pgcheck.checks.pseudo_loss import check_pseudo_loss
    from pgcheck.checks.q_values import check_q_values
    from pgcheck.checks.registry import REGISTRY, register
    from pgcheck.checks.returns import check_returns
    from pgcheck.checks.rollout import check_rollout
    from pgcheck.checks.score_estimator import check_score_estimator
    from pgcheck.checks.score_function import check_score_function
    from pgcheck.checks.td_target import check_td_target
    from pgcheck.checks.theorem_gradient import check_theorem_gradient
    from pgcheck.checks.trajectory_log_prob import check_trajectory_log_prob
    from pgcheck.checks.value_loss import check_value_loss
    from pgcheck.checks.visitation import check_visitation
    from pgcheck.errors import ErrorKind
    from pgcheck.exact.vocabulary import VOCABULARY
    from pgcheck.report import Report

#: where each public name lives; imported on first use (PEP 562), so ``import pgcheck`` is
#: instant and only the first check pays for torch. The grading commands that never touch a
#: gradient (release, feedback) therefore start without torch.
_HOME = {
    **{
        f"check_{name}": f"pgcheck.checks.{name}"
        for name in (
            "continuous_rollout",
            "gae",
            "log_prob",
            "ppo_surrogate",
            "pseudo_loss",
            "q_values",
            "returns",
            "rollout",
            "score_estimator",
            "score_function",
            "td_target",
            "theorem_gradient",
            "trajectory_log_prob",
            "value_loss",
            "visitation",
        )
    },  # fmt: skip
    "REGISTRY": "pgcheck.checks.registry",
    "register": "pgcheck.checks.registry",
    "ErrorKind": "pgcheck.errors",
    "VOCABULARY": "pgcheck.exact.vocabulary",
    "Report": "pgcheck.report",
}
_SUBPACKAGES = ("checks", "diagnosis", "exact", "grading", "problems")


def __getattr__(name: str) -> Any:
    """``pgcheck.NAME``: the public name, imported from its module on first use."""
    if name in _HOME:
        value = getattr(importlib.import_module(_HOME[name]), name)
    elif name in _SUBPACKAGES:
        value = importlib.import_module(f"pgcheck.{name}")
        if name == "checks":  # with its registry, so pgcheck.checks.registry.REGISTRY works
            importlib.import_module("pgcheck.checks.registry")
    else:
        raise AttributeError(f"module 'pgcheck' has no attribute {name!r}")
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__version__ = "0.1.0"

__all__ = [
    "REGISTRY",
    "VOCABULARY",
    "ErrorKind",
    "Report",
    "check_continuous_rollout",
    "check_log_prob",
    "check_pseudo_loss",
    "check_returns",
    "check_rollout",
    "check_score_estimator",
    "check_score_function",
    "check_trajectory_log_prob",
    "check_value_loss",
    "grading",
    "problems",
    "register",
    "check_gae",
    "check_ppo_surrogate",
    "check_td_target",
    "check_q_values",
    "check_visitation",
    "check_theorem_gradient",
    "checks",
    "diagnosis",
    "exact",
]
