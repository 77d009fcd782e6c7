"""check_pseudo_loss: is autograd's gradient of a pseudo-loss a correct policy gradient?

Learner side (:func:`measure`): the exact E[−∇L] of the loss on every instance, computed by
:mod:`pgcheck.exact`. Reference side (:func:`judge`): ∇J, the decomposition and the verdict
rules of :mod:`pgcheck.diagnosis.verdict`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

import torch
from torch import Tensor

from pgcheck import problems
from pgcheck.checks.base import Check, failed, run_check
from pgcheck.diagnosis import mistakes as text
from pgcheck.diagnosis.verdict import CHECK as NAME
from pgcheck.diagnosis.verdict import Evidence, decide
from pgcheck.errors import ErrorKind
from pgcheck.exact.expectation import (
    Evaluator,
    Expectation,
    LearnerFailure,
    extract_weights,
    pairwise_expectation,
    separable_expectation,
)
from pgcheck.exact.references import grad_j, grad_j_fd
from pgcheck.exact.vocabulary import VocabularyError, provides, requested_names
from pgcheck.problems import Problem
from pgcheck.report import Report, Row

ProblemSpec = None | str | Problem | Sequence[str | Problem]


# =========================================================================== instances
def _lookup(spec: str | Problem) -> Problem:
    prob = problems.get(spec) if isinstance(spec, str) else spec
    if not isinstance(prob, Problem) or not prob.enumerable:
        name = getattr(prob, "name", repr(prob))
        raise ValueError(
            f"problem {name!r} has no finite set of trajectories to check "
            "a pseudo-loss on; use a finite-horizon problem or a bandit"
        )
    return problems.remember(prob)


def resolve(problem: ProblemSpec, names: Sequence[str]) -> tuple[list[Problem], list[Problem]]:
    """The instances for the separable check and those for the batch-of-two check."""
    if problem is None or problem == "default":
        main = [p for p in problems.default_suite() if provides(p, names)]
        mixing = [problems.get(n) for n in problems.MIXING_NAMES]
        mixing = [p for p in mixing if provides(p, names)]
        for p in main + mixing:
            problems.remember(p)
    else:
        specs = [problem] if isinstance(problem, str | Problem) else list(problem)
        main = [_lookup(s) for s in specs]
        incompatible = [p.name for p in main if not provides(p, names)]
        if incompatible:
            raise ValueError(
                f"your loss asks for {', '.join(sorted(set(names)))}, which "
                f"problem(s) {', '.join(incompatible)} cannot provide"
            )
        mixing = [p for p in main if len(p.support()[0]) <= 40] or [
            p for p in (problems.get(n) for n in problems.MIXING_NAMES) if provides(p, names)
        ]
    if not main:
        raise ValueError(
            "your loss asks for both categorical inputs (logits/probs/values) and "
            "Gaussian ones (mean/std); no problem has both"
        )
    return main, mixing


# =========================================================================== measure
def measure(
    loss_fn: Callable[..., Any],
    problem: ProblemSpec = None,
    *,
    batch_size: int = 8,
    timeout: float = 5.0,
    entropy_coef: float = 0.0,
    **_: Any,
) -> dict[str, Any]:
    """Learner side: the exact E[−∇L] of ``loss_fn`` on each instance, as plain numbers."""
    start = time.perf_counter()
    try:
        names = requested_names(loss_fn)
    except VocabularyError as exc:
        return failed(ErrorKind.VOCABULARY, str(exc))
    try:
        main, mixing = resolve(problem, names)
        if entropy_coef:
            main = _with_entropy(main, problem)
            mixing = [p for p in mixing if hasattr(p, "entropy_objective")]
    except (KeyError, ValueError) as exc:
        return failed(ErrorKind.PROBLEM, str(exc).strip("'\""))
    ev = Evaluator(loss_fn, names, timeout=timeout)
    results = _expectations(ev, main, mixing, batch_size)
    out: dict[str, Any] = {"names": names, "output": ev.output, "calls": ev.calls}
    if isinstance(results, LearnerFailure):
        out.update(failed(results.error.kind, results.error.message))
    else:
        mode, exps, weights = results
        out["mode"] = mode
        out["instances"] = [asdict(e) for e in exps]
        out["weights"] = weights
    out["seconds"] = time.perf_counter() - start
    return out


def _expectations(
    ev: Evaluator, main: list[Problem], mixing: list[Problem], batch_size: int
) -> tuple[str, list[Expectation], dict[str, Any] | None] | LearnerFailure:
    try:
        exps, weights = [], None
        for prob in main:
            exp, full = separable_expectation(ev, prob, batch_size)
            if exp is not None and full is None:  # checked one trajectory at a time
                exps.append(exp)
                continue
            if exp is None:
                return "mixing", [pairwise_expectation(ev, p) for p in mixing], None
            exps.append(exp)
            if (
                weights is None
                and full is not None
                and prob.action_kind == "categorical"
                and prob.horizon > 1
            ):
                w = extract_weights(prob, prob.support()[0], full, exp.reduction)
                weights = {"problem": prob.name, "w": w} if w is not None else None
        return "separable", exps, weights
    except LearnerFailure as failure:
        return failure


# =========================================================================== judge
def judge(
    measurement: dict[str, Any],
    problem: ProblemSpec = None,
    *,
    accept_missing_gamma_t: bool = False,
    batch_size: int = 8,
    entropy_coef: float = 0.0,
    **_: Any,
) -> Report:
    """Reference side: compare E[ĝ] with ∇J, decompose, diagnose, explain.

    With ``entropy_coef`` β ≠ 0 the target is ∇(J + β E[Σ_t γ^t H(π(·|s_t))]) instead of ∇J.
    """
    notes = _output_notes(measurement)
    if "error" in measurement:
        err = measurement["error"]
        report = Report.error(err["message"], check=NAME, diagnosis=err["kind"])
        report.notes = notes
        return report
    mode = measurement["mode"]
    probs = [problems.find(e["problem"]) for e in measurement["instances"]]
    gs = [torch.tensor(e["expected_grad"], dtype=torch.float64) for e in measurement["instances"]]
    for prob, g in zip(probs, gs, strict=True):
        if g.shape != prob.theta0.shape or not torch.isfinite(g).all():
            return Report.error("the measurement does not fit the problem", check=NAME)
    gjs = [grad_j(p) for p in probs]
    if entropy_coef:
        if not all(hasattr(p, "entropy_objective") for p in probs):
            return Report.error(_NO_ENTROPY, check=NAME, diagnosis=ErrorKind.PROBLEM)
        gjs = [gj + entropy_coef * _entropy_grad(p) for gj, p in zip(gjs, probs, strict=True)]
        notes = notes + [_ENTROPY_NOTE.format(beta=entropy_coef)]
    reductions = {e["reduction"] for e in measurement["instances"]}
    if "one-at-a-time" in reductions:
        notes = notes + [text.ONE_AT_A_TIME]
    evidence = Evidence(
        probs=probs,
        gs=gs,
        gjs=gjs,
        mode=mode,
        reductions=reductions,
        leaks=any(e["leaf_norms"].get("values", 0.0) > 0 for e in measurement["instances"]),
        weights=measurement.get("weights"),
        accept_missing_gamma_t=accept_missing_gamma_t,
        notes=notes,
        names=list(measurement.get("names") or []),
        figure_data={
            "problem": probs[0].name,
            "grad_J": gjs[0].tolist(),
            "expected_grad": gs[0].tolist(),
        },
    )
    evidence.rows = [
        _row(p, g, gj, a, rr, err, mode)
        for p, g, gj, (a, rr, err) in zip(probs, gs, gjs, evidence.parts, strict=True)
    ]
    return decide(evidence)


def _row(
    prob: Problem, g: Tensor, gj: Tensor, alpha: float, rr: float, err: float, mode: str
) -> Row:
    return Row(
        prob.name,
        {
            "∇J (exact)": gj.tolist(),
            "∇J (finite differences)": grad_j_fd(prob).tolist(),
            "E[−∇L] (your loss)": g.tolist(),
            "α": alpha,
            "‖r‖/‖E[−∇L]‖": rr,
            "‖E[−∇L] − ∇J‖/‖∇J‖": err,
            "batch": "all pairs (B=2)" if mode == "mixing" else "exact, per trajectory",
        },
    )


def _output_notes(measurement: dict[str, Any]) -> list[str]:
    out = measurement.get("output") or ""
    if not out:
        return []
    lines = out.splitlines()
    shown = "\n".join(lines[:5]) + ("\n…" if len(lines) > 5 else "")
    return [f"your loss printed (first lines shown):\n{shown}"]


_NO_ENTROPY = (
    "entropy_coef needs problems whose entropy objective E[Σ_t γ^t H(π(·|s_t))] is known in "
    "closed form (the linear-Gaussian problems, e.g. 'lqg-sigma')"
)
_ENTROPY_NOTE = (
    "Checked against the entropy-regularised objective J_β = J + β E[Σ_t γ^t H(π(·|s_t))] "
    "with β = {beta:g}: '∇J' in the table is ∇J_β."
)


def _with_entropy(probs: list[Problem], spec: ProblemSpec) -> list[Problem]:
    """The instances with a closed-form entropy objective (all of them if given explicitly)."""
    kept = probs
    if spec is None or spec == "default":
        kept = [p for p in probs if hasattr(p, "entropy_objective")]
    if not kept and probs:
        raise ValueError(_NO_ENTROPY)
    return kept


def _entropy_grad(prob: Problem) -> Tensor:
    """∇_θ E[Σ_t γ^t H(π(·|s_t))] at θ₀ by autograd of the closed form."""
    theta = prob.theta0.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        value = prob.entropy_objective(theta)  # type: ignore[attr-defined]
        if not value.requires_grad:  # σ fixed: the entropy does not depend on θ
            return torch.zeros_like(theta.detach())
        (grad,) = torch.autograd.grad(value, theta)
    return grad


CHECK = Check(NAME, measure, judge)


def check_pseudo_loss(
    loss_fn: Callable[..., Any],
    problem: ProblemSpec = None,
    *,
    accept_missing_gamma_t: bool = False,
    batch_size: int = 8,
    timeout: float = 5.0,
    entropy_coef: float = 0.0,
) -> Report:
    """Check that −∇_θ L of a pseudo-loss is an unbiased estimator of the policy gradient ∇J.

    The loss asks for its inputs by parameter name (``log_probs``, ``logits``, ``actions``,
    ``rewards``, ``mask``, ``gamma``, ``q_values``, ``returns``, ``values`` ... see
    :data:`pgcheck.exact.vocabulary.VOCABULARY`) and returns a scalar to minimise. On each
    problem every trajectory is enumerated, so E[−∇L] = Σ_τ p_θ(τ)(−∇L(τ)) is computed exactly
    and compared with ∇J: no sampling noise, the same verdict on every run.

    Args:
        loss_fn: the pseudo-loss.
        problem: None for the default suite, a problem name, a problem, or a list of them.
        accept_missing_gamma_t: accept Σ_t G_t ∇log π (the common convention without γ^t).
        batch_size: B used to express a sum over the batch as the scale α = B.
        timeout: seconds for all calls of ``loss_fn`` together.
        entropy_coef: β; check against ∇(J + β E[Σ_t γ^t H(π(·|s_t))]) instead of ∇J, on
            the problems where that objective is known in closed form (linear-Gaussian).

    Returns:
        A :class:`~pgcheck.report.Report` (truthy when passed).
    """
    return run_check(
        CHECK,
        loss_fn,
        problem=problem,
        accept_missing_gamma_t=accept_missing_gamma_t,
        batch_size=batch_size,
        timeout=timeout,
        entropy_coef=entropy_coef,
    )
