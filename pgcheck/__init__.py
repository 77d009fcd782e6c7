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

from pgcheck import grading, problems
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
]
