"""The named problems, registered explicitly in one place, and the default suite.

:func:`get` builds a named instance once; :func:`remember` records a custom problem a check
was given, so that :func:`find` (used by the judges and by plots) can look it up by name.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import torch

from pgcheck.problems.base import Problem
from pgcheck.problems.discounted import random_discounted_mdp
from pgcheck.problems.gaussian import GaussianBandit, gaussian_bandit
from pgcheck.problems.linear_gaussian import linear_gaussian
from pgcheck.problems.policies import LinearSoftmax
from pgcheck.problems.tabular import FiniteHorizonMDP, categorical_bandit, random_mdp

#: The default suite: no common mistake can hide in all of them at once.
#: γ < 1 (catches a missing γ^t) and γ = 1; random termination (lengths differ: catches a
#: forgotten mask and per-episode means); action-dependent rewards (catches off-by-one
#: reward-to-go); non-uniform linear, tabular and MLP policies; H ≥ 3 (timing bugs).
SUITE_NAMES: tuple[str, ...] = (
    "mdp-linear",
    "mdp-mlp",
    "mdp-tabular-undiscounted",
    "bandit",
    "gaussian",
)
#: Multi-step linear-Gaussian instances (continuous states and actions): a learned log σ with
#: γ < 1, and a fixed σ with γ = 1 and noisy dynamics. They catch the timing bugs a one-step
#: bandit hides (a missing γ^t, reward-to-go off by one) for Gaussian losses.
SUITE_NAMES = SUITE_NAMES + ("lqg-sigma", "lqg-noise-undiscounted")

#: Instances for losses that mix trajectories in a batch: every batch of three is enumerated,
#: so they have few trajectories, but "mdp-mix" is as long as the main suite (H = 4).
MIXING_NAMES = ("mdp-mix", "bandit", "gaussian-small")


def _small_gaussian() -> GaussianBandit:
    bandit = gaussian_bandit(18, n_contexts=1, n_features=2, name="gaussian-small")
    bandit.n_nodes = 8  # exact for polynomials of degree ≤ 15; 64 batches of two
    return bandit


def _mixing_mdp() -> FiniteHorizonMDP:
    """A chain of S = 5 states, A = 2, H = 4, γ = 0.9: action 0 moves on (the episode ends
    with probability 0.25), action 1 ends the episode. 8 trajectories of lengths 1–4, so all
    120 multisets of three are enumerable; T = 4, A = 2, S = 5 and B = 3 all differ."""
    g = torch.Generator().manual_seed(19)
    S, A, H = 5, 2, 4
    P = torch.zeros(S, A, S, dtype=torch.float64)
    for s in range(S - 1):
        P[s, 0, s + 1] = 0.75
    R = torch.randn(S, A, generator=g, dtype=torch.float64) + 0.5
    policy = LinearSoftmax(torch.randn(S, A, 3, generator=g, dtype=torch.float64))
    theta0 = 0.8 * torch.randn(policy.n_params, generator=g, dtype=torch.float64)
    p0 = torch.zeros(S, dtype=torch.float64)
    p0[0] = 1.0
    return FiniteHorizonMDP(p0, P, R, H, 0.9, policy, theta0, "mdp-mix")


#: name -> builder of every named instance.
BUILDERS: dict[str, Callable[[], Problem]] = {
    # B (the batch: every trajectory), T, A and S differ on every instance
    "mdp-linear": lambda: random_mdp(
        11,
        n_states=4,
        n_actions=2,
        horizon=3,
        gamma=0.9,
        policy="linear",
        n_features=5,
        name="mdp-linear",
    ),
    "mdp-mlp": lambda: random_mdp(
        12,
        n_states=2,
        n_actions=3,
        horizon=4,
        gamma=0.8,
        policy="mlp",
        n_features=5,
        fanout=1,
        name="mdp-mlp",
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
    "mdp-mix": _mixing_mdp,
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
