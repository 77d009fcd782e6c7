"""Every check pgcheck knows, registered explicitly in this one place.

To add a check: write ``pgcheck/checks/<name>.py`` with ``measure``, ``judge``,
``CHECK = Check(name, measure, judge)`` and a documented ``check_<name>`` front, then add
the module to :data:`BUILT_IN` below and the front to ``pgcheck/__init__.py``. An extension
outside pgcheck (e.g. a course's own check) calls :func:`register`.
"""

from __future__ import annotations

from pgcheck.checks import (
    continuous_rollout,
    gae,
    log_prob,
    ppo_surrogate,
    pseudo_loss,
    q_values,
    returns,
    rollout,
    score_estimator,
    score_function,
    td_target,
    theorem_gradient,
    trajectory_log_prob,
    value_loss,
    visitation,
)
from pgcheck.checks.base import Check, Judge, Measure

#: The checks that ship with pgcheck, in the order the course meets them.
BUILT_IN: tuple[Check, ...] = (
    score_function.CHECK,
    score_estimator.CHECK,
    log_prob.CHECK,
    trajectory_log_prob.CHECK,
    pseudo_loss.CHECK,
    returns.CHECK,
    rollout.CHECK,
    value_loss.CHECK,
    continuous_rollout.CHECK,
    q_values.CHECK,
    visitation.CHECK,
    theorem_gradient.CHECK,
    td_target.CHECK,
    gae.CHECK,
    ppo_surrogate.CHECK,
)

#: name -> check.
REGISTRY: dict[str, Check] = {check.name: check for check in BUILT_IN}


def register(name: str, measure: Measure, judge: Judge) -> Check:
    """Register an extension check under ``name`` and return it."""
    check = Check(name, measure, judge)
    REGISTRY[name] = check
    return check
