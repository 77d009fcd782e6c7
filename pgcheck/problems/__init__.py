"""Problems with exact answers: J(θ) in closed form or by a solve, ∇J three independent ways.

* :func:`random_mdp` — finite-horizon tabular MDPs with termination (every trajectory enumerable)
* :func:`categorical_bandit` — one state, A actions
* :func:`gaussian_bandit` — contextual Gaussian policy, quadratic reward
* :func:`random_discounted_mdp` — infinite-horizon discounted MDP (linear solve)
* :func:`default_suite` — the instances :func:`pgcheck.check_pseudo_loss` uses by default
* :func:`get` — a named instance of the suite
"""

from __future__ import annotations

from functools import cache

from pgcheck.problems.base import Problem, Trajectories, discounted_cumsum, finite_differences
from pgcheck.problems.discounted import DiscountedMDP, random_discounted_mdp
from pgcheck.problems.gaussian import GaussianBandit, gaussian_bandit, hermite_nodes
from pgcheck.problems.tabular import FiniteHorizonMDP, categorical_bandit, random_mdp

__all__ = [
    "DiscountedMDP", "FiniteHorizonMDP", "GaussianBandit", "Problem", "Trajectories",
    "categorical_bandit", "default_suite", "discounted_cumsum", "finite_differences",
    "gaussian_bandit", "get", "hermite_nodes", "random_discounted_mdp",
    "random_mdp", "SUITE_NAMES", "MIXING_NAMES",
]

#: The default suite: no common mistake can hide in all of them at once.
#: γ < 1 (catches a missing γ^t) and γ = 1; random termination (lengths differ: catches a
#: forgotten mask and per-episode means); action-dependent rewards (catches off-by-one
#: reward-to-go); non-uniform linear, tabular and MLP policies; H ≥ 3 (timing bugs).
SUITE_NAMES = ("mdp-linear", "mdp-mlp", "mdp-tabular-undiscounted", "bandit", "gaussian")


@cache
def get(name: str) -> Problem:
    """A named instance (built once, then cached)."""
    builders = {
        "mdp-linear": lambda: random_mdp(11, n_states=3, n_actions=2, horizon=3, gamma=0.9,
                                         policy="linear", name="mdp-linear"),
        "mdp-mlp": lambda: random_mdp(12, n_states=3, n_actions=3, horizon=3, gamma=0.8,
                                      policy="mlp", name="mdp-mlp"),
        "mdp-tabular-undiscounted": lambda: random_mdp(
            13, n_states=3, n_actions=2, horizon=4, gamma=1.0, policy="tabular",
            fanout=1, name="mdp-tabular-undiscounted"),
        "bandit": lambda: categorical_bandit(14, n_actions=4, name="bandit"),
        "gaussian": lambda: gaussian_bandit(15, name="gaussian"),
        "mdp-small": lambda: random_mdp(16, n_states=2, n_actions=2, horizon=2, gamma=0.9,
                                        policy="linear", fanout=1, name="mdp-small"),
        "gaussian-small": lambda: _small_gaussian(),
        "discounted": lambda: random_discounted_mdp(17, name="discounted"),
    }
    if name not in builders:
        raise KeyError(f"unknown problem {name!r}; known: {', '.join(builders)}")
    return builders[name]()


def _small_gaussian() -> GaussianBandit:
    bandit = gaussian_bandit(18, n_contexts=1, n_features=2, name="gaussian-small")
    bandit.n_nodes = 8  # exact for polynomials of degree ≤ 15; 64 batches of two
    return bandit


def default_suite() -> list[Problem]:
    """The instances used when no problem is given."""
    return [get(n) for n in SUITE_NAMES]


#: Small instances (few trajectories) for losses that mix trajectories in a batch: every
#: batch of two is enumerated.
MIXING_NAMES = ("mdp-small", "bandit", "gaussian-small")
