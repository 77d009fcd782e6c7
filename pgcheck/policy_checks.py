"""Smaller checks of a learner's policy code: log π, ∇_θ log π, and score-function estimators.

Three checks, each registered in :data:`pgcheck.registry.REGISTRY` and split into a
learner-side ``measure`` (calls the learner's function through
:func:`pgcheck.sandbox.call_learner`, returns plain JSON-able numbers) and a reference-side
``judge`` (recomputes the inputs from fixed seeds, computes exact references, decides):

* ``"log_prob"`` — :func:`measure_log_prob` / :func:`judge_log_prob`:
  softmax policy  log π(a) = z_a − log Σ_b exp z_b  against ``torch.distributions.Categorical``,
  Gaussian policy log N(a; μ, σ²) = −(a−μ)²/(2σ²) − log σ − ½ log 2π  against
  ``torch.distributions.Normal``; plus the normalisation Σ_a exp(log π(a)) = 1 and
  ∫ exp(log p(a)) da = 1 (trapezoid rule on a fine grid), the gradient through the learner's
  log π, and numerical stability (huge logits, far tails).
* ``"score_function"`` — :func:`measure_score_function` / :func:`judge_score_function`:
  a hand-derived ∇_θ log π against autograd and central finite differences (float64, eps 1e-6).
* ``"score_estimator"`` — :func:`measure_score_estimator` / :func:`judge_score_estimator`:
  an estimator of ∇_θ E_{x~p_θ}[f(x)], whose exact expectation Σ_x p_θ(x) ĝ(x) is computed by
  calling it on single samples at every atom (discrete) or Gauss–Hermite node (Gaussian).

Every check answers with a :class:`pgcheck.report.Report` whose verdict is ``"correct"``,
``"wrong"`` or ``"error"``.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from pgcheck.registry import REGISTRY, register
from pgcheck.report import Report, Row
from pgcheck.sandbox import call_learner, single_thread

DTYPE = torch.float64
#: Seconds for all calls of the learner's function in one check, together.
DEFAULT_TIMEOUT = 5.0
#: Step of the central finite differences (as in torch.autograd.gradcheck).
FD_EPS = 1e-6

# ============================================================================ shared helpers


class Budget:
    """A time budget shared by all calls of the learner's function in one check."""

    def __init__(self, seconds: float) -> None:
        self.total = float(seconds)
        self.deadline = time.monotonic() + self.total
        self.output = ""

    def remaining(self) -> float:
        """Seconds left (may be ≤ 0)."""
        return self.deadline - time.monotonic()


def timeout_message(name: str, total: float) -> str:
    """The message for a learner's function that used up the time budget."""
    return (f"{name} did not finish within the time limit ({total:.1f} s for all calls "
            "together). Look for a loop that never ends (a `while` whose condition never "
            "changes) or for work that grows with the input.")


def learner_call(fn: Callable[..., Any], args: dict[str, Any], budget: Budget,
                 name: str) -> tuple[Any, dict[str, Any] | None]:
    """Call ``fn(*args.values())`` positionally through :func:`call_learner`.

    Returns ``(value, None)`` or ``(None, {"error": message, "error_kind": kind})``.
    The learner's parameter names do not matter; the argument order does.
    """
    remaining = budget.remaining()
    if remaining <= 0:
        return None, {"error": timeout_message(name, budget.total), "error_kind": "timeout"}
    keys = list(args)

    def positional(**kwargs: Any) -> Any:
        return fn(*(kwargs[k] for k in keys))

    result = call_learner(positional, args, seconds=remaining, name=name)
    if result.output and len(budget.output) < 1000:
        budget.output += result.output[: 1000 - len(budget.output)]
    if result.error is not None:
        message = result.error.message
        if result.error.kind == "timeout":
            message = timeout_message(name, budget.total)
        elif result.error.kind == "global-state":
            message = message.replace("A pseudo-loss must be a deterministic function of the "
                                      "batch it is given.", "It must be a deterministic function "
                                      "of its inputs: don't seed or draw random numbers in it.")
        elif "requires grad" in message and "numpy" in message:
            message += (" pgcheck passes inputs that require grad because this quantity must "
                        "be differentiable: compute it with torch operations, not numpy.")
        return None, {"error": message, "error_kind": result.error.kind}
    return result.value, None


def to_array(value: Any) -> np.ndarray:
    """Read a learner's return value (tensor, numpy array, list, Python number) as float64.

    Raises TypeError/ValueError with a readable message when that is not possible.
    """
    if isinstance(value, torch.Tensor):
        if value.is_complex():
            raise TypeError("a complex tensor")
        return value.detach().cpu().to(DTYPE).numpy().copy()
    if isinstance(value, bool | np.bool_):
        raise TypeError("a bool")
    if isinstance(value, np.ndarray | np.generic):
        if np.iscomplexobj(value) or value.dtype == object:
            raise TypeError(f"a numpy array of dtype {value.dtype}")
        return np.asarray(value, dtype=np.float64).copy()
    if isinstance(value, int | float):
        return np.asarray(float(value))
    if isinstance(value, list | tuple):
        parts = [to_array(v) for v in value]
        if len({p.shape for p in parts}) > 1:
            raise ValueError("a ragged list")
        return np.array(parts, dtype=np.float64).reshape((len(parts),) + (
            parts[0].shape if parts else (0,)))
    if value is None:
        raise TypeError("None (did you forget `return`?)")
    raise TypeError(f"a {type(value).__name__}")


def read_output(value: Any, shape: tuple[int, ...], name: str, what: str,
                allow_nonfinite: bool = False) -> tuple[np.ndarray | None, str | None]:
    """Convert and shape-check a learner's output; ``(array, None)`` or ``(None, message)``.

    A single number is accepted where a 0-d or one-element result is expected.
    """
    try:
        arr = to_array(value)
    except (TypeError, ValueError, RuntimeError) as exc:
        return None, (f"{name} returned {exc}; return {what} as a float64 torch tensor of "
                      f"shape {list(shape)}.")
    size = int(np.prod(shape)) if shape else 1
    if arr.shape != shape:
        if arr.size == size and (len(shape) == 0 or shape == (1,)):
            arr = arr.reshape(shape)
        else:
            hint = ""
            if arr.size == size:
                hint = (" The numbers are there but the shape differs; a [N,1] result broadcasts "
                        "to [N,N] in later arithmetic, so flatten it (e.g. .squeeze(-1)).")
            return None, (f"{name} returned shape {list(arr.shape)}; expected {what} of shape "
                          f"{list(shape)}.{hint}")
    if not allow_nonfinite and not np.all(np.isfinite(arr)):
        bad = np.flatnonzero(~np.isfinite(arr.reshape(-1)))[:5].tolist()
        return None, (f"{name} returned NaN or inf (at flat positions {bad}). Look for log of 0, "
                      "division by 0 or exp of a large number.")
    return arr, None


def finite_or_none(arr: np.ndarray) -> list[Any]:
    """A flat list of floats, with None where the value is NaN or inf (JSON has no NaN)."""
    return [float(v) if math.isfinite(v) else None for v in arr.reshape(-1).tolist()]


def _clean_value(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # "nan" / "inf": readable, JSON-able, and equal to itself
    if isinstance(v, list | tuple):
        return [_clean_value(u) for u in v]
    return v


def finite_rows(judge: Callable[..., Report]) -> Callable[..., Report]:
    """Decorate a judge so that NaN/inf in its report's table become the strings "nan"/"inf"."""
    @functools.wraps(judge)
    def wrapped(measurement: dict[str, Any], **options: Any) -> Report:
        report = judge(measurement, **options)
        for row in report.rows:
            row.columns = {k: _clean_value(v) for k, v in row.columns.items()}
        return report
    return wrapped


def usage_error(check: str, message: str) -> dict[str, Any]:
    """A measurement that records a wrong option (the caller's mistake, not the learner's)."""
    return {"error": f"pgcheck.{check}: {message}", "error_kind": "usage"}


def error_report(measurement: dict[str, Any], check: str) -> Report | None:
    """The error report for a measurement that recorded an error, else None."""
    if "error" in measurement:
        return Report.error(str(measurement["error"]), check=check,
                            diagnosis=str(measurement.get("error_kind") or "error"))
    return None


def output_notes(measurement: dict[str, Any]) -> list[str]:
    """A note with what the learner's function printed, if anything."""
    out = measurement.get("output") or ""
    if not out:
        return []
    return [f"your function printed: {out[:200]!r}" + (" …" if len(out) > 200 else "")]


def close(a: np.ndarray, b: np.ndarray, rtol: float, atol: float) -> bool:
    """|a − b| ≤ atol + rtol·|b| elementwise, with matching shapes."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and bool(np.all(np.abs(a - b) <= atol + rtol * np.abs(b)))


def fmt_vec(v: Any, digits: int = 6) -> str:
    """Short text of a vector or number for a message."""
    arr = np.asarray(v, dtype=np.float64).reshape(-1)
    shown = ", ".join(f"{x:.{digits}g}" for x in arr[:6])
    more = ", …" if arr.size > 6 else ""
    return f"[{shown}{more}]" if arr.size != 1 else f"{arr[0]:.{digits}g}"


def unknown_options(check: str, unknown: dict[str, Any], valid: list[str]) -> str | None:
    """A message naming unknown keyword options, or None."""
    if not unknown:
        return None
    return (f"pgcheck.{check}: unknown option(s) {sorted(unknown)}; valid options are "
            f"{valid}.")


def fit_scale(y: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """Least-squares α in y ≈ α·ref and the relative residual ‖y − α ref‖ / ‖y‖."""
    y, ref = y.reshape(-1), ref.reshape(-1)
    denom = float(ref @ ref)
    if denom == 0.0:
        return 0.0, 1.0
    alpha = float(y @ ref) / denom
    ny = float(np.linalg.norm(y))
    return alpha, (float(np.linalg.norm(y - alpha * ref)) / ny if ny > 0 else 0.0)


def scale_hint(alpha: float) -> str:
    """Words for a constant factor α between the learner's result and the reference."""
    if abs(alpha + 1) < 1e-6:
        return "Your result is the negative of the correct one: check the sign."
    return (f"Your result is {alpha:.6g} × the correct one: look for a stray constant factor "
            "(a 2, a ½, a mean where a sum belongs, or a log base other than e).")


# ============================================================================ log_prob

LOG_PROB_POLICIES = ("softmax", "gaussian")
LOG_PROB_OPTIONS = ["policy", "timeout", "rtol", "atol", "require_grad"]
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def log_prob_instances(policy: str) -> list[dict[str, Any]]:
    """The fixed test inputs of :func:`check_log_prob` (same on every call, from fixed seeds).

    Each instance has ``name``, ``args`` (tensors in the learner's argument order),
    ``kind`` ("values", "normalisation" or "stability") and, for normalisation instances,
    ``groups`` (softmax: number of rows; Gaussian: number of (μ, σ) pairs).
    """
    g = torch.Generator().manual_seed(2024_06)
    out: list[dict[str, Any]] = []
    if policy == "softmax":
        logits = torch.randn(6, 4, generator=g, dtype=DTYPE) * 1.5
        actions = torch.tensor([0, 3, 1, 2, 3, 1])
        out.append({"name": "6 states, 4 actions", "kind": "values",
                    "args": {"logits": logits, "actions": actions}})
        base = torch.randn(5, 3, generator=g, dtype=DTYPE) * 2.0
        out.append({"name": "every action of 5 states", "kind": "normalisation", "groups": 5,
                    "args": {"logits": base.repeat_interleave(3, dim=0),
                             "actions": torch.arange(3).repeat(5)}})
        wide = torch.randn(3, 7, generator=g, dtype=DTYPE) * 4.0
        out.append({"name": "3 states, 7 actions", "kind": "values",
                    "args": {"logits": wide, "actions": torch.tensor([6, 0, 4])}})
        huge = torch.randn(4, 5, generator=g, dtype=DTYPE) * 3.0 + 1000.0
        out.append({"name": "logits near 1000", "kind": "stability",
                    "args": {"logits": huge, "actions": torch.tensor([2, 0, 4, 1])}})
    else:
        mean = torch.randn(6, generator=g, dtype=DTYPE) * 2.0
        std = torch.tensor([0.3, 2.5, 0.7, 1.6, 0.45, 3.2], dtype=DTYPE)
        actions = mean + std * torch.randn(6, generator=g, dtype=DTYPE) * 1.5
        out.append({"name": "6 random (μ, σ, a)", "kind": "values",
                    "args": {"mean": mean, "std": std, "actions": actions}})
        mus = torch.tensor([-1.2, 0.5, 2.0], dtype=DTYPE)
        sigmas = torch.tensor([0.4, 1.7, 3.0], dtype=DTYPE)
        u = torch.linspace(-16.0, 16.0, 1601, dtype=DTYPE)
        out.append({"name": "grid over a for 3 (μ, σ)", "kind": "normalisation", "groups": 3,
                    "args": {"mean": mus.repeat_interleave(u.numel()),
                             "std": sigmas.repeat_interleave(u.numel()),
                             "actions": (mus[:, None] + sigmas[:, None] * u[None, :]).reshape(-1)}})
        tail_std = torch.tensor([0.1, 0.05, 2.0], dtype=DTYPE)
        tail_mean = torch.tensor([0.5, -1.0, 3.0], dtype=DTYPE)
        out.append({"name": "far tails (|a−μ| = 40σ)", "kind": "stability",
                    "args": {"mean": tail_mean, "std": tail_std,
                             "actions": tail_mean + tail_std * torch.tensor([40.0, -45.0, 50.0],
                                                                            dtype=DTYPE)}})
    return out


def _grad_weights(n: int) -> torch.Tensor:
    """Fixed random weights c for the gradient check ∇ Σ_i c_i log π_i."""
    return torch.randn(n, generator=torch.Generator().manual_seed(77), dtype=DTYPE)


def _differentiable_names(policy: str) -> list[str]:
    return ["logits"] if policy == "softmax" else ["mean", "std"]


def measure_log_prob(fn: Callable[..., Any], *, policy: str = "softmax",
                     timeout: float = DEFAULT_TIMEOUT, rtol: float = 1e-6, atol: float = 1e-9,
                     require_grad: bool = True, **unknown: Any) -> dict[str, Any]:
    """Run the learner's log π on the fixed inputs; plain numbers only, never raises.

    Records, per instance, the learner's values (None where not finite, allowed only on the
    stability instances) and, on the first instance, ∇ Σ_i c_i fn(...)_i with respect to the
    policy's parameters (logits, or mean and std), if the output is differentiable.
    """
    bad = unknown_options("check_log_prob", unknown, LOG_PROB_OPTIONS)
    if bad:
        return {"error": bad, "error_kind": "usage"}
    if policy not in LOG_PROB_POLICIES:
        return usage_error("check_log_prob", f"policy={policy!r}; use one of {LOG_PROB_POLICIES}.")
    budget = Budget(timeout)
    name = "your log-probability function"
    diff = _differentiable_names(policy)
    with single_thread():
        return _measure_log_prob(fn, policy, budget, name, diff)


def _measure_log_prob(fn: Callable[..., Any], policy: str, budget: Budget, name: str,
                      diff: list[str]) -> dict[str, Any]:
    values: list[list[Any]] = []
    grad: dict[str, Any] = {"connected": False}
    for i, inst in enumerate(log_prob_instances(policy)):
        args = {k: (v.clone().requires_grad_(True) if k in diff else v.clone())
                for k, v in inst["args"].items()}
        value, err = learner_call(fn, args, budget, name)
        if err:
            return err
        n = int(inst["args"]["actions"].shape[0])
        arr, msg = read_output(value, (n,), name, "log π of each action" if policy == "softmax"
                               else "the log-density of each action",
                               allow_nonfinite=inst["kind"] == "stability")
        if msg:
            return {"error": msg + f" (input: {inst['name']})", "error_kind": "output"}
        values.append(finite_or_none(arr))
        if i == 0 and isinstance(value, torch.Tensor) and value.requires_grad:
            weights = _grad_weights(n)
            inputs = [args[k] for k in diff]

            def backward(out: torch.Tensor = value, w: torch.Tensor = weights,
                         xs: list[torch.Tensor] = inputs) -> tuple[Any, ...]:
                return torch.autograd.grad((out.reshape(-1).to(DTYPE) * w).sum(), xs,
                                           allow_unused=True)

            grads, gerr = learner_call(backward, {}, budget, "the backward pass of your function")
            if gerr:
                return gerr
            grad = {"connected": any(gr is not None for gr in grads)}
            for k, gr in zip(diff, grads, strict=True):
                grad[k] = (finite_or_none(gr.detach().to(DTYPE).numpy()) if gr is not None
                           else None)
    return {"check": "log_prob", "policy": policy, "values": values, "grad": grad,
            "output": budget.output}


def _ref_log_prob(policy: str, args: dict[str, torch.Tensor]) -> torch.Tensor:
    """log π(a) from torch.distributions (Categorical or Normal)."""
    if policy == "softmax":
        return torch.distributions.Categorical(logits=args["logits"]).log_prob(args["actions"])
    return torch.distributions.Normal(args["mean"], args["std"]).log_prob(args["actions"])


def _log_prob_candidates(policy: str, args: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Common wrong log π's, computed on the same inputs (for the diagnosis)."""
    if policy == "softmax":
        z, a = args["logits"], args["actions"]
        idx = torch.arange(z.shape[0])
        lp = torch.log_softmax(z, dim=-1)[idx, a]
        cands = {
            "sign": -lp,
            "probability": lp.exp(),
            "missing_normaliser": z[idx, a],
            "wrong_dim": torch.log_softmax(z, dim=0)[idx, a],
        }
    else:
        mu, s, a = args["mean"], args["std"], args["actions"]
        r2 = (a - mu) ** 2
        lp = -r2 / (2 * s**2) - s.log() - HALF_LOG_2PI
        cands = {
            "sign": -lp,
            "density": lp.exp(),
            "missing_log_sigma": -r2 / (2 * s**2) - HALF_LOG_2PI,
            "missing_constant": -r2 / (2 * s**2) - s.log(),
            "std_as_variance": -r2 / (2 * s) - 0.5 * torch.log(2 * math.pi * s),
            "log_variance": -r2 / (2 * s**2) - 2 * s.log() - HALF_LOG_2PI,
            "missing_half": -r2 / s**2 - s.log() - HALF_LOG_2PI,
        }
    return {k: v.detach().numpy() for k, v in cands.items()}


LOG_PROB_DIAGNOSES: dict[str, str] = {
    "sign": "You return −log π (the negative log-likelihood, i.e. the cross-entropy). Drop the "
            "minus sign.",
    "probability": "You return π(a), not log π(a). Take the log: "
                   "torch.log_softmax(logits, dim=-1) and pick each row's action.",
    "missing_normaliser": "You return the logit z_a, but log π(a) = z_a − log Σ_b exp z_b. "
                          "Subtract torch.logsumexp(logits, dim=-1) (or use torch.log_softmax).",
    "wrong_dim": "You normalise over the batch (dim=0) instead of over actions. Use "
                 "torch.log_softmax(logits, dim=-1).",
    "not_normalised": "Your values differ from log π by a constant per state, so exp of them "
                      "does not sum to 1 over actions. Subtract log Σ_b exp z_b "
                      "(torch.logsumexp(logits, dim=-1)).",
    "density": "You return the density N(a; μ, σ²), not its log. Return the log-density "
               "−(a−μ)²/(2σ²) − log σ − ½ log 2π.",
    "missing_log_sigma": "The −log σ term is missing: log N(a; μ, σ²) = −(a−μ)²/(2σ²) − log σ − "
                         "½ log 2π. Without it the density does not integrate to 1 and its "
                         "gradient with respect to σ is wrong.",
    "missing_constant": "The constant −½ log(2π) is missing, so exp of your values integrates to "
                        "√(2π) ≈ 2.5066 instead of 1. Add − 0.5 * math.log(2 * math.pi).",
    "std_as_variance": "You use σ where σ² belongs (std passed as the variance): the quadratic "
                       "term is −(a−μ)²/(2σ²) and the log term −log σ. Square the std.",
    "log_variance": "You subtract log σ² = 2 log σ; the log-density has −log σ (that is "
                    "−½ log σ²).",
    "missing_half": "The ½ in the quadratic term is missing: use −(a−μ)²/(2σ²).",
    "not_normalised_density": "exp of your values does not integrate to 1 over a, so it is not a "
                              "log-density. Compare term by term with −(a−μ)²/(2σ²) − log σ − "
                              "½ log 2π.",
}


@finite_rows
def judge_log_prob(measurement: dict[str, Any], *, policy: str = "softmax",
                   timeout: float = DEFAULT_TIMEOUT, rtol: float = 1e-6, atol: float = 1e-9,
                   require_grad: bool = True, **unknown: Any) -> Report:
    """Compare the measured log π with torch.distributions and check normalisation.

    Softmax: log π(a) = z_a − log Σ_b exp z_b and Σ_a π(a) = 1 for every state.
    Gaussian: log N(a; μ, σ²) = −(a−μ)²/(2σ²) − log σ − ½ log 2π and ∫ N(a; μ, σ²) da = 1
    (trapezoid rule over a ∈ μ ± 16σ, 1601 points). Gradient: ∇ Σ_i c_i log π_i with respect
    to the logits (or mean and std) against autograd through torch.distributions.
    """
    check = "log_prob"
    bad = unknown_options("check_log_prob", unknown, LOG_PROB_OPTIONS)
    if bad:
        return Report.error(bad, check=check, diagnosis="usage")
    err = error_report(measurement, check)
    if err is not None:
        return err
    if policy not in LOG_PROB_POLICIES or measurement.get("policy") != policy:
        return Report.error(f"pgcheck.check_log_prob: policy={policy!r} does not match the "
                            f"measurement (use one of {LOG_PROB_POLICIES}).", check=check,
                            diagnosis="usage")
    instances = log_prob_instances(policy)
    values = measurement["values"]
    if len(values) != len(instances):
        return Report.error("pgcheck.check_log_prob: the measurement does not match the "
                            "instances.", check=check, diagnosis="usage")
    rows: list[Row] = []
    mismatch: list[tuple[int, int, float, float]] = []  # (instance, entry, yours, ref)
    unstable: list[str] = []
    cand_ok = {k: True for k in LOG_PROB_DIAGNOSES}
    row_constant = True
    max_diff = 0.0
    norm_text = ""
    for i, (inst, vals) in enumerate(zip(instances, values, strict=True)):
        args = inst["args"]
        ref = _ref_log_prob(policy, args).detach().numpy()
        yours = np.array([np.nan if v is None else v for v in vals], dtype=np.float64)
        finite = np.isfinite(yours)
        ok = close(yours, ref, rtol, atol) and bool(finite.all())
        diff = np.abs(yours - ref)
        if inst["kind"] == "stability":
            if not ok:
                unstable.append(inst["name"])
        else:
            max_diff = max(max_diff, float(np.max(diff)))
            if not ok:
                j = int(np.argmax(np.where(np.isfinite(diff), diff, np.inf)))
                mismatch.append((i, j, float(yours[j]), float(ref[j])))
            for key, cand in _log_prob_candidates(policy, args).items():
                cand_ok[key] = cand_ok[key] and close(yours, cand, rtol, atol)
        cols: dict[str, Any] = {}
        show = slice(0, 6)
        if inst["kind"] == "normalisation":
            groups = int(inst["groups"])
            per = yours.reshape(groups, -1)
            if policy == "softmax":
                totals = np.exp(per).sum(axis=1)
                diffs = per - ref.reshape(groups, -1)
                row_constant = row_constant and bool(
                    np.all(np.abs(diffs - diffs[:, :1]) <= atol + rtol * np.abs(per)))
                cols["Σ_a exp(yours)"] = totals.tolist()
                label = "Σ_a π(a)"
            else:
                grid = args["actions"].reshape(groups, -1).numpy()
                totals = np.array([np.trapezoid(np.exp(p), x) for p, x in zip(per, grid,
                                                                               strict=True)])
                cols["∫ exp(yours) da"] = totals.tolist()
                label = "∫ p(a) da"
            norm_ok = bool(np.all(np.abs(totals - 1) <= 1e-6))
            norm_text = (f"{label} = 1 {'holds' if norm_ok else 'fails'} (yours: "
                         f"{fmt_vec(totals, 8)})")
            if not norm_ok and policy == "gaussian":
                cand_ok["not_normalised_density"] = True
            show = slice(0, 6)
        cols["yours"] = [None if v is None else v for v in vals[show]]
        cols["torch.distributions"] = ref[show].tolist()
        cols["max |diff|"] = float(np.nanmax(diff)) if finite.any() else float("inf")
        rows.append(Row(inst["name"], cols))
    dist = "Categorical" if policy == "softmax" else "Normal"
    notes = output_notes(measurement)
    if mismatch:
        i, j, y, r = mismatch[0]
        inst = instances[i]
        where = _describe_entry(policy, inst["args"], j)
        first = (f"For {where}, your log π is {y:.6g} but torch.distributions.{dist} gives "
                 f"{r:.6g}.")
        order = (["sign", "probability", "missing_normaliser", "wrong_dim"] if policy == "softmax"
                 else ["sign", "density", "missing_log_sigma", "missing_constant",
                       "std_as_variance", "log_variance", "missing_half"])
        diagnosis = next((k for k in order if cand_ok.get(k)), None)
        if diagnosis is None and policy == "softmax" and row_constant:
            diagnosis = "not_normalised"
        if diagnosis is None and policy == "gaussian" and cand_ok.get("not_normalised_density"):
            diagnosis = "not_normalised_density"
        if diagnosis is not None:
            advice = LOG_PROB_DIAGNOSES[diagnosis]
        else:
            main = [k for k, inst2 in enumerate(instances) if inst2["kind"] != "stability"]
            ys = np.concatenate([np.array(values[k], dtype=np.float64) for k in main])
            refs = np.concatenate([_ref_log_prob(policy, instances[k]["args"]).detach().numpy()
                                   for k in main])
            alpha, resid = fit_scale(ys, refs)
            advice = (scale_hint(alpha) if resid < 1e-6 else
                      ("Compare with torch.log_softmax(logits, dim=-1)[range(N), actions]."
                       if policy == "softmax" else
                       "Compare term by term with −(a−μ)²/(2σ²) − log σ − ½ log 2π."))
            diagnosis = "scaled" if resid < 1e-6 else "mismatch"
        return Report(passed=False, verdict="wrong", message=f"{first} {advice}",
                      diagnosis=diagnosis, check=check, rows=rows,
                      notes=notes + ([norm_text] if norm_text else []))
    grad = measurement.get("grad") or {}
    if require_grad and not grad.get("connected"):
        return Report(passed=False, verdict="wrong", diagnosis="not_differentiable", check=check,
                      rows=rows, notes=notes,
                      message=("Your values are right, but they have no gradient path to the "
                               + ("logits" if policy == "softmax" else "mean and std")
                               + " (numpy, .item(), .detach() or torch.no_grad?). A pseudo-loss "
                               "needs log π to be differentiable: use torch operations only."))
    if require_grad:
        inst = instances[0]
        diff_names = _differentiable_names(policy)
        args = {k: (v.clone().requires_grad_(True) if k in diff_names else v)
                for k, v in inst["args"].items()}
        w = _grad_weights(int(args["actions"].shape[0]))
        ref_grads = torch.autograd.grad((_ref_log_prob(policy, args) * w).sum(),
                                        [args[k] for k in diff_names])
        for k, rg in zip(diff_names, ref_grads, strict=True):
            rg_np = rg.numpy().reshape(-1)
            yg = grad.get(k)
            yg_np = (np.zeros_like(rg_np) if yg is None else
                     np.array([np.nan if v is None else v for v in yg], dtype=np.float64))
            rows.append(Row(f"∇ w.r.t. {k} (instance 1)", {"yours": yg_np.tolist()[:6],
                                                           "torch.distributions":
                                                               rg_np.tolist()[:6]}))
            if not close(yg_np, rg_np, 1e-6, 1e-8):
                return Report(
                    passed=False, verdict="wrong", diagnosis="gradient", check=check, rows=rows,
                    notes=notes,
                    message=(f"Your values are right but the gradient with respect to {k} is not "
                             f"(yours {fmt_vec(yg_np)}, expected {fmt_vec(rg_np)}): part of your "
                             "computation is detached (e.g. logsumexp(...).detach() or .item()). "
                             "Keep every term on the autograd graph."))
    if unstable:
        fix = ("Subtract the largest logit before exponentiating, or simply use "
               "torch.log_softmax(logits, dim=-1)." if policy == "softmax" else
               "Compute the log-density directly, −(a−μ)²/(2σ²) − log σ − ½ log 2π, instead of "
               "taking the log of the density (which underflows to 0).")
        return Report(passed=False, verdict="wrong", diagnosis="unstable", check=check,
                      rows=rows, notes=notes,
                      message=(f"Your log π is right on ordinary inputs but wrong or not finite on "
                               f"{unstable[0]}. {fix}"))
    n_checked = sum(len(v) for v, inst in zip(values, instances, strict=True)
                    if inst["kind"] != "stability")
    message = (f"Your log π matches torch.distributions.{dist} on {n_checked} entries "
               f"(max |diff| = {max_diff:.2g}); {norm_text}"
               + ("; its gradient matches too." if require_grad else "."))
    return Report(passed=True, verdict="correct", message=message, check=check, rows=rows,
                  notes=notes)


def _describe_entry(policy: str, args: dict[str, torch.Tensor], j: int) -> str:
    if policy == "softmax":
        return (f"logits {fmt_vec(args['logits'][j].numpy(), 4)} and action "
                f"{int(args['actions'][j])}")
    return (f"μ = {float(args['mean'][j]):.4g}, σ = {float(args['std'][j]):.4g}, "
            f"a = {float(args['actions'][j]):.4g}")


register("log_prob", measure_log_prob, judge_log_prob)
check_log_prob = REGISTRY["log_prob"]


# ============================================================================ score_function

SCORE_POLICIES = ("softmax_linear", "gaussian_linear", "gaussian_linear_sigma")
SCORE_OPTIONS = ["policy", "timeout", "rtol", "atol"]


def score_instances(policy: str) -> list[dict[str, Any]]:
    """The fixed inputs of :func:`check_score_function`: several dimensions, fixed seeds.

    softmax_linear: ``theta [d]``, ``features [A,d]``, ``action`` (int).
    gaussian_linear(_sigma): ``theta [d]``, ``x [d]``, ``action`` (float), ``sigma`` (float),
    with σ ≠ 1 so σ and σ² differ and a drawn around θᵀx.
    """
    g = torch.Generator().manual_seed(31_415)
    out: list[dict[str, Any]] = []
    if policy == "softmax_linear":
        for d, n_actions, action in [(3, 4, 2), (3, 4, 0), (2, 3, 1), (5, 6, 5), (1, 3, 2)]:
            theta = torch.randn(d, generator=g, dtype=DTYPE)
            features = torch.randn(n_actions, d, generator=g, dtype=DTYPE)
            out.append({"name": f"d={d}, A={n_actions}, action {action}",
                        "args": {"theta": theta, "features": features, "action": action}})
    else:
        for d, sigma in [(3, 0.5), (3, 1.7), (2, 0.8), (4, 2.5), (1, 0.35)]:
            theta = torch.randn(d, generator=g, dtype=DTYPE)
            x = torch.randn(d, generator=g, dtype=DTYPE)
            z = float(torch.randn((), generator=g, dtype=DTYPE))
            action = float(theta @ x) + sigma * (1.0 + abs(z))  # |a − μ| ≥ σ: no hiding at 0
            if z < 0:
                action = float(theta @ x) - sigma * (1.0 + abs(z))
            out.append({"name": f"d={d}, σ={sigma}",
                        "args": {"theta": theta, "x": x, "action": action, "sigma": sigma}})
    return out


def _score_log_pi(policy: str, args: dict[str, Any], theta: torch.Tensor,
                  sigma: torch.Tensor | float | None = None) -> torch.Tensor:
    """log π_θ(action) in closed form (the function whose gradient is the score)."""
    if policy == "softmax_linear":
        return torch.log_softmax(args["features"] @ theta, dim=0)[args["action"]]
    s = args["sigma"] if sigma is None else sigma
    s = torch.as_tensor(s, dtype=DTYPE)
    mu = theta @ args["x"]
    return -((args["action"] - mu) ** 2) / (2 * s**2) - torch.log(s) - HALF_LOG_2PI


def score_reference(policy: str, args: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The exact score two ways: autograd of log π, and central finite differences (eps 1e-6).

    For ``gaussian_linear_sigma`` the vector is [∇_θ log π, ∂ log π/∂σ] (length d+1).
    """
    with_sigma = policy == "gaussian_linear_sigma"
    theta = args["theta"].clone().requires_grad_(True)
    params = [theta]
    sigma = None
    if with_sigma:
        sigma = torch.tensor(float(args["sigma"]), dtype=DTYPE, requires_grad=True)
        params.append(sigma)
    grads = torch.autograd.grad(_score_log_pi(policy, args, theta, sigma), params)
    auto = torch.cat([gr.reshape(-1) for gr in grads]).numpy()
    base = torch.cat([args["theta"].reshape(-1)]
                     + ([torch.tensor([float(args["sigma"])], dtype=DTYPE)] if with_sigma else []))
    d = args["theta"].numel()

    def f(v: torch.Tensor) -> float:
        return float(_score_log_pi(policy, args, v[:d], v[d] if with_sigma else None))

    fd = np.empty(base.numel())
    for k in range(base.numel()):
        e = torch.zeros_like(base)
        e[k] = FD_EPS
        fd[k] = (f(base + e) - f(base - e)) / (2 * FD_EPS)
    return auto, fd


def score_candidates(policy: str, args: dict[str, Any]) -> dict[str, np.ndarray]:
    """Common wrong scores on the same inputs: θ part (and, for the σ variant, σ part)."""
    theta = args["theta"]
    if policy == "softmax_linear":
        feats, a = args["features"], args["action"]
        pi = torch.softmax(feats @ theta, dim=0)
        xa, xbar = feats[a], pi @ feats
        cands = {
            "sign": xbar - xa,
            "missing_normaliser": xa,
            "only_normaliser": -xbar,
            "uniform_normaliser": xa - feats.mean(dim=0),
            "probability_gradient": pi[a] * (xa - xbar),
            "factor_2": 2 * (xa - xbar),
            "factor_half": (xa - xbar) / 2,
        }
        return {k: v.numpy() for k, v in cands.items()}
    x, a, s = args["x"], float(args["action"]), float(args["sigma"])
    r = a - float(theta @ x)
    theta_cands = {
        "sign": -r * x / s**2,
        "sigma_not_squared": r * x / s,
        "sigma_to_the_4": r * x / s**4,
        "factor_2": 2 * r * x / s**2,
        "factor_half": r * x / (2 * s**2),
        "missing_x": torch.full_like(x, r / s**2),
        "missing_sigma": r * x,
    }
    out = {k: v.numpy() for k, v in theta_cands.items()}
    if policy == "gaussian_linear_sigma":
        out.update({
            "sigma:sign": np.array([1 / s - r**2 / s**3]),
            "sigma:wrt_variance": np.array([-1 / (2 * s**2) + r**2 / (2 * s**4)]),
            "sigma:wrt_log_sigma": np.array([-1 + r**2 / s**2]),
            "sigma:missing_minus_1_over_sigma": np.array([r**2 / s**3]),
            "sigma:sigma_power": np.array([-1 / s + r**2 / s**2]),
            "sigma:factor_2": np.array([2 * (-1 / s + r**2 / s**3)]),
        })
    return out


SCORE_DIAGNOSES: dict[str, str] = {
    "sign": "Your score has the wrong sign; ∇_θ log π points towards making the taken action "
            "more likely.",
    "missing_normaliser": "You return x(s,a) only: the normalising term is missing. "
                          "∇_θ log π(a|s) = x(s,a) − Σ_b π(b|s) x(s,b).",
    "only_normaliser": "You return only −Σ_b π(b|s) x(s,b); add the taken action's features: "
                       "∇_θ log π(a|s) = x(s,a) − Σ_b π(b|s) x(s,b).",
    "uniform_normaliser": "You subtract the plain mean of the features over actions; weight it "
                          "by the policy: subtract Σ_b π(b|s) x(s,b).",
    "probability_gradient": "You return ∇_θ π(a|s), not ∇_θ log π(a|s). Divide by π(a|s): "
                            "∇ log π = ∇π / π = x(s,a) − Σ_b π(b|s) x(s,b).",
    "factor_2": "Your score is twice the correct one: the derivative of −(a−θᵀx)²/(2σ²) keeps "
                "no factor 2 (the ½ cancels it).",
    "factor_half": "Your score is half the correct one: d/dθ (a−θᵀx)² = −2(a−θᵀx)x, and the 2 "
                   "cancels the ½.",
    "sigma_not_squared": "You divide by σ where σ² belongs: ∇_θ log N(a; θᵀx, σ²) = "
                         "(a − θᵀx) x / σ².",
    "sigma_to_the_4": "You divide by σ⁴ (σ² squared again?); the score is (a − θᵀx) x / σ².",
    "missing_x": "The feature vector x is missing: by the chain rule ∇_θ(θᵀx) = x, so the score "
                 "is (a − θᵀx) x / σ².",
    "missing_sigma": "The 1/σ² is missing: ∇_θ log N(a; θᵀx, σ²) = (a − θᵀx) x / σ².",
    "sigma:sign": "∂/∂σ has the wrong sign: ∂ log N/∂σ = −1/σ + (a − θᵀx)²/σ³.",
    "sigma:wrt_variance": "Your last entry is the derivative with respect to the variance σ², "
                          "not σ: ∂ log N/∂σ = −1/σ + (a − θᵀx)²/σ³.",
    "sigma:wrt_log_sigma": "Your last entry is the derivative with respect to log σ, not σ: "
                           "divide it by σ, ∂ log N/∂σ = −1/σ + (a − θᵀx)²/σ³.",
    "sigma:missing_minus_1_over_sigma": "The −1/σ from the −log σ term is missing: "
                                        "∂ log N/∂σ = −1/σ + (a − θᵀx)²/σ³.",
    "sigma:sigma_power": "The power of σ in the second term is wrong: ∂/∂σ of "
                         "−(a − θᵀx)²/(2σ²) is (a − θᵀx)²/σ³.",
    "sigma:factor_2": "Your ∂/∂σ is twice the correct −1/σ + (a − θᵀx)²/σ³.",
}


def _score_shapes(policy: str, args: dict[str, Any]) -> tuple[int, ...]:
    d = int(args["theta"].numel())
    return (d + 1,) if policy == "gaussian_linear_sigma" else (d,)


def measure_score_function(fn: Callable[..., Any], *, policy: str = "softmax_linear",
                           timeout: float = DEFAULT_TIMEOUT, rtol: float = 1e-6,
                           atol: float = 1e-8, **unknown: Any) -> dict[str, Any]:
    """Call the learner's ∇_θ log π on the fixed inputs; plain numbers only, never raises."""
    bad = unknown_options("check_score_function", unknown, SCORE_OPTIONS)
    if bad:
        return {"error": bad, "error_kind": "usage"}
    if policy not in SCORE_POLICIES:
        return usage_error("check_score_function",
                           f"policy={policy!r}; use one of {SCORE_POLICIES}.")
    with single_thread():
        return _measure_score_function(fn, policy, Budget(timeout))


def _measure_score_function(fn: Callable[..., Any], policy: str,
                            budget: Budget) -> dict[str, Any]:
    name = "your score function"
    values = []
    for inst in score_instances(policy):
        args = {k: (v.clone() if isinstance(v, torch.Tensor) else v)
                for k, v in inst["args"].items()}
        value, err = learner_call(fn, args, budget, name)
        if err:
            return err
        shape = _score_shapes(policy, inst["args"])
        what = ("[∇_θ log π, ∂ log π/∂σ]" if policy == "gaussian_linear_sigma"
                else "∇_θ log π (shaped like theta)")
        arr, msg = read_output(value, shape, name, what)
        if msg:
            return {"error": msg + f" (input: {inst['name']})", "error_kind": "output"}
        values.append(arr.tolist())
    return {"check": "score_function", "policy": policy, "values": values,
            "output": budget.output}


@finite_rows
def judge_score_function(measurement: dict[str, Any], *, policy: str = "softmax_linear",
                         timeout: float = DEFAULT_TIMEOUT, rtol: float = 1e-6,
                         atol: float = 1e-8, **unknown: Any) -> Report:
    """Compare the measured scores with autograd and central finite differences.

    softmax_linear: ∇_θ log π(a|s) = x(s,a) − Σ_b π(b|s) x(s,b), π = softmax(features @ θ).
    gaussian_linear: ∇_θ log N(a; θᵀx, σ²) = (a − θᵀx) x / σ².
    gaussian_linear_sigma: additionally ∂/∂σ log N = −1/σ + (a − θᵀx)²/σ³.
    Accepted when |yours − autograd| ≤ atol + rtol·|autograd| for every entry of every input.
    """
    check = "score_function"
    bad = unknown_options("check_score_function", unknown, SCORE_OPTIONS)
    if bad:
        return Report.error(bad, check=check, diagnosis="usage")
    err = error_report(measurement, check)
    if err is not None:
        return err
    if policy not in SCORE_POLICIES or measurement.get("policy") != policy:
        return Report.error(f"pgcheck.check_score_function: policy={policy!r} does not match the "
                            f"measurement (use one of {SCORE_POLICIES}).", check=check,
                            diagnosis="usage")
    instances = score_instances(policy)
    values = measurement["values"]
    if len(values) != len(instances):
        return Report.error("pgcheck.check_score_function: the measurement does not match the "
                            "instances.", check=check, diagnosis="usage")
    rows: list[Row] = []
    notes = output_notes(measurement)
    first_bad: tuple[int, np.ndarray, np.ndarray, np.ndarray] | None = None
    parts = {"theta": True, "sigma": True}
    cand_ok: dict[str, bool] = {}
    ys, refs = [], []
    max_diff = 0.0
    for i, (inst, vals) in enumerate(zip(instances, values, strict=True)):
        args = inst["args"]
        auto, fd = score_reference(policy, args)
        ref_gap = float(np.max(np.abs(auto - fd)))
        if ref_gap > 1e-6 * (1 + float(np.max(np.abs(auto)))):
            notes.append(f"pgcheck's references disagree on {inst['name']} by {ref_gap:.2g} "
                         "(autograd vs finite differences); please report this.")
        y = np.array(vals, dtype=np.float64)
        d = int(args["theta"].numel())
        diff = np.abs(y - auto)
        max_diff = max(max_diff, float(np.max(diff)))
        rows.append(Row(inst["name"], {"yours": y.tolist(), "autograd": auto.tolist(),
                                       "finite differences": fd.tolist(),
                                       "max |diff|": float(np.max(diff))}))
        ok_theta = close(y[:d], auto[:d], rtol, atol)
        ok_sigma = close(y[d:], auto[d:], rtol, atol)
        parts["theta"] &= ok_theta
        parts["sigma"] &= ok_sigma
        if not (ok_theta and ok_sigma) and first_bad is None:
            first_bad = (i, y, auto, fd)
        for key, cand in score_candidates(policy, args).items():
            part = y[d:] if key.startswith("sigma:") else y[:d]
            cand_ok[key] = cand_ok.get(key, True) and close(part, cand, rtol, atol)
        ys.append(y[:d])
        refs.append(auto[:d])
    if first_bad is None:
        what = {"softmax_linear": "x(s,a) − Σ_b π(b|s) x(s,b)",
                "gaussian_linear": "(a − θᵀx) x / σ²",
                "gaussian_linear_sigma": "(a − θᵀx) x / σ² and −1/σ + (a − θᵀx)²/σ³"}[policy]
        return Report(passed=True, verdict="correct", check=check, rows=rows, notes=notes,
                      message=(f"Your score {what} matches autograd and finite differences on "
                               f"{len(instances)} inputs (max |diff| = {max_diff:.2g})."))
    i, y, auto, fd = first_bad
    inst = instances[i]
    first = (f"On input {i + 1} ({inst['name']}), your score is {fmt_vec(y)} but autograd gives "
             f"{fmt_vec(auto)} (finite differences: {fmt_vec(fd)}).")
    advice: list[str] = []
    codes: list[str] = []
    if not parts["theta"]:
        code = next((k for k in SCORE_DIAGNOSES if not k.startswith("sigma:")
                     and cand_ok.get(k)), None)
        if code is None:
            alpha, resid = fit_scale(np.concatenate(ys), np.concatenate(refs))
            if resid < 1e-6:
                code, text = "scaled", scale_hint(alpha)
            else:
                code, text = "mismatch", {
                    "softmax_linear": "Derive it again: ∇_θ log π(a|s) = x(s,a) − Σ_b π(b|s) "
                                      "x(s,b) with π = softmax(features @ θ).",
                }.get(policy, "Derive it again: ∇_θ log N(a; θᵀx, σ²) = (a − θᵀx) x / σ².")
        else:
            text = SCORE_DIAGNOSES[code]
        codes.append(code)
        advice.append(text)
    if policy == "gaussian_linear_sigma" and not parts["sigma"]:
        code = next((k for k in SCORE_DIAGNOSES if k.startswith("sigma:") and cand_ok.get(k)),
                    "sigma:mismatch")
        codes.append(code)
        advice.append(SCORE_DIAGNOSES.get(code, "Your last entry ∂ log N/∂σ is wrong: it is "
                                                "−1/σ + (a − θᵀx)²/σ³."))
    if policy == "gaussian_linear_sigma" and parts["theta"]:
        advice.insert(0, "Your ∇_θ part is right.")
    return Report(passed=False, verdict="wrong", diagnosis="+".join(codes), check=check,
                  rows=rows, notes=notes, message=f"{first} {' '.join(advice)}")


register("score_function", measure_score_function, judge_score_function)
check_score_function = REGISTRY["score_function"]


# ============================================================================ score_estimator

ESTIMATOR_FAMILIES = ("bernoulli", "categorical", "gaussian")
ESTIMATOR_OPTIONS = ["family", "f", "timeout", "rtol", "atol", "batch_size", "n_batches",
                     "z_max"]
#: Gauss–Hermite nodes used to take the exact expectation of the learner's estimator.
GH_NODES = 16
#: Gauss–Hermite nodes used for the reference gradient (reparameterised quadrature).
GH_NODES_REF = 80
CATEGORICAL_TABLE = (1.0, -2.0, 0.5, 3.0)


def _f_linear(x: Any) -> torch.Tensor:
    """Bernoulli test function f(x) = 1.5 − 2x (f(0) = 1.5, f(1) = −0.5)."""
    return 1.5 - 2.0 * torch.as_tensor(x, dtype=DTYPE)


def _f_shifted_square(x: Any) -> torch.Tensor:
    """Test function f(x) = (x + 1)²."""
    return (torch.as_tensor(x, dtype=DTYPE) + 1.0) ** 2


def _f_table(x: Any) -> torch.Tensor:
    """Categorical test function f(k) = (1, −2, 0.5, 3)[k]."""
    return torch.tensor(CATEGORICAL_TABLE, dtype=DTYPE)[torch.as_tensor(x).long()]


def _f_square_sin(x: Any) -> torch.Tensor:
    """Gaussian test function f(x) = x² + sin x."""
    x = torch.as_tensor(x, dtype=DTYPE)
    return x**2 + torch.sin(x)


def _f_cubic(x: Any) -> torch.Tensor:
    """Gaussian test function f(x) = x³ − x."""
    x = torch.as_tensor(x, dtype=DTYPE)
    return x**3 - x


#: Named test functions per family; the first is the default, the second is also checked.
TEST_FUNCTIONS: dict[str, dict[str, Callable[[Any], torch.Tensor]]] = {
    "bernoulli": {"linear": _f_linear, "shifted_square": _f_shifted_square},
    "categorical": {"table": _f_table, "shifted_square": _f_shifted_square},
    "gaussian": {"square_sin": _f_square_sin, "cubic": _f_cubic},
}


def estimator_theta(family: str) -> torch.Tensor:
    """θ of each family: Bernoulli logit 0.4 (0-d); categorical logits [K=4];
    Gaussian [μ, log σ] = [0.7, log 1.5] (σ ≠ 1, so σ, σ² and log σ differ)."""
    if family == "bernoulli":
        return torch.tensor(0.4, dtype=DTYPE)
    if family == "categorical":
        return torch.tensor([0.5, -0.3, 1.2, 0.0], dtype=DTYPE)
    return torch.tensor([0.7, math.log(1.5)], dtype=DTYPE)


def estimator_atoms(family: str, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Points x_i and weights w_i with E_{x~p_θ}[h(x)] = Σ_i w_i h(x_i).

    Exact for the discrete families (every atom); Gauss–Hermite with 16 nodes for the
    Gaussian: x_i = μ + √2 σ z_i, w_i = ω_i / √π (exact for polynomials of degree ≤ 31; error
    ~1e-14 for the default f = x² + sin x).
    """
    if family == "bernoulli":
        p = torch.sigmoid(theta)
        return torch.tensor([0.0, 1.0], dtype=DTYPE), torch.stack([1 - p, p]).detach()
    if family == "categorical":
        return torch.arange(theta.numel()), torch.softmax(theta, 0).detach()
    z, w = _hermgauss(GH_NODES)
    mu, sigma = float(theta[0]), math.exp(float(theta[1]))
    x = torch.tensor(mu + math.sqrt(2) * sigma * z, dtype=DTYPE)
    return x, torch.tensor(w / math.sqrt(math.pi), dtype=DTYPE)


#: Gauss–Hermite nodes per sample when every batch of two samples is enumerated.
GH_PAIR_NODES = 8


def estimator_pair_atoms(family: str, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Atoms and weights for batches of two: E[h(x₁, x₂)] = Σ_ij w_i w_j h(x_i, x_j).

    Every atom for the discrete families; 8 Gauss–Hermite nodes per sample for the Gaussian
    (exact for polynomials of degree ≤ 15 in each sample, ~1e-5 relative for sin; the judge
    then compares with a relative tolerance of 1e-3).
    """
    if family != "gaussian":
        return estimator_atoms(family, theta)
    z, w = _hermgauss(GH_PAIR_NODES)
    mu, sigma = float(theta[0]), math.exp(float(theta[1]))
    x = torch.tensor(mu + math.sqrt(2) * sigma * z, dtype=DTYPE)
    return x, torch.tensor(w / math.sqrt(math.pi), dtype=DTYPE)


@functools.lru_cache(maxsize=8)
def _hermgauss(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Hermite nodes and weights (∫ e^{−z²} h(z) dz ≈ Σ ω_i h(z_i)), cached."""
    z, w = np.polynomial.hermite.hermgauss(n)
    z.setflags(write=False)
    w.setflags(write=False)
    return z, w


def _resolve_f(family: str, f: Any) -> list[tuple[str, Callable[[Any], torch.Tensor]]]:
    """The test functions to check: the chosen one (default: the family's first), then another."""
    library = TEST_FUNCTIONS[family]
    names = list(library)
    if f is None:
        return [(n, library[n]) for n in names[:2]]
    if isinstance(f, str):
        if f not in library:
            raise ValueError(f"f={f!r}; named test functions for {family!r} are {names}")
        other = next(n for n in names if n != f)
        return [(f, library[f]), (other, library[other])]
    if callable(f):
        return [(getattr(f, "__name__", "your f"), f), (names[0], library[names[0]])]
    raise ValueError(f"f must be None, a name in {names}, or a function; got {type(f).__name__}")


def exact_gradient(family: str, theta: torch.Tensor,
                   f: Callable[[Any], torch.Tensor]) -> np.ndarray:
    """∇_θ E_{x~p_θ}[f(x)], exactly.

    Discrete: autograd of the enumeration Σ_x p_θ(x) f(x). Gaussian: autograd of the
    reparameterised Gauss–Hermite quadrature E f(μ + σ√2 z) (80 nodes), or central finite
    differences of that quadrature if f is not differentiable by torch.
    """
    th = theta.clone().requires_grad_(True)
    if family == "bernoulli":
        p = torch.sigmoid(th)
        value = (1 - p) * f(torch.tensor([0.0], dtype=DTYPE))[0] + p * f(
            torch.tensor([1.0], dtype=DTYPE))[0]
        return torch.autograd.grad(value, th)[0].detach().numpy().reshape(theta.shape)
    if family == "categorical":
        vals = f(torch.arange(theta.numel())).detach().to(DTYPE)
        value = (torch.softmax(th, 0) * vals).sum()
        return torch.autograd.grad(value, th)[0].detach().numpy()
    z, w = _hermgauss(GH_NODES_REF)
    zt, wt = torch.tensor(z, dtype=DTYPE), torch.tensor(w / math.sqrt(math.pi), dtype=DTYPE)

    def expectation(t: torch.Tensor) -> torch.Tensor:
        return (wt * torch.as_tensor(f(t[0] + math.sqrt(2) * t[1].exp() * zt), dtype=DTYPE)).sum()

    value = expectation(th)
    if value.requires_grad:
        return torch.autograd.grad(value, th)[0].detach().numpy()
    out = np.empty(2)
    for k in range(2):
        e = torch.zeros(2, dtype=DTYPE)
        e[k] = 1e-5
        out[k] = (float(expectation(theta + e)) - float(expectation(theta - e))) / 2e-5
    return out


def estimator_candidates(family: str, theta: torch.Tensor, x: torch.Tensor,
                         fx: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-sample values ĝ(x_i) of correct and common wrong single-sample estimators [n, d]."""
    if family == "bernoulli":
        p = torch.sigmoid(theta)
        score = (x - p)[:, None]
        cands = {
            "correct": fx[:, None] * score,
            "sign": -fx[:, None] * score,
            "missing_f": score,
            "grad_f": torch.zeros_like(score),
            "score_wrt_p": fx[:, None] * score / (p * (1 - p)),
            "missing_normaliser": fx[:, None] * x[:, None],
            "probability_gradient": fx[:, None] * score * torch.where(x > 0.5, p, 1 - p)[:, None],
        }
    elif family == "categorical":
        pi = torch.softmax(theta, 0)
        onehot = torch.nn.functional.one_hot(x.long(), theta.numel()).to(DTYPE)
        score = onehot - pi
        cands = {
            "correct": fx[:, None] * score,
            "sign": -fx[:, None] * score,
            "missing_f": score,
            "grad_f": torch.zeros_like(score),
            "score_wrt_p": fx[:, None] * onehot / pi,
            "missing_normaliser": fx[:, None] * onehot,
            "probability_gradient": fx[:, None] * score * pi[x.long()][:, None],
        }
    else:
        mu, sigma = theta[0], theta[1].exp()
        r = x - mu
        score = torch.stack([r / sigma**2, r**2 / sigma**2 - 1], dim=1)
        cands = {
            "correct": fx[:, None] * score,
            "sign": -fx[:, None] * score,
            "missing_f": score,
            "grad_f": torch.zeros_like(score),
            "score_wrt_sigma": fx[:, None] * torch.stack(
                [r / sigma**2, r**2 / sigma**3 - 1 / sigma], dim=1),
            "sigma_not_squared": fx[:, None] * torch.stack([r / sigma, r**2 / sigma**2 - 1], dim=1),
            "missing_minus_one": fx[:, None] * torch.stack([r / sigma**2, r**2 / sigma**2], dim=1),
            "probability_gradient": fx[:, None] * score * torch.exp(
                torch.distributions.Normal(mu, sigma).log_prob(x))[:, None],
        }
    return {k: v.detach().numpy() for k, v in cands.items()}


ESTIMATOR_DIAGNOSES: dict[str, str] = {
    "sign": "Your estimate has the wrong sign: ∇_θ E[f] ≈ mean of f(x_i) ∇_θ log p_θ(x_i), "
            "with a plus.",
    "missing_f": "f(x) is missing: your estimate does not change when f changes. Multiply each "
                 "score by f(x_i): ĝ = mean of f(x_i) ∇_θ log p_θ(x_i).",
    "grad_f": "Your estimate is zero for every sample: it is the gradient of f(x), not of E[f]. "
              "Once x is sampled f(x) does not depend on θ; the dependence is in p_θ, so use "
              "ĝ = mean of f(x_i) ∇_θ log p_θ(x_i).",
    "score_wrt_p": "You differentiate log p with respect to the probabilities, not θ (the "
                   "logits). Differentiate through the sigmoid/softmax: for logits "
                   "∇_θ log p_θ(x) = onehot(x) − p_θ.",
    "missing_normaliser": "The −p_θ term of the score is missing: for logits "
                          "∇_θ log p_θ(x) = onehot(x) − p_θ (Bernoulli: x − σ(θ)).",
    "probability_gradient": "You use ∇_θ p_θ(x) where ∇_θ log p_θ(x) = ∇_θ p_θ(x) / p_θ(x) "
                            "belongs (log-derivative trick).",
    "score_wrt_sigma": "Your second entry differentiates with respect to σ, but θ holds log σ: "
                       "∂ log p/∂ log σ = (x−μ)²/σ² − 1.",
    "sigma_not_squared": "You divide by σ where σ² belongs: ∂ log p/∂μ = (x−μ)/σ².",
    "missing_minus_one": "The −1 from the −log σ term is missing: ∂ log p/∂ log σ = "
                         "(x−μ)²/σ² − 1.",
    "sum_not_mean": "Your estimate grows with the number of samples: you sum where you should "
                    "average. Divide by N (use .mean()).",
}


def _probe_indices(family: str) -> list[int]:
    return {"bernoulli": [0, 1, 1], "categorical": [0, 2, 3, 2]}.get(family, [3, 8, 12])


def measure_score_estimator(fn: Callable[..., Any], *, family: str = "gaussian", f: Any = None,
                            timeout: float = DEFAULT_TIMEOUT, rtol: float = 1e-6,
                            atol: float = 1e-8, batch_size: int = 16, n_batches: int = 32,
                            z_max: float = 4.0, **unknown: Any) -> dict[str, Any]:
    """Call the learner's estimator; plain numbers only, never raises.

    Records ĝ({x_i}) for every atom / Gauss–Hermite node x_i (one sample per call) and every
    test function; a probe ĝ({x_a, x_b, x_c}) on several atoms at once (is ĝ a per-sample
    mean?); and ĝ on ``n_batches`` batches of ``batch_size`` samples drawn with a fixed
    torch.Generator (for the empirical mean and standard error).
    """
    bad = unknown_options("check_score_estimator", unknown, ESTIMATOR_OPTIONS)
    if bad:
        return {"error": bad, "error_kind": "usage"}
    if family not in ESTIMATOR_FAMILIES:
        return usage_error("check_score_estimator",
                           f"family={family!r}; use one of {ESTIMATOR_FAMILIES}.")
    try:
        fs = _resolve_f(family, f)
    except ValueError as exc:
        return usage_error("check_score_estimator", str(exc))
    budget = Budget(timeout)
    name = "your estimator"
    theta = estimator_theta(family)
    shape = tuple(theta.shape)
    what = "the gradient estimate (shaped like theta)"
    atoms, _ = estimator_atoms(family, theta)

    def run(samples: torch.Tensor, func: Callable[[Any], torch.Tensor], label: str,
            allow_nonfinite: bool = False) -> tuple[list[Any] | None, dict[str, Any] | None]:
        value, err = learner_call(fn, {"samples": samples, "theta": theta.clone(), "f": func},
                                  budget, name)
        if err:
            return None, err
        arr, msg = read_output(value, shape, name, what, allow_nonfinite=allow_nonfinite)
        if msg:
            return None, {"error": f"{msg} (input: {label})", "error_kind": "output"}
        return finite_or_none(arr), None

    with single_thread():
        per_atom: list[list[list[Any]]] = []
        for fname, func in fs:
            rows = []
            for i in range(atoms.shape[0]):
                # one sample alone: a leave-one-out baseline may give NaN here (0/0), allowed
                vals, err = run(atoms[i:i + 1].clone(), func,
                                f"one sample x = {float(atoms[i]):.4g}, f = {fname}", True)
                if err:
                    return err
                rows.append(vals)
            per_atom.append(rows)
        idx = _probe_indices(family)
        probe, err = run(atoms[idx].clone(), fs[0][1], f"{len(idx)} samples, f = {fs[0][0]}")
        if err:
            return err
        singles = [per_atom[0][i] for i in idx]
        per_sample = all(None not in v for v in singles) and close(
            np.array(probe), np.mean(np.array(singles, dtype=np.float64), axis=0), 1e-6, 1e-9)
        pairs: list[list[list[Any]]] | None = None
        if not per_sample:
            # the estimator uses the batch as a whole: enumerate every batch of two samples
            pair_atoms, _ = estimator_pair_atoms(family, theta)
            pairs = []
            for fname, func in fs:
                rows = []
                for i in range(pair_atoms.shape[0]):
                    for j in range(pair_atoms.shape[0]):
                        vals, err = run(pair_atoms[[i, j]].clone(), func,
                                        f"two samples, f = {fname}")
                        if err:
                            return err
                        rows.append(vals)
                pairs.append(rows)
        gen = torch.Generator().manual_seed(8_675_309)
        batches: list[list[Any]] = []
        for b in range(int(n_batches)):
            samples = _sample(family, theta, int(batch_size), gen)
            vals, err = run(samples, fs[0][1], f"batch {b + 1} of {batch_size} samples")
            if err:
                return err
            batches.append(vals)
    return {"check": "score_estimator", "family": family, "f_names": [n for n, _ in fs],
            "per_atom": per_atom, "probe": probe, "pairs": pairs, "batches": batches,
            "batch_size": int(batch_size), "output": budget.output}


def _sample(family: str, theta: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    """n samples of p_θ from the generator (float {0,1} / long / float)."""
    if family == "bernoulli":
        return torch.bernoulli(torch.sigmoid(theta).expand(n), generator=gen)
    if family == "categorical":
        return torch.multinomial(torch.softmax(theta, 0), n, replacement=True, generator=gen)
    return theta[0] + theta[1].exp() * torch.randn(n, generator=gen, dtype=DTYPE)


@finite_rows
def judge_score_estimator(measurement: dict[str, Any], *, family: str = "gaussian",
                          f: Any = None, timeout: float = DEFAULT_TIMEOUT, rtol: float = 1e-6,
                          atol: float = 1e-8, batch_size: int = 16, n_batches: int = 32,
                          z_max: float = 4.0, **unknown: Any) -> Report:
    """Decide whether the estimator is unbiased for ∇_θ E_{x~p_θ}[f(x)].

    Exact expectation of a per-sample estimator: E[ĝ] = Σ_i w_i ĝ({x_i}) over atoms or
    Gauss–Hermite nodes, compared with the exact gradient (|diff| ≤ atol + rtol·|∇|) for every
    test function. An estimator that is not a per-sample mean (the probe on several samples
    disagrees with the mean of single-sample values) is judged by the empirical mean over
    the fixed batches: |mean − ∇| ≤ z_max · standard error in every component.
    """
    check = "score_estimator"
    bad = unknown_options("check_score_estimator", unknown, ESTIMATOR_OPTIONS)
    if bad:
        return Report.error(bad, check=check, diagnosis="usage")
    err = error_report(measurement, check)
    if err is not None:
        return err
    if family not in ESTIMATOR_FAMILIES or measurement.get("family") != family:
        return Report.error(f"pgcheck.check_score_estimator: family={family!r} does not match the "
                            f"measurement (use one of {ESTIMATOR_FAMILIES}).", check=check,
                            diagnosis="usage")
    fs = _resolve_f(family, f)
    theta = estimator_theta(family)
    atoms, weights = estimator_atoms(family, theta)
    w = weights.numpy()
    notes = output_notes(measurement)
    rows: list[Row] = []
    per_atom = [_nan_array(v) for v in measurement["per_atom"]]
    batches = _nan_array(measurement["batches"])
    n_b = batches.shape[0]
    emp_mean = batches.mean(axis=0)
    emp_se = batches.std(axis=0, ddof=1) / math.sqrt(n_b) if n_b > 1 else np.full_like(
        emp_mean, np.inf)
    exact_ok: list[bool] = []
    expectations, truths = [], []
    cand_match: dict[str, bool] = {}
    cand_expect: dict[str, bool] = {}
    for (fname, func), vals in zip(fs, per_atom, strict=True):
        truth = exact_gradient(family, theta, func).reshape(-1)
        expect = w @ vals
        truths.append(truth)
        expectations.append(expect)
        ok = close(expect, truth, rtol, atol)
        exact_ok.append(ok)
        fx = torch.as_tensor(func(atoms), dtype=DTYPE).detach()
        for key, cand in estimator_candidates(family, theta, atoms, fx).items():
            cand_match[key] = cand_match.get(key, True) and close(vals, cand, 1e-6, 1e-9)
            cand_expect[key] = cand_expect.get(key, True) and close(expect, w @ cand, 1e-6, 1e-9)
        cols: dict[str, Any] = {"exact ∇E[f]": truth.tolist(), "E[your estimate]": expect.tolist(),
                                "max |diff|": float(np.max(np.abs(expect - truth)))}
        if len(rows) == 0:
            cols["batch mean"] = emp_mean.tolist()
            cols["standard error"] = emp_se.tolist()
        rows.append(Row(f"f = {fname}", cols))
    batch_desc = f"{n_b} batches of {measurement.get('batch_size')} samples"
    # ---- is the estimator a mean of per-sample terms?
    idx = _probe_indices(family)
    probe = _nan_array(measurement["probe"])
    singles = per_atom[0][idx]
    per_sample = bool(np.all(np.isfinite(singles))) and close(probe, singles.mean(axis=0),
                                                              1e-6, 1e-9)
    summed = close(probe, singles.sum(axis=0), 1e-6, 1e-9) and not per_sample
    f_independent = len(per_atom) > 1 and close(per_atom[0], per_atom[1], 1e-9, 1e-12)
    emp_text = (f"Over {batch_desc}: mean {fmt_vec(emp_mean)} ± {fmt_vec(emp_se, 3)} (standard "
                "error).")
    z = np.abs(emp_mean - truths[0]) / np.maximum(emp_se, 1e-300)
    consistent = bool(np.all(z <= z_max))
    if summed:
        return Report(passed=False, verdict="wrong", diagnosis="sum_not_mean", check=check,
                      rows=rows, notes=notes,
                      message=(f"On {len(idx)} samples your estimate is {fmt_vec(probe)}, the sum "
                               f"of its values on each sample alone ({fmt_vec(singles.sum(0))}). "
                               + ESTIMATOR_DIAGNOSES["sum_not_mean"]))
    if not per_sample:
        return _judge_batch_estimator(measurement, family, fs, theta, truths, rows, notes,
                                      emp_text, consistent, float(np.max(z)), z_max, rtol, atol)
    bad_atoms = [i for i in range(per_atom[0].shape[0])
                 if not all(np.all(np.isfinite(v[i])) for v in per_atom)]
    if bad_atoms:
        return Report.error(f"Your estimator returned NaN or inf for the single sample x = "
                            f"{float(atoms[bad_atoms[0]]):.6g}. Look for log of 0 or division "
                            "by 0.", check=check, diagnosis="output")
    if all(exact_ok) and not consistent:
        return Report(passed=False, verdict="wrong", diagnosis="inconsistent", check=check,
                      rows=rows, notes=notes,
                      message=(f"Your estimator is right on single samples, but its mean over "
                               f"{batch_desc} is {float(np.max(z)):.1f} standard errors from "
                               f"the exact gradient {fmt_vec(truths[0])}: it treats batches "
                               "differently from single samples. " + emp_text))
    if all(exact_ok):
        return Report(passed=True, verdict="correct", check=check, rows=rows, notes=notes,
                      message=(f"The exact expectation of your estimator equals ∇_θ E[f] for "
                               f"f = {', '.join(n for n, _ in fs)} (e.g. {fmt_vec(expectations[0])}"
                               f" vs {fmt_vec(truths[0])}). {emp_text}"))
    k = exact_ok.index(False)
    first = (f"For f = {fs[k][0]}, the exact expectation of your estimator is "
             f"{fmt_vec(expectations[k])} but ∇_θ E[f] = {fmt_vec(truths[k])}.")
    order = ["grad_f", "missing_f", "sign", "score_wrt_p", "missing_normaliser",
             "probability_gradient", "score_wrt_sigma", "sigma_not_squared", "missing_minus_one"]
    diagnosis = next((c for c in order if cand_match.get(c)), None)
    if diagnosis is None and f_independent:
        diagnosis = "missing_f"
    if diagnosis is None:
        diagnosis = next((c for c in order if cand_expect.get(c)), None)
    if diagnosis is not None:
        advice = ESTIMATOR_DIAGNOSES[diagnosis]
    else:
        alpha, resid = fit_scale(np.concatenate(expectations), np.concatenate(truths))
        if resid < 1e-6:
            diagnosis, advice = "scaled", scale_hint(alpha)
        else:
            diagnosis = "biased"
            advice = ("Your estimator is biased. The score-function estimator is ĝ = mean of "
                      "f(x_i) ∇_θ log p_θ(x_i); check it term by term.")
    if exact_ok[0] and not exact_ok[k]:
        advice = ("It is right for the default f but not for another, so it must not assume a "
                  f"particular f. {advice}")
    return Report(passed=False, verdict="wrong", diagnosis=diagnosis, check=check, rows=rows,
                  notes=notes, message=f"{first} {advice}")


def _nan_array(values: Any) -> np.ndarray:
    """A float64 array from nested lists, None → NaN."""
    def conv(v: Any) -> Any:
        if isinstance(v, list):
            return [conv(u) for u in v]
        return np.nan if v is None else float(v)
    return np.array(conv(values), dtype=np.float64)


def _judge_batch_estimator(measurement: dict[str, Any], family: str,
                           fs: list[tuple[str, Callable[[Any], torch.Tensor]]],
                           theta: torch.Tensor, truths: list[np.ndarray], rows: list[Row],
                           notes: list[str], emp_text: str, consistent: bool, z_worst: float,
                           z_max: float, rtol: float, atol: float) -> Report:
    """Judge an estimator that uses the batch as a whole (e.g. a batch-mean baseline).

    Exact at batch size two: E[ĝ(x₁, x₂)] = Σ_ij w_i w_j ĝ(x_i, x_j), plus the empirical
    check on the fixed batches. A baseline that includes the sample itself, b = mean_j f(x_j),
    gives E[ĝ] = (1 − 1/N) ∇ = ½ ∇ at N = 2.
    """
    check = "score_estimator"
    if measurement.get("pairs") is None:
        return Report.error("pgcheck.check_score_estimator: the measurement has no batches of "
                            "two (measured with another pgcheck version?).", check=check,
                            diagnosis="usage")
    _, w2 = estimator_pair_atoms(family, theta)
    ww = np.outer(w2.numpy(), w2.numpy()).reshape(-1)
    pair_vals = [_nan_array(v) for v in measurement["pairs"]]
    if not all(np.all(np.isfinite(v)) for v in pair_vals):
        return Report.error("Your estimator returned NaN or inf for a batch of two samples. "
                            "Look for division by N − 1 or by a standard deviation that can "
                            "be 0.", check=check, diagnosis="output")
    expect2 = [ww @ v for v in pair_vals]
    for row, e2 in zip(rows, expect2, strict=True):
        row.columns["E[yours], batches of 2"] = e2.tolist()
    notes = notes + ["your estimator is not a mean of per-sample terms (it uses the whole "
                     "batch), so its exact expectation was taken over every batch of two "
                     "samples."]
    tol = max(rtol, 1e-3) if family == "gaussian" else rtol  # 8-node quadrature per sample
    ok = [close(e, t, tol, atol) for e, t in zip(expect2, truths, strict=True)]
    if all(ok) and consistent:
        return Report(passed=True, verdict="correct", check=check, rows=rows, notes=notes,
                      message=(f"Over every batch of two samples, the exact expectation of your "
                               f"estimator equals ∇_θ E[f] (e.g. {fmt_vec(expect2[0])} vs "
                               f"{fmt_vec(truths[0])}). {emp_text}"))
    if all(ok):
        return Report(passed=False, verdict="wrong", diagnosis="biased", check=check, rows=rows,
                      notes=notes,
                      message=(f"Your estimator is unbiased for batches of two, but over larger "
                               f"batches its mean is {z_worst:.1f} standard errors from the exact "
                               f"gradient {fmt_vec(truths[0])}. {emp_text}"))
    k = ok.index(False)
    first = (f"For f = {fs[k][0]} and batches of two samples, the exact expectation of your "
             f"estimator is {fmt_vec(expect2[k])} but ∇_θ E[f] = {fmt_vec(truths[k])}.")
    if all(close(e, 0.5 * t, tol, 1e-9) for e, t in zip(expect2, truths, strict=True)):
        return Report(passed=False, verdict="wrong", diagnosis="baseline_includes_sample",
                      check=check, rows=rows, notes=notes,
                      message=(f"{first} That is (1 − 1/N) ∇ with N = 2: your baseline includes "
                               "the sample it is subtracted from (the batch mean of f). Use a "
                               "leave-one-out baseline b_i = mean of f(x_j) over j ≠ i."))
    alpha, resid = fit_scale(np.concatenate(expect2), np.concatenate(truths))
    advice = (scale_hint(alpha) if resid < 1e-6 else
              "It is biased: a baseline must not depend on the sample it multiplies; use "
              "ĝ = mean of (f(x_i) − b_i) ∇_θ log p_θ(x_i) with b_i built from the other samples.")
    return Report(passed=False, verdict="wrong", diagnosis="scaled" if resid < 1e-6 else "biased",
                  check=check, rows=rows, notes=notes, message=f"{first} {advice}")


register("score_estimator", measure_score_estimator, judge_score_estimator)
check_score_estimator = REGISTRY["score_estimator"]
