"""Reference quantities computed once per problem and cached: ∇J two ways, and the exact
expected gradient of a trusted reference estimator (used to name a learner's mistake)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from pgcheck.exact.expectation import (
    Evaluator,
    Expectation,
    pairwise_expectation,
    separable_expectation,
)
from pgcheck.exact.vocabulary import requested_names
from pgcheck.problems import Problem

_GRAD_J: dict[str, Tensor] = {}
_GRAD_FD: dict[str, Tensor] = {}
_REF: dict[tuple[str, str, str], Tensor] = {}


def grad_j(prob: Problem) -> Tensor:
    """∇J at θ₀ by autograd of the exact J (cached)."""
    if prob.name not in _GRAD_J:
        _GRAD_J[prob.name] = prob.grad_J(prob.theta0)
    return _GRAD_J[prob.name]


def grad_j_fd(prob: Problem) -> Tensor:
    """∇J at θ₀ by central finite differences of the exact J (cached)."""
    if prob.name not in _GRAD_FD:
        _GRAD_FD[prob.name] = prob.grad_J_fd(prob.theta0)
    return _GRAD_FD[prob.name]


def reference_expectation(code: str, fn: Callable[..., Any], prob: Problem, mode: str) -> Tensor:
    """E[−∇L] of a trusted reference estimator (cached per code, problem and mode)."""
    key = (f"{code}@{id(fn)}", prob.name, mode)
    if key not in _REF:
        ev = Evaluator(fn, requested_names(fn), timeout=60.0, trusted=True)
        exp: Expectation | None
        if mode == "mixing":
            exp = pairwise_expectation(ev, prob)
        else:
            exp, _ = separable_expectation(ev, prob, 1)
        if exp is None:
            raise RuntimeError(f"reference {code} mixes trajectories")
        _REF[key] = torch.tensor(exp.expected_grad, dtype=torch.float64)
    return _REF[key]
