"""check_pseudo_loss: is autograd's gradient of a pseudo-loss a correct policy gradient?

Learner side (:func:`measure`): the exact E[−∇L] of the loss on every instance, computed by
:mod:`pgcheck.exact`. Reference side (:func:`judge`): ∇J, the decomposition and the verdict
rules of :mod:`pgcheck.diagnosis.verdict`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

import torch
from torch import Tensor

from pgcheck import problems
from pgcheck.checks.base import Check, failed, run_check, unknown_options, validate_timeout
from pgcheck.diagnosis import mistakes as text
from pgcheck.diagnosis.verdict import CHECK as NAME
from pgcheck.diagnosis.verdict import Evidence, verdict
from pgcheck.errors import ErrorKind
from pgcheck.exact.expectation import (
    Evaluator,
    Expectation,
    LearnerFailure,
    batch_expectation,
    extract_weights,
    policy_outputs,
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


#: Custom problems with at most this many trajectories are also used for the batch check.
MAX_MIXING_SUPPORT = 12


def resolve(problem: ProblemSpec, names: Sequence[str]) -> tuple[list[Problem], list[Problem]]:
    """The instances for the separable check and those for the batch-of-three check."""
    if problem is None or problem == "default":
        main = [p for p in problems.default_suite() if provides(p, names)]
        mixing = [problems.get(n) for n in problems.MIXING_NAMES]
        mixing = [p for p in mixing if provides(p, names)]
        for p in main + mixing:
            problems.remember(p)
    else:
        if isinstance(problem, str | Problem):
            specs = [problem]
        elif isinstance(problem, list | tuple) and problem:
            specs = list(problem)
        else:
            raise ValueError(
                f"problem={problem!r}: give None (the default suite), a problem name such as "
                f"'mdp-linear', a problem, or a non-empty list of them; names: "
                f"{', '.join(problems.registry.BUILDERS)}"
            )
        main = [_lookup(s) for s in specs]
        incompatible = [p.name for p in main if not provides(p, names)]
        if incompatible:
            raise ValueError(
                f"your loss asks for {', '.join(sorted(set(names)))}, which "
                f"problem(s) {', '.join(incompatible)} cannot provide"
            )
        mixing = [p for p in main if len(p.support()[0]) <= MAX_MIXING_SUPPORT] or [
            p for p in (problems.get(n) for n in problems.MIXING_NAMES) if provides(p, names)
        ]
    if not main:
        raise ValueError(
            "your loss asks for both categorical inputs (logits/probs/values) and "
            "Gaussian ones (mean/std); no problem has both"
        )
    return main, mixing


# =========================================================================== options
#: The options of check_pseudo_loss (besides ``problem``), with their defaults.
OPTIONS: dict[str, Any] = {
    "accept_missing_gamma_t": False,
    "batch_size": 8,
    "timeout": 5.0,
    "one_at_a_time": False,
    "entropy_coef": 0.0,
}
PUBLIC = "check_pseudo_loss"


def option_problem(options: dict[str, Any]) -> str | None:
    """A message for an unknown or invalid option of check_pseudo_loss, else None."""
    valid = ["problem", *OPTIONS]
    bad = unknown_options(PUBLIC, {k: v for k, v in options.items() if k not in valid}, valid)
    if bad is not None:
        return bad
    for key in ("accept_missing_gamma_t", "one_at_a_time"):
        if key in options and not isinstance(options[key], bool):
            return f"pgcheck.{PUBLIC}: {key}={options[key]!r}; use True or False."
    B = options.get("batch_size", OPTIONS["batch_size"])
    if isinstance(B, bool) or not isinstance(B, int) or B < 1:
        return (
            f"pgcheck.{PUBLIC}: batch_size={B!r}; give the number of trajectories per update "
            "as a whole number ≥ 1, e.g. batch_size=8."
        )
    beta = options.get("entropy_coef", OPTIONS["entropy_coef"])
    if (
        isinstance(beta, bool)
        or not isinstance(beta, int | float)
        or not math.isfinite(beta)
        or beta < 0
    ):
        return (
            f"pgcheck.{PUBLIC}: entropy_coef={beta!r}; give the entropy bonus's weight β as a "
            "number ≥ 0, e.g. entropy_coef=0.01."
        )
    return validate_timeout(PUBLIC, options.get("timeout", OPTIONS["timeout"]))


# =========================================================================== measure
def prepare(loss_fn: Callable[..., Any], problem: ProblemSpec = None, **options: Any) -> None:
    """Warm the caches the measurement needs (in the calling process, before it forks):
    the trajectories and policy Jacobians of every instance. Never calls ``loss_fn``."""
    if option_problem(options) is not None:
        return
    try:
        names = requested_names(loss_fn)
        main, mixing = resolve(problem, names)
    except (KeyError, ValueError, VocabularyError):
        return
    for prob in main + mixing:
        prob.support(prob.theta0)
        policy_outputs(prob, prob.theta0, values="values" in names)


def measure(
    loss_fn: Callable[..., Any], problem: ProblemSpec = None, **options: Any
) -> dict[str, Any]:
    """Learner side: the exact E[−∇L] of ``loss_fn`` on each instance, as plain numbers.

    Options: see :data:`OPTIONS` (``accept_missing_gamma_t`` is the judge's).
    """
    start = time.perf_counter()
    bad = option_problem(options)
    if bad is not None:
        return failed(ErrorKind.USAGE, bad)
    opts = OPTIONS | options
    try:
        names = requested_names(loss_fn)
    except VocabularyError as exc:
        return failed(ErrorKind.VOCABULARY, str(exc))
    try:
        main, mixing = resolve(problem, names)
        if opts["entropy_coef"]:
            main = _with_entropy(main, problem)
            mixing = [p for p in mixing if hasattr(p, "entropy_objective")]
    except (KeyError, ValueError) as exc:
        return failed(ErrorKind.PROBLEM, str(exc).strip("'\""))
    ev = Evaluator(loss_fn, names, timeout=float(opts["timeout"]))
    results = _expectations(ev, main, mixing, opts["batch_size"], opts["one_at_a_time"])
    out: dict[str, Any] = {"names": names, "output": ev.output, "calls": ev.calls}
    if isinstance(results, LearnerFailure):
        out.update(failed(results.error.kind, results.error.message))
    else:
        mode, exps, weights = results
        out["mode"] = mode
        out["instances"] = [asdict(e) for e in exps]
        out["weights"] = weights
    out["cpu_seconds"] = ev.used
    out["seconds"] = time.perf_counter() - start
    return out


def _expectations(
    ev: Evaluator, main: list[Problem], mixing: list[Problem], batch_size: int, single: bool
) -> tuple[str, list[Expectation], dict[str, Any] | None] | LearnerFailure:
    try:
        exps, weights = [], None
        for prob in main:
            exp, full = separable_expectation(ev, prob, batch_size, one_at_a_time=single)
            if exp is not None and full is None:  # checked one trajectory at a time
                exps.append(exp)
                continue
            if exp is None:
                return "mixing", [batch_expectation(ev, p) for p in mixing], None
            exps.append(exp)
            if full is not None and prob.action_kind == "categorical":
                # with A ≥ 3, e_a − π(·|s) and the entropy's gradient are not collinear: tell
                # "weights of log π(a_t|s_t) only" from a loss that also moves other actions
                if getattr(prob, "n_actions", 2) >= 3:
                    w3 = extract_weights(prob, prob.support()[0], full, exp.reduction)
                    exp.score_form = w3 is not None
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
def judge(measurement: dict[str, Any], problem: ProblemSpec = None, **options: Any) -> Report:
    """Reference side: compare E[ĝ] with ∇J, decompose, diagnose, explain."""
    bad = option_problem(options)
    if bad is not None:
        return Report.error(bad, check=NAME, diagnosis=ErrorKind.USAGE)
    accept_missing_gamma_t = bool(options.get("accept_missing_gamma_t", False))
    entropy_coef = float(options.get("entropy_coef", 0.0))
    notes = _output_notes(measurement)
    if "error" in measurement:
        err = measurement["error"]
        report = Report.error(err["message"], check=NAME, diagnosis=err["kind"])
        if err["kind"] == str(ErrorKind.NAN) and options.get("one_at_a_time"):
            notes = notes + [text.NAN_ONE_AT_A_TIME]
        report.notes = notes
        return report
    mode = measurement["mode"]
    probs = [problems.find(e["problem"]) for e in measurement["instances"]]
    gs = [torch.tensor(e["expected_grad"], dtype=torch.float64) for e in measurement["instances"]]
    for prob, g in zip(probs, gs, strict=True):
        if g.shape != prob.theta0.shape or not all(math.isfinite(x) for x in g.tolist()):
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
        batch=max(int(e.get("batch_size", 3)) for e in measurement["instances"]),
        padding_dependent=any(e.get("padding_dependent") for e in measurement["instances"]),
        leaf_parts=[
            {k: torch.tensor(v, dtype=torch.float64) for k, v in e.get("leaf_expected", {}).items()}
            for e in measurement["instances"]
        ],
        notes=notes,
        names=list(measurement.get("names") or []),
        log_pi_taken_only=(
            any(e.get("score_form") is True for e in measurement["instances"])
            and not any(e.get("score_form") is False for e in measurement["instances"])
        ),
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
    return verdict(evidence)


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
            "batch": "every batch of B=3 (exact)" if mode == "mixing" else "exact, per trajectory",
        },
    )


def _output_notes(measurement: dict[str, Any]) -> list[str]:
    """Notes with what the loss printed, and what it wrote to fds 1/2 directly (os.write, C
    code), which pgcheck keeps away from the terminal."""
    notes = []
    for key, what in (("output", "printed"), ("fd_output", "wrote to stdout/stderr (fd 1/2)")):
        out = measurement.get(key) or ""
        if not isinstance(out, str) or not out:
            continue
        lines = out.splitlines()
        shown = "\n".join(lines[:5]) + ("\n…" if len(lines) > 5 else "")
        notes.append(f"your loss {what} (first lines shown):\n{shown}")
    return notes


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


CHECK = Check(NAME, measure, judge, prepare)


def check_pseudo_loss(
    loss_fn: Callable[..., Any],
    problem: ProblemSpec = None,
    *,
    accept_missing_gamma_t: bool = False,
    batch_size: int = 8,
    timeout: float = 5.0,
    one_at_a_time: bool = False,
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
        timeout: CPU seconds for all calls of ``loss_fn`` together (the wall limit is
            2·timeout + 5 s).
        one_at_a_time: call the loss on batches of one trajectory (B = 1) only, for a loss
            written for a single episode; by default it must work on padded batches [B, T].
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
        one_at_a_time=one_at_a_time,
        entropy_coef=entropy_coef,
    )
