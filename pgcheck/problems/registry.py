"""The named problems, registered explicitly in one place, and the default suite.

:func:`get` builds a named instance once; :func:`remember` records a custom problem a check
was given, so that :func:`find` (used by the judges and by plots) can look it up by name.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from pgcheck.problems.base import Problem
from pgcheck.problems.discounted import random_discounted_mdp
from pgcheck.problems.gaussian import GaussianBandit, gaussian_bandit
from pgcheck.problems.linear_gaussian import linear_gaussian
from pgcheck.problems.tabular import categorical_bandit, random_mdp

#: The default suite: no common mistake can hide in all of them at once.
#: γ < 1 (catches a missing γ^t) and γ = 1; random termination (lengths differ: catches a
#: forgotten mask and per-episode means); action-dependent rewards (catches off-by-one
#: reward-to-go); non-uniform linear, tabular and MLP policies; H ≥ 3 (timing bugs).
SUITE_NAMES = ("mdp-linear", "mdp-mlp", "mdp-tabular-undiscounted", "bandit", "gaussian")
#: Multi-step linear-Gaussian instances (continuous states and actions): a learned log σ with
#: γ < 1, and a fixed σ with γ = 1 and noisy dynamics. They catch the timing bugs a one-step
#: bandit hides (a missing γ^t, reward-to-go off by one) for Gaussian losses.
SUITE_NAMES = SUITE_NAMES + ("lqg-sigma", "lqg-noise-undiscounted")

#: Small instances (few trajectories) for losses that mix trajectories in a batch: every
#: batch of two is enumerated.
MIXING_NAMES = ("mdp-small", "bandit", "gaussian-small")


def _small_gaussian() -> GaussianBandit:
    bandit = gaussian_bandit(18, n_contexts=1, n_features=2, name="gaussian-small")
    bandit.n_nodes = 8  # exact for polynomials of degree ≤ 15; 64 batches of two
    return bandit


#: name -> builder of every named instance.
BUILDERS: dict[str, Callable[[], Problem]] = {
    "mdp-linear": lambda: random_mdp(
        11, n_states=3, n_actions=2, horizon=3, gamma=0.9, policy="linear", name="mdp-linear"
    ),
    "mdp-mlp": lambda: random_mdp(
        12, n_states=3, n_actions=3, horizon=3, gamma=0.8, policy="mlp", name="mdp-mlp"
    ),
    "mdp-tabular-undiscounted": lambda: random_mdp(
        13,
        n_states=3,
        n_actions=2,
        horizon=4,
        gamma=1.0,
        policy="tabular",
        fanout=1,
        name="mdp-tabular-undiscounted",
    ),
    "bandit": lambda: categorical_bandit(14, n_actions=4, name="bandit"),
    "gaussian": lambda: gaussian_bandit(15, name="gaussian"),
    "mdp-small": lambda: random_mdp(
        16,
        n_states=2,
        n_actions=2,
        horizon=2,
        gamma=0.9,
        policy="linear",
        fanout=1,
        name="mdp-small",
    ),
    "gaussian-small": _small_gaussian,
    "discounted": lambda: random_discounted_mdp(17, name="discounted"),
    "lqg-sigma": lambda: linear_gaussian(
        19, horizon=3, gamma=0.9, learn_sigma=True, sigma=0.6, name="lqg-sigma"
    ),
    "lqg-noise-undiscounted": lambda: linear_gaussian(
        20,
        horizon=2,
        gamma=1.0,
        learn_sigma=False,
        sigma=1.4,
        noise=0.5,
        name="lqg-noise-undiscounted",
    ),
    "lqg-h4": lambda: linear_gaussian(
        21, horizon=4, gamma=0.95, learn_sigma=True, sigma=0.8, n_nodes=6, name="lqg-h4"
    ),
}

# custom problems seen by the checks, by name
_SEEN: dict[str, Problem] = {}


@cache
def get(name: str) -> Problem:
    """A named instance (built once, then cached)."""
    if name not in BUILDERS:
        raise KeyError(f"unknown problem {name!r}; known: {', '.join(BUILDERS)}")
    return BUILDERS[name]()


def default_suite() -> list[Problem]:
    """The instances used when no problem is given."""
    return [get(n) for n in SUITE_NAMES]


def remember(problem: Problem) -> Problem:
    """Record a problem so that :func:`find` knows it by name; returns it."""
    _SEEN[problem.name] = problem
    return problem


def find(name: str) -> Problem:
    """A problem by name: one a check was given, else a named instance."""
    return _SEEN[name] if name in _SEEN else get(name)
