"""Problems with exact answers: J(θ) in closed form or by a solve, ∇J three independent ways.

* :mod:`.base` — the declared interface (:class:`Problem`) and the padded :class:`Trajectories`
* :mod:`.policies` — tabular, linear and MLP softmax policies
* :func:`random_mdp` — finite-horizon tabular MDPs with termination (every trajectory enumerable)
* :func:`categorical_bandit` — one state, A actions
* :func:`gaussian_bandit` — contextual Gaussian policy, quadratic reward
* :func:`random_discounted_mdp` — infinite-horizon discounted MDP (linear solve)
* :func:`linear_gaussian` — multi-step linear dynamics, Gaussian policy, quadratic reward
* :func:`random_episodic_mdp` — episodic tabular MDP (every episode ends; γ = 1 allowed), and
  the exact tables of the policy gradient theorem in :mod:`.episodic`
* :mod:`.registry` — the named instances (:func:`get`) and the :func:`default_suite`

To add a problem: subclass :class:`Problem` in a module of its own, then add a builder to
:data:`pgcheck.problems.registry.BUILDERS` (and to ``SUITE_NAMES`` to check every loss on it).
"""

from __future__ import annotations

from pgcheck.problems.base import Problem, Trajectories, discounted_cumsum, finite_differences
from pgcheck.problems.discounted import DiscountedMDP, random_discounted_mdp
from pgcheck.problems.episodic import random_episodic_mdp
from pgcheck.problems.gaussian import GaussianBandit, gaussian_bandit, hermite_nodes
from pgcheck.problems.linear_gaussian import LinearGaussianProblem, linear_gaussian
from pgcheck.problems.registry import (
    MIXING_NAMES,
    SUITE_NAMES,
    default_suite,
    find,
    get,
    remember,
)
from pgcheck.problems.tabular import FiniteHorizonMDP, categorical_bandit, random_mdp

__all__ = [
    "MIXING_NAMES",
    "SUITE_NAMES",
    "DiscountedMDP",
    "FiniteHorizonMDP",
    "GaussianBandit",
    "LinearGaussianProblem",
    "Problem",
    "Trajectories",
    "categorical_bandit",
    "default_suite",
    "discounted_cumsum",
    "find",
    "finite_differences",
    "gaussian_bandit",
    "get",
    "hermite_nodes",
    "linear_gaussian",
    "random_discounted_mdp",
    "random_mdp",
    "remember",
    "random_episodic_mdp",
]
