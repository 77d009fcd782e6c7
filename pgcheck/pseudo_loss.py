"""check_pseudo_loss: is autograd's gradient of a pseudo-loss a correct policy gradient?"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

import torch
from torch import Tensor

from pgcheck import estimators, problems
from pgcheck.diagnosis import MESSAGES, RTOL, decompose, match_factor, message_for
from pgcheck.expectation import (
    Evaluator,
    Expectation,
    LearnerFailure,
    extract_weights,
    pairwise_expectation,
    separable_expectation,
)
from pgcheck.problems import Problem
from pgcheck.registry import register
from pgcheck.report import Report, Row
from pgcheck.vocabulary import (
    CATEGORICAL_ONLY,
    GAUSSIAN_ONLY,
    VocabularyError,
    requested_names,
)

CHECK = "pseudo_loss"
ProblemSpec = None | str | Problem | Sequence[str | Problem]

# problems seen by resolve(), so judge() and plots can find custom ones by name
_SEEN: dict[str, Problem] = {}


# =========================================================================== problems
def _lookup(spec: str | Problem) -> Problem:
    prob = problems.get(spec) if isinstance(spec, str) else spec
    if not hasattr(prob, "support"):
        raise ValueError(f"problem {prob.name!r} has no finite set of trajectories to check "
                         "a pseudo-loss on; use a finite-horizon problem or a bandit")
    _SEEN[prob.name] = prob
    return prob


def _compatible(prob: Problem, names: Sequence[str]) -> bool:
    if prob.action_kind == "gaussian":
        return not set(names) & CATEGORICAL_ONLY
    return not set(names) & GAUSSIAN_ONLY


def resolve(problem: ProblemSpec, names: Sequence[str]) -> tuple[list[Problem], list[Problem]]:
    """The instances for the separable check and those for the batch-of-two check."""
    if problem is None or problem == "default":
        main = [p for p in problems.default_suite() if _compatible(p, names)]
        mixing = [problems.get(n) for n in problems.MIXING_NAMES]
        mixing = [p for p in mixing if _compatible(p, names)]
        for p in main + mixing:
            _SEEN[p.name] = p
    else:
        specs = [problem] if isinstance(problem, str | Problem) else list(problem)
        main = [_lookup(s) for s in specs]
        incompatible = [p.name for p in main if not _compatible(p, names)]
        if incompatible:
            raise ValueError(f"your loss asks for {', '.join(sorted(set(names)))}, which "
                             f"problem(s) {', '.join(incompatible)} cannot provide")
        mixing = [p for p in main if len(p.support()[0]) <= 40] or [
            p for p in (problems.get(n) for n in problems.MIXING_NAMES) if _compatible(p, names)]
    if not main:
        raise ValueError("your loss asks for both categorical inputs (logits/probs/values) and "
                         "Gaussian ones (mean/std); no problem has both")
    return main, mixing


def _find(name: str) -> Problem:
    return _SEEN[name] if name in _SEEN else problems.get(name)


# =========================================================================== measure
def measure(loss_fn: Callable[..., Any], problem: ProblemSpec = None, *, batch_size: int = 8,
            timeout: float = 5.0, **_: Any) -> dict[str, Any]:
    """Learner side: the exact E[−∇L] of ``loss_fn`` on each instance, as plain numbers."""
    start = time.perf_counter()
    try:
        names = requested_names(loss_fn)
    except VocabularyError as exc:
        return {"error": {"kind": "vocabulary", "message": str(exc)}}
    try:
        main, mixing = resolve(problem, names)
    except (KeyError, ValueError) as exc:
        return {"error": {"kind": "problem", "message": str(exc).strip("'\"")}}
    ev = Evaluator(loss_fn, names, timeout=timeout)
    results = _expectations(ev, main, mixing, batch_size)
    out: dict[str, Any] = {"names": names, "output": ev.output, "calls": ev.calls}
    if isinstance(results, LearnerFailure):
        out["error"] = {"kind": results.error.kind, "message": results.error.message}
    else:
        mode, exps, weights = results
        out["mode"] = mode
        out["instances"] = [asdict(e) for e in exps]
        out["weights"] = weights
    out["seconds"] = time.perf_counter() - start
    return out


def _expectations(ev: Evaluator, main: list[Problem], mixing: list[Problem], batch_size: int
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
            if weights is None and prob.action_kind == "categorical" and prob.horizon > 1:
                w = extract_weights(prob, prob.support()[0], full, exp.reduction)
                weights = {"problem": prob.name, "w": w} if w is not None else None
        return "separable", exps, weights
    except LearnerFailure as failure:
        return failure


# =========================================================================== references
_GRAD_J: dict[str, Tensor] = {}
_REF: dict[tuple[str, str, str], Tensor] = {}


def grad_j(prob: Problem) -> Tensor:
    """∇J at θ₀ by autograd of the exact J (cached)."""
    if prob.name not in _GRAD_J:
        _GRAD_J[prob.name] = prob.grad_J(prob.theta0)
    return _GRAD_J[prob.name]


_GRAD_FD: dict[str, Tensor] = {}


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
        if mode == "mixing":
            exp = pairwise_expectation(ev, prob)
        else:
            exp, _ = separable_expectation(ev, prob, 1)
            assert exp is not None, f"reference {code} mixes trajectories"
        _REF[key] = torch.tensor(exp.expected_grad, dtype=torch.float64)
    return _REF[key]


def _usable(fn: Callable[..., Any], prob: Problem) -> bool:
    return _compatible(prob, requested_names(fn))


def diagnose(gs: list[Tensor], probs: list[Problem], mode: str) -> tuple[str, float] | None:
    """The first reference whose expected gradients match the learner's up to a factor β."""
    bank = estimators.reference_bank()
    if mode == "mixing":
        bank = estimators.mixing_bank() + bank
    for code, fn in bank:
        if not all(_usable(fn, p) for p in probs):
            continue
        ref_mode = "mixing" if (mode == "mixing" and (code, fn) in estimators.mixing_bank()
                                ) else "separable"
        refs = [reference_expectation(code, fn, p, ref_mode) for p in probs]
        beta = match_factor(gs, refs)
        if beta is not None and code != "correct":
            return code, beta
    return None


def diagnose_weights(weights: dict[str, Any] | None) -> tuple[str, float] | None:
    """Match the learner's per-step weights w_it (exact, per sample) against known patterns.

    Falls back to the action-dependence test: d_t = w_t − γ^t G_t must depend only on the
    history up to s_t for an unbiased estimator; if it changes with a_t, the "baseline"
    depends on the action.
    """
    if not weights or weights.get("w") is None:
        return None
    prob = _find(weights["problem"])
    traj = prob.support()[0]
    w = torch.tensor(weights["w"], dtype=torch.float64)
    if w.shape != traj.mask.shape or not torch.isfinite(w).all():
        return None
    pi_taken = prob.policy.probs(prob.theta0)[traj.states, traj.actions]
    data = (traj.reward_to_go, traj.rewards, traj.returns, traj.gamma, traj.mask, traj.lengths)
    for spec in estimators.weight_bank():
        ref = spec.weights(*data)
        if spec.probs:
            ref = ref * pi_taken
        beta = match_factor([w.reshape(-1)], [ref.reshape(-1)])
        if beta is not None and spec.code != "correct":
            return spec.code, beta
    return _action_dependence(w, traj)


def _action_dependence(w: Tensor, traj: Any) -> tuple[str, float] | None:
    correct = traj.reward_to_go * traj.discounts
    d = (w - correct).tolist()
    by_history: dict[tuple[int, ...], set[float]] = {}
    by_action: dict[tuple[int, ...], set[float]] = {}
    states, actions, mask = traj.states.tolist(), traj.actions.tolist(), traj.mask.tolist()
    for i in range(len(states)):
        for t in range(len(states[i])):
            if not mask[i][t]:
                continue
            history = tuple(states[i][: t + 1] + actions[i][:t])
            by_history.setdefault(history, set()).add(round(d[i][t], 9))
            by_action.setdefault(history + (actions[i][t],), set()).add(round(d[i][t], 9))
    varies_with_action = any(len(v) > 1 for v in by_history.values())
    fixed_given_action = all(len(v) == 1 for v in by_action.values())
    if varies_with_action and fixed_given_action:
        return "action_dependent_baseline", 1.0
    return None


# =========================================================================== judge
def judge(measurement: dict[str, Any], problem: ProblemSpec = None, *,
          accept_missing_gamma_t: bool = False, batch_size: int = 8, **_: Any) -> Report:
    """Reference side: compare E[ĝ] with ∇J, decompose, diagnose, explain."""
    notes = _output_notes(measurement)
    if "error" in measurement:
        err = measurement["error"]
        report = Report.error(err["message"], check=CHECK, diagnosis=err["kind"])
        report.notes = notes
        return report
    mode = measurement["mode"]
    probs = [_find(e["problem"]) for e in measurement["instances"]]
    gs = [torch.tensor(e["expected_grad"], dtype=torch.float64) for e in measurement["instances"]]
    for prob, g in zip(probs, gs, strict=True):
        if g.shape != prob.theta0.shape or not torch.isfinite(g).all():
            return Report.error("the measurement does not fit the problem", check=CHECK)
    gjs = [grad_j(p) for p in probs]
    parts = [decompose(g, gj) for g, gj in zip(gs, gjs, strict=True)]
    rows = [_row(p, g, gj, a, rr, err, mode)
            for p, g, gj, (a, rr, err) in zip(probs, gs, gjs, parts, strict=True)]
    alphas = [a for a, _, _ in parts]
    figure = {"problem": probs[0].name, "grad_J": gjs[0].tolist(), "expected_grad": gs[0].tolist()}
    reductions = {e["reduction"] for e in measurement["instances"]}
    if "one-at-a-time" in reductions:
        notes = notes + ["your loss fails on a batch of several trajectories, so it was "
                         "checked one trajectory at a time (B = 1). Make it work on a batch "
                         "[B, T] to train efficiently."]
    leaks = any(e["leaf_norms"].get("values", 0.0) > 0 for e in measurement["instances"])
    common = {"check": CHECK, "rows": rows, "notes": notes, "figure_data": figure}
    n = len(probs)
    where = "at B = 2, over every batch of two" if mode == "mixing" else "exactly"
    max_err = max(err for _, _, err in parts)

    if max_err <= RTOL:
        note = (" It mixes trajectories in a batch and is still unbiased"
                f" ({where}).") if mode == "mixing" else ""
        return Report(True, "unbiased", f"{MESSAGES['correct']} E[−∇L] = ∇J on all {n} "
                      f"instances (largest relative error {max_err:.1e}).{note}", scale=1.0,
                      **common)
    if all(float(g.abs().max()) <= 1e-12 * float(gj.abs().max()) for g, gj in zip(gs, gjs,
                                                                                    strict=True)):
        return Report(False, "biased", message_for("zero_gradient") + _numbers(probs, gs, gjs),
                      scale=0.0, diagnosis="zero_gradient", **common)
    parallel = all(rr <= RTOL for _, rr, _ in parts)
    if leaks:
        return Report(False, "biased", message_for("theta_leak") + _numbers(probs, gs, gjs),
                      scale=alphas[0], diagnosis="theta_leak", **common)
    if parallel and all(a > 0 for a in alphas):
        code = _scaled_code(reductions, alphas, probs)
        msg = (message_for(code) if code else
               f"Your loss's expected gradient is a positive multiple of ∇J (α = "
               f"{_alphas(alphas)}): it points the right way, scaled.")
        if mode == "mixing" and not code:
            msg += (" Your loss mixes trajectories; at batch size 2 a baseline that includes the "
                    "trajectory itself (e.g. the batch mean) scales ∇J by (1 − 1/B).")
        return Report(True, "scaled", msg, scale=alphas[0], diagnosis=code, **common)
    if parallel and all(a < 0 for a in alphas):
        code = "sign_flipped"
        return Report(False, "biased", message_for(code) + _numbers(probs, gs, gjs),
                      scale=alphas[0], diagnosis=code, **common)
    found = diagnose_weights(measurement.get("weights")) or diagnose(gs, probs, mode)
    code = None
    if found is not None:
        code, beta = found
        if beta < 0:
            code = "sign_flipped+" + code
    if accept_missing_gamma_t and found is not None and found[0] == "missing_gamma_t":
        beta = found[1]
        exact = abs(beta - 1) <= 1e-6
        scaled_note = "" if exact else (
            f" It is a positive multiple (β = {beta:.4g}) of that convention's gradient.")
        return Report(beta > 0, "unbiased" if exact else "scaled",
                      "Accepted by option: your loss follows the common convention "
                      "Σ_t G_t ∇log π(a_t|s_t) without γ^t, which is biased for the discounted "
                      "objective when γ < 1 but widely used." + scaled_note,
                      scale=beta, diagnosis="missing_gamma_t", **common)
    if code is None:
        msg = ("Your pseudo-loss is biased: E[−∇L] differs from ∇J by more than a factor "
               f"(relative residual {max(rr for _, rr, _ in parts):.2g}). Check that you weight "
               "log π(a_t|s_t) of the taken action by γ^t G_t (or R(τ)), minus a baseline "
               "that depends only on s_t, with the mask applied.")
    else:
        msg = message_for(code)
    return Report(False, "biased", msg + _numbers(probs, gs, gjs), scale=alphas[0],
                  diagnosis=code, **common)


def _scaled_code(reductions: set[str], alphas: list[float], probs: list[Problem]) -> str | None:
    if reductions == {"sum"}:
        return "sum_over_batch"
    if all(abs(a * p.horizon - 1) < 1e-6 for a, p in zip(alphas, probs, strict=True)):
        return "mean_over_steps" if any(p.horizon > 1 for p in probs) else None
    return None


def _alphas(alphas: list[float]) -> str:
    if max(alphas) - min(alphas) <= 1e-9 * max(abs(a) for a in alphas):
        return f"{alphas[0]:.4g}"
    return ", ".join(f"{a:.4g}" for a in alphas)


def _numbers(probs: list[Problem], gs: list[Tensor], gjs: list[Tensor]) -> str:
    """The first instance where the vectors differ most, gradcheck-style."""
    i = max(range(len(gs)), key=lambda k: decompose(gs[k], gjs[k])[1])  # largest residual
    fmt = lambda v: "[" + ", ".join(f"{x:.4f}" for x in v.tolist()[:5]) + (  # noqa: E731
        ", …]" if v.numel() > 5 else "]")
    return f"\nOn {probs[i].name}: ∇J = {fmt(gjs[i])}, E[−∇L] = {fmt(gs[i])}."


def _row(prob: Problem, g: Tensor, gj: Tensor, alpha: float, rr: float, err: float,
         mode: str) -> Row:
    return Row(prob.name, {
        "∇J (exact)": gj.tolist(),
        "∇J (finite differences)": grad_j_fd(prob).tolist(),
        "E[−∇L] (your loss)": g.tolist(),
        "α": alpha,
        "‖r‖/‖E[−∇L]‖": rr,
        "‖E[−∇L] − ∇J‖/‖∇J‖": err,
        "batch": "all pairs (B=2)" if mode == "mixing" else "exact, per trajectory",
    })


def _output_notes(measurement: dict[str, Any]) -> list[str]:
    out = measurement.get("output") or ""
    if not out:
        return []
    lines = out.splitlines()
    shown = "\n".join(lines[:5]) + ("\n…" if len(lines) > 5 else "")
    return [f"your loss printed (first lines shown):\n{shown}"]


check = register(CHECK, measure, judge)


def check_pseudo_loss(loss_fn: Callable[..., Any], problem: ProblemSpec = None, *,
                      accept_missing_gamma_t: bool = False, batch_size: int = 8,
                      timeout: float = 5.0) -> Report:
    """Check that −∇_θ L of a pseudo-loss is an unbiased estimator of the policy gradient ∇J.

    The loss asks for its inputs by parameter name (``log_probs``, ``logits``, ``actions``,
    ``rewards``, ``mask``, ``gamma``, ``q_values``, ``returns``, ``values`` ... see
    :data:`pgcheck.vocabulary.VOCABULARY`) and returns a scalar to minimise. On each problem
    every trajectory is enumerated, so E[−∇L] = Σ_τ p_θ(τ)(−∇L(τ)) is computed exactly and
    compared with ∇J: no sampling noise, the same verdict on every run.

    Args:
        loss_fn: the pseudo-loss.
        problem: None for the default suite, a problem name, a problem, or a list of them.
        accept_missing_gamma_t: accept Σ_t G_t ∇log π (the common convention without γ^t).
        batch_size: B used to express a sum over the batch as the scale α = B.
        timeout: seconds for all calls of ``loss_fn`` together.

    Returns:
        A :class:`~pgcheck.report.Report` (truthy when passed).
    """
    return check(loss_fn, problem=problem, accept_missing_gamma_t=accept_missing_gamma_t,
                 batch_size=batch_size, timeout=timeout)
