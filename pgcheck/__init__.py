"""pgcheck: is the gradient of your pseudo-loss a correct policy gradient?

>>> import pgcheck
>>> def pseudo_loss(log_probs, q_values, gamma, mask):
...     discount = gamma ** torch.arange(mask.shape[1])
...     return -(discount * q_values * log_probs * mask).sum(1).mean()
>>> pgcheck.check_pseudo_loss(pseudo_loss)

pgcheck enumerates every trajectory of small problems with exact answers, so the expected
gradient of your loss is compared with the exact ∇J with no sampling noise.
"""

from pgcheck import estimators, grading, problems
from pgcheck.checks import (
    check_log_prob,
    check_pseudo_loss,
    check_returns,
    check_rollout,
    check_score_estimator,
    check_score_function,
    check_trajectory_log_prob,
    check_value_loss,
)
from pgcheck.registry import REGISTRY, register
from pgcheck.report import Report
from pgcheck.vocabulary import VOCABULARY

__version__ = "0.1.0"

__all__ = ["REGISTRY", "Report", "VOCABULARY", "check_log_prob", "check_pseudo_loss",
           "check_returns", "check_rollout", "check_score_estimator", "check_score_function",
           "check_trajectory_log_prob", "check_value_loss", "estimators", "grading", "problems",
           "register"]
