"""check_log_prob: a hand-written log π against torch.distributions.

Softmax policy log π(a) = z_a − log Σ_b exp z_b against ``Categorical``; Gaussian policy
log N(a; μ, σ²) = −(a−μ)²/(2σ²) − log σ − ½ log 2π against ``Normal``; plus the
normalisation Σ_a π(a) = 1 (∫ p(a) da = 1), the gradient, and numerical stability.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from pgcheck.checks.base import (
    DEFAULT_TIMEOUT,
    DTYPE,
    Budget,
    Check,
    close,
    count_mismatch,
    failed,
    finite_or_none,
    finite_rows,
    fit_scale,
    fmt_vec,
    judge_precheck,
    learner_call,
    measure_precheck,
    output_notes,
    read_output,
    run_check,
    scale_hint,
)
from pgcheck.errors import ErrorKind
from pgcheck.report import Report, Row
from pgcheck.sandbox import single_thread

LOG_PROB_POLICIES = ("softmax", "gaussian", "diag_gaussian")
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
        out.append(
            {
                "name": "6 states, 4 actions",
                "kind": "values",
                "args": {"logits": logits, "actions": actions},
            }
        )
        base = torch.randn(5, 3, generator=g, dtype=DTYPE) * 2.0
        out.append(
            {
                "name": "every action of 5 states",
                "kind": "normalisation",
                "groups": 5,
                "args": {
                    "logits": base.repeat_interleave(3, dim=0),
                    "actions": torch.arange(3).repeat(5),
                },
            }
        )
        wide = torch.randn(3, 7, generator=g, dtype=DTYPE) * 4.0
        out.append(
            {
                "name": "3 states, 7 actions",
                "kind": "values",
                "args": {"logits": wide, "actions": torch.tensor([6, 0, 4])},
            }
        )
        huge = torch.randn(4, 5, generator=g, dtype=DTYPE) * 3.0 + 1000.0
        out.append(
            {
                "name": "logits near 1000",
                "kind": "stability",
                "args": {"logits": huge, "actions": torch.tensor([2, 0, 4, 1])},
            }
        )
        # spread logits: softmax(z).log() underflows to −inf for the unlikely actions
        spread = torch.tensor([[0.0, 800.0, -50.0], [900.0, 0.0, 10.0]], dtype=DTYPE)
        out.append(
            {
                "name": "logits 800 apart",
                "kind": "stability",
                "args": {"logits": spread, "actions": torch.tensor([0, 1])},
            }
        )
    elif policy == "diag_gaussian":
        out.extend(diag_gaussian_instances())
    else:
        mean = torch.randn(6, generator=g, dtype=DTYPE) * 2.0
        std = torch.tensor([0.3, 2.5, 0.7, 1.6, 0.45, 3.2], dtype=DTYPE)
        actions = mean + std * torch.randn(6, generator=g, dtype=DTYPE) * 1.5
        out.append(
            {
                "name": "6 random (μ, σ, a)",
                "kind": "values",
                "args": {"mean": mean, "std": std, "actions": actions},
            }
        )
        mus = torch.tensor([-1.2, 0.5, 2.0], dtype=DTYPE)
        sigmas = torch.tensor([0.4, 1.7, 3.0], dtype=DTYPE)
        u = torch.linspace(-16.0, 16.0, 1601, dtype=DTYPE)
        out.append(
            {
                "name": "grid over a for 3 (μ, σ)",
                "kind": "normalisation",
                "groups": 3,
                "args": {
                    "mean": mus.repeat_interleave(u.numel()),
                    "std": sigmas.repeat_interleave(u.numel()),
                    "actions": (mus[:, None] + sigmas[:, None] * u[None, :]).reshape(-1),
                },
            }
        )
        tail_std = torch.tensor([0.1, 0.05, 2.0], dtype=DTYPE)
        tail_mean = torch.tensor([0.5, -1.0, 3.0], dtype=DTYPE)
        out.append(
            {
                "name": "far tails (|a−μ| = 40σ)",
                "kind": "stability",
                "args": {
                    "mean": tail_mean,
                    "std": tail_std,
                    "actions": tail_mean
                    + tail_std * torch.tensor([40.0, -45.0, 50.0], dtype=DTYPE),
                },
            }
        )
    return out


def diag_gaussian_instances() -> list[dict[str, Any]]:
    """Inputs for ``policy="diag_gaussian"``: mean, std, actions [N, k]; the answer is
    log N(a; μ, diag σ²) = Σ_j [−(a_j−μ_j)²/(2σ_j²) − log σ_j − ½ log 2π], one number per row.
    The σ_j differ within a row (so σ and σ² differ, and a mean over j is not a sum)."""
    g = torch.Generator().manual_seed(2025_07)
    mean = torch.randn(5, 3, generator=g, dtype=DTYPE) * 1.5
    std = 0.3 + 2.5 * torch.rand(5, 3, generator=g, dtype=DTYPE)
    actions = mean + std * torch.randn(5, 3, generator=g, dtype=DTYPE) * 1.5
    mean2 = torch.randn(4, 2, generator=g, dtype=DTYPE)
    std2 = torch.tensor([[0.4, 1.9], [2.2, 0.6], [0.8, 3.0], [1.3, 0.35]], dtype=DTYPE)
    actions2 = mean2 + std2 * torch.randn(4, 2, generator=g, dtype=DTYPE)
    tail_mean = torch.tensor([[0.5, -1.0], [3.0, 0.0]], dtype=DTYPE)
    tail_std = torch.tensor([[0.1, 0.05], [2.0, 0.2]], dtype=DTYPE)
    tails = tail_mean + tail_std * torch.tensor([[40.0, -45.0], [50.0, 42.0]], dtype=DTYPE)
    return [
        {
            "name": "5 rows, 3 action dimensions",
            "kind": "values",
            "args": {"mean": mean, "std": std, "actions": actions},
        },
        {
            "name": "4 rows, 2 action dimensions",
            "kind": "values",
            "args": {"mean": mean2, "std": std2, "actions": actions2},
        },
        {
            "name": "far tails (|a−μ| = 40σ)",
            "kind": "stability",
            "args": {"mean": tail_mean, "std": tail_std, "actions": tails},
        },
    ]


def _grad_weights(n: int) -> torch.Tensor:
    """Fixed random weights c for the gradient check ∇ Σ_i c_i log π_i."""
    return torch.randn(n, generator=torch.Generator().manual_seed(77), dtype=DTYPE)


def _differentiable_names(policy: str) -> list[str]:
    return ["logits"] if policy == "softmax" else ["mean", "std"]


def measure_log_prob(
    fn: Callable[..., Any],
    *,
    policy: str = "softmax",
    timeout: float = DEFAULT_TIMEOUT,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    require_grad: bool = True,
    **unknown: Any,
) -> dict[str, Any]:
    """Run the learner's log π on the fixed inputs; plain numbers only, never raises.

    Records, per instance, the learner's values (None where not finite, allowed only on the
    stability instances) and, on the first instance, ∇ Σ_i c_i fn(...)_i with respect to the
    policy's parameters (logits, or mean and std), if the output is differentiable.
    """
    early = measure_precheck(
        "check_log_prob", unknown, LOG_PROB_OPTIONS, kind=("policy", policy, LOG_PROB_POLICIES)
    )
    if early is not None:
        return early
    budget = Budget(timeout)
    name = "your log-probability function"
    diff = _differentiable_names(policy)
    with single_thread():
        return _measure_log_prob(fn, policy, budget, name, diff)


def _measure_log_prob(
    fn: Callable[..., Any], policy: str, budget: Budget, name: str, diff: list[str]
) -> dict[str, Any]:
    values: list[list[Any]] = []
    grad: dict[str, Any] = {"connected": False}
    for i, inst in enumerate(log_prob_instances(policy)):
        args = {
            k: (v.clone().requires_grad_(True) if k in diff else v.clone())
            for k, v in inst["args"].items()
        }
        value, err = learner_call(fn, args, budget, name)
        if err:
            return err
        n = int(inst["args"]["actions"].shape[0])
        arr, msg = read_output(
            value,
            (n,),
            name,
            "log π of each action" if policy == "softmax" else "the log-density of each action",
            allow_nonfinite=inst["kind"] == "stability",
        )
        if msg:
            return failed(ErrorKind.OUTPUT, msg + f" (input: {inst['name']})")
        values.append(finite_or_none(arr))
        if i == 0 and isinstance(value, torch.Tensor) and value.requires_grad:
            weights = _grad_weights(n)
            inputs = [args[k] for k in diff]

            def backward(
                out: torch.Tensor = value,
                w: torch.Tensor = weights,
                xs: list[torch.Tensor] = inputs,
            ) -> tuple[Any, ...]:
                return torch.autograd.grad(
                    (out.reshape(-1).to(DTYPE) * w).sum(), xs, allow_unused=True
                )

            grads, gerr = learner_call(backward, {}, budget, "the backward pass of your function")
            if gerr:
                return gerr
            grad = {"connected": any(gr is not None for gr in grads)}
            for k, gr in zip(diff, grads, strict=True):
                grad[k] = finite_or_none(gr.detach().to(DTYPE).numpy()) if gr is not None else None
    return {
        "check": "log_prob",
        "policy": policy,
        "values": values,
        "grad": grad,
        "output": budget.output,
    }


def _ref_log_prob(policy: str, args: dict[str, torch.Tensor]) -> torch.Tensor:
    """log π(a) from torch.distributions (Categorical or Normal)."""
    if policy == "softmax":
        return torch.distributions.Categorical(logits=args["logits"]).log_prob(args["actions"])
    if policy == "diag_gaussian":  # independent dimensions: the log-densities add up
        normal = torch.distributions.Normal(args["mean"], args["std"])
        return torch.distributions.Independent(normal, 1).log_prob(args["actions"])
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
            "std_in_quadratic": -r2 / (2 * s) - s.log() - HALF_LOG_2PI,
        }
        if policy == "diag_gaussian":
            cands = {k: v.sum(-1) for k, v in cands.items()}
            cands["sign"] = -lp.sum(-1)
            cands["density"] = lp.sum(-1).exp()
            cands["mean_over_dims"] = lp.mean(-1)
            cands["first_dim_only"] = lp[..., 0]
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
    "std_in_quadratic": "You divide by 2σ where 2σ² belongs in the quadratic term: "
    "−(a−μ)²/(2σ²) − log σ − ½ log 2π. Square the std.",
    "mean_over_dims": "You average the per-dimension log-densities; for independent dimensions "
    "they add up: log N(a; μ, diag σ²) = Σ_j log N(a_j; μ_j, σ_j²). Use .sum(-1), not .mean(-1).",
    "first_dim_only": "You return the log-density of the first action dimension only; sum "
    "over all of them: Σ_j log N(a_j; μ_j, σ_j²).",
    "not_normalised_density": "exp of your values does not integrate to 1 over a, so it is not a "
    "log-density. Compare term by term with −(a−μ)²/(2σ²) − log σ − "
    "½ log 2π.",
}


@finite_rows
def judge_log_prob(
    measurement: dict[str, Any],
    *,
    policy: str = "softmax",
    timeout: float = DEFAULT_TIMEOUT,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    require_grad: bool = True,
    **unknown: Any,
) -> Report:
    """Compare the measured log π with torch.distributions and check normalisation.

    Softmax: log π(a) = z_a − log Σ_b exp z_b and Σ_a π(a) = 1 for every state.
    Gaussian: log N(a; μ, σ²) = −(a−μ)²/(2σ²) − log σ − ½ log 2π and ∫ N(a; μ, σ²) da = 1
    (trapezoid rule over a ∈ μ ± 16σ, 1601 points). Gradient: ∇ Σ_i c_i log π_i with respect
    to the logits (or mean and std) against autograd through torch.distributions.
    """
    check = "log_prob"
    early = judge_precheck(
        measurement,
        check,
        "check_log_prob",
        unknown,
        LOG_PROB_OPTIONS,
        kind=("policy", policy, LOG_PROB_POLICIES),
    )
    if early is not None:
        return early
    instances = log_prob_instances(policy)
    values = measurement["values"]
    early = count_mismatch(values, len(instances), check, "check_log_prob")
    if early is not None:
        return early
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
                    np.all(np.abs(diffs - diffs[:, :1]) <= atol + rtol * np.abs(per))
                )
                cols["Σ_a exp(yours)"] = totals.tolist()
                label = "Σ_a π(a)"
            else:
                grid = args["actions"].reshape(groups, -1).numpy()
                totals = np.array(
                    [np.trapezoid(np.exp(p), x) for p, x in zip(per, grid, strict=True)]
                )
                cols["∫ exp(yours) da"] = totals.tolist()
                label = "∫ p(a) da"
            norm_ok = bool(np.all(np.abs(totals - 1) <= 1e-6))
            norm_text = (
                f"{label} = 1 {'holds' if norm_ok else 'fails'} (yours: {fmt_vec(totals, 8)})"
            )
            if not norm_ok and policy == "gaussian":
                cand_ok["not_normalised_density"] = True
            show = slice(0, 6)
        cols["yours"] = [None if v is None else v for v in vals[show]]
        cols["torch.distributions"] = ref[show].tolist()
        cols["max |diff|"] = float(np.nanmax(diff)) if finite.any() else float("inf")
        rows.append(Row(inst["name"], cols))
    if policy == "diag_gaussian":
        norm_text = (
            "each dimension is a 1-D Gaussian (∫ p(a) da = 1 is checked by policy='gaussian')"
        )
    dist = "Categorical" if policy == "softmax" else "Normal"
    notes = output_notes(measurement)
    if mismatch:
        i, j, y, r = mismatch[0]
        inst = instances[i]
        where = _describe_entry(policy, inst["args"], j)
        first = f"For {where}, your log π is {y:.6g} but torch.distributions.{dist} gives {r:.6g}."
        order = (
            ["sign", "probability", "missing_normaliser", "wrong_dim"]
            if policy == "softmax"
            else [
                "sign",
                "density",
                "missing_log_sigma",
                "missing_constant",
                "std_as_variance",
                "log_variance",
                "missing_half",
            ]
            + ["std_in_quadratic"]
            + (["mean_over_dims", "first_dim_only"] if policy == "diag_gaussian" else [])
        )
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
            refs = np.concatenate(
                [_ref_log_prob(policy, instances[k]["args"]).detach().numpy() for k in main]
            )
            alpha, resid = fit_scale(ys, refs)
            advice = (
                scale_hint(alpha)
                if resid < 1e-6
                else (
                    "Compare with torch.log_softmax(logits, dim=-1)[range(N), actions]."
                    if policy == "softmax"
                    else "Compare term by term with −(a−μ)²/(2σ²) − log σ − ½ log 2π."
                )
            )
            diagnosis = "scaled" if resid < 1e-6 else "mismatch"
        return Report(
            passed=False,
            verdict="wrong",
            message=f"{first} {advice}",
            diagnosis=diagnosis,
            check=check,
            rows=rows,
            notes=notes + ([norm_text] if norm_text else []),
        )
    grad = measurement.get("grad") or {}
    if require_grad and not grad.get("connected"):
        return Report(
            passed=False,
            verdict="wrong",
            diagnosis="not_differentiable",
            check=check,
            rows=rows,
            notes=notes,
            message=(
                "Your values are right, but they have no gradient path to the "
                + ("logits" if policy == "softmax" else "mean and std")
                + " (numpy, .item(), .detach() or torch.no_grad?). A pseudo-loss "
                "needs log π to be differentiable: use torch operations only."
            ),
        )
    if require_grad:
        inst = instances[0]
        diff_names = _differentiable_names(policy)
        args = {
            k: (v.clone().requires_grad_(True) if k in diff_names else v)
            for k, v in inst["args"].items()
        }
        w = _grad_weights(int(args["actions"].shape[0]))
        ref_grads = torch.autograd.grad(
            (_ref_log_prob(policy, args) * w).sum(), [args[k] for k in diff_names]
        )
        for k, rg in zip(diff_names, ref_grads, strict=True):
            rg_np = rg.numpy().reshape(-1)
            yg = grad.get(k)
            yg_np = (
                np.zeros_like(rg_np)
                if yg is None
                else np.array([np.nan if v is None else v for v in yg], dtype=np.float64)
            )
            rows.append(
                Row(
                    f"∇ w.r.t. {k} (instance 1)",
                    {"yours": yg_np.tolist()[:6], "torch.distributions": rg_np.tolist()[:6]},
                )
            )
            if not close(yg_np, rg_np, 1e-6, 1e-8):
                return Report(
                    passed=False,
                    verdict="wrong",
                    diagnosis="gradient",
                    check=check,
                    rows=rows,
                    notes=notes,
                    message=(
                        f"Your values are right but the gradient with respect to {k} is not "
                        f"(yours {fmt_vec(yg_np)}, expected {fmt_vec(rg_np)}): part of your "
                        "computation is detached (e.g. logsumexp(...).detach() or .item()). "
                        "Keep every term on the autograd graph."
                    ),
                )
    if unstable:
        fix = (
            "Subtract the largest logit before exponentiating, or simply use "
            "torch.log_softmax(logits, dim=-1)."
            if policy == "softmax"
            else "Compute the log-density directly, −(a−μ)²/(2σ²) − log σ − ½ log 2π, instead of "
            "taking the log of the density (which underflows to 0)."
        )
        return Report(
            passed=False,
            verdict="wrong",
            diagnosis="unstable",
            check=check,
            rows=rows,
            notes=notes,
            message=(
                f"Your log π is right on ordinary inputs but wrong or not finite on "
                f"{unstable[0]}. {fix}"
            ),
        )
    n_checked = sum(
        len(v) for v, inst in zip(values, instances, strict=True) if inst["kind"] != "stability"
    )
    message = (
        f"Your log π matches torch.distributions.{dist} on {n_checked} entries "
        f"(max |diff| = {max_diff:.2g}); {norm_text}"
        + ("; its gradient matches too." if require_grad else ".")
    )
    return Report(
        passed=True, verdict="correct", message=message, check=check, rows=rows, notes=notes
    )


def _describe_entry(policy: str, args: dict[str, torch.Tensor], j: int) -> str:
    if policy == "diag_gaussian":
        return (
            f"μ = {fmt_vec(args['mean'][j].numpy(), 4)}, σ = {fmt_vec(args['std'][j].numpy(), 4)}"
            f", a = {fmt_vec(args['actions'][j].numpy(), 4)}"
        )
    if policy == "softmax":
        return (
            f"logits {fmt_vec(args['logits'][j].numpy(), 4)} and action {int(args['actions'][j])}"
        )
    return (
        f"μ = {float(args['mean'][j]):.4g}, σ = {float(args['std'][j]):.4g}, "
        f"a = {float(args['actions'][j]):.4g}"
    )


CHECK = Check("log_prob", measure_log_prob, judge_log_prob)


def check_log_prob(
    fn: Callable[..., Any],
    policy: str = "softmax",
    *,
    timeout: float = 5.0,
    require_grad: bool = True,
    **options: Any,
) -> Report:
    """Check a hand-written log π against torch.distributions and its normalisation.

    ``policy="softmax"``: ``fn(logits [N,A], actions [N]) -> [N]`` with
    log π(a) = z_a − log Σ_b exp z_b; ``policy="gaussian"``: ``fn(mean [N], std [N],
    actions [N]) -> [N]`` with log N(a; μ, σ²) = −(a−μ)²/(2σ²) − log σ − ½ log 2π;
    ``policy="diag_gaussian"``: ``fn(mean [N,k], std [N,k], actions [N,k]) -> [N]``, the
    diagonal Gaussian Σ_j log N(a_j; μ_j, σ_j²) (no normalisation instance: its dimensions
    are independent one-dimensional Gaussians, checked by ``policy="gaussian"``).
    Also checks Σ_a π(a) = 1 (∫ p(a) da = 1), the gradient, and numerical stability.
    """
    return run_check(
        CHECK, fn, policy=policy, timeout=timeout, require_grad=require_grad, **options
    )
