"""Check a learner's value-function loss: a masked mean squared error over a padded batch.

``check_value_loss(fn)`` (registered as ``"value_loss"``) calls ``fn(values [B,T], targets
[B,T], mask [B,T])`` and expects L = Σ mask·(V − G)² / Σ mask, with no gradient from padded
steps: ∂L/∂V_it = 2 mask_it (V_it − G_it) / Σ mask.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from pgcheck.checks.base import (
    DEFAULT_TIMEOUT,
    Budget,
    Check,
    count_mismatch,
    failed,
    judge_precheck,
    learner_call,
    measure_precheck,
    output_notes,
    run_check,
)
from pgcheck.errors import ErrorKind
from pgcheck.report import Report, Row

OPTIONS = ["timeout", "rtol", "atol"]


def value_cases() -> list[dict[str, list[list[float]]]]:
    """Padded batches (values, targets, mask) with episodes of different lengths."""
    rng = np.random.default_rng(2_024)
    cases = []
    for B, T in ((1, 1), (2, 3), (3, 5), (4, 6)):
        lengths = [T] + [int(rng.integers(1, T + 1)) for _ in range(B - 1)]
        mask = np.array([[1.0 if t < n else 0.0 for t in range(T)] for n in lengths])
        values = np.round(rng.normal(size=(B, T)) * 2, 3)
        targets = np.round(rng.normal(size=(B, T)) * 3, 3) * mask
        cases.append(
            {"values": values.tolist(), "targets": targets.tolist(), "mask": mask.tolist()}
        )
    return cases


def measure_value_loss(
    fn: Callable[..., Any],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    **unknown: Any,
) -> dict[str, Any]:
    """Call ``fn(values, targets, mask)`` on fixed padded batches; record L and ∂L/∂values."""
    import torch

    early = measure_precheck("check_value_loss", unknown, OPTIONS)
    if early is not None:
        return early
    budget = Budget(timeout)
    name = "your value loss"
    out = []
    for case in value_cases():
        values = torch.tensor(case["values"], dtype=torch.float64, requires_grad=True)
        args = {
            "values": values,
            "targets": torch.tensor(case["targets"], dtype=torch.float64),
            "mask": torch.tensor(case["mask"], dtype=torch.float64),
        }
        value, err = learner_call(fn, args, budget, name)
        if err:
            return err
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            what = (
                f"a tensor of shape {list(value.shape)}"
                if isinstance(value, torch.Tensor)
                else type(value).__name__
            )
            return failed(
                ErrorKind.OUTPUT, f"{name} returned {what}; return a scalar tensor (the loss)."
            )
        if not value.requires_grad:
            return failed(
                ErrorKind.OUTPUT,
                f"{name} returned a tensor without a gradient: compute it from "
                "`values` with torch operations (no .detach(), .item() or numpy).",
            )
        (grad,) = torch.autograd.grad(value.reshape(()), values, allow_unused=True)
        grad_list = (torch.zeros_like(values) if grad is None else grad).tolist()
        out.append({"loss": float(value.detach()), "grad": grad_list})
    return {"check": "value_loss", "results": out, "output": budget.output}


def judge_value_loss(
    measurement: dict[str, Any],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    **unknown: Any,
) -> Report:
    """Compare with L = Σ mask (V − G)² / Σ mask and its gradient; name common mistakes."""
    check = "value_loss"
    early = judge_precheck(measurement, check, "check_value_loss", unknown, OPTIONS)
    if early is not None:
        return early
    cases = value_cases()
    results = measurement.get("results", [])
    early = count_mismatch(results, len(cases), check, "check_value_loss")
    if early is not None:
        return early
    rows: list[Row] = []
    flags = {
        "ok": True,
        "padding_in_gradient": False,
        "divides_by_all": True,
        "sum": True,
        "half": True,
    }
    for case, res in zip(cases, results, strict=True):
        v, g, m = (np.array(case[k]) for k in ("values", "targets", "mask"))
        n = m.sum()
        err_sq = (v - g) ** 2 * m
        ref_loss, ref_grad = err_sq.sum() / n, 2 * (v - g) * m / n
        loss, grad = res["loss"], np.array(res["grad"])
        ok = abs(loss - ref_loss) <= atol + rtol * abs(ref_loss) and np.allclose(
            grad, ref_grad, rtol=rtol, atol=atol
        )
        flags["ok"] &= ok
        flags["padding_in_gradient"] |= bool(np.any(np.abs(grad[m == 0]) > atol))
        flags["divides_by_all"] &= bool(np.isclose(loss, err_sq.sum() / m.size))
        flags["sum"] &= bool(np.isclose(loss, err_sq.sum()))
        flags["half"] &= bool(np.isclose(loss, 0.5 * ref_loss))
        rows.append(
            Row(
                f"B×T = {v.shape[0]}×{v.shape[1]}, {int(n)} real steps",
                {"yours": loss, "exact": float(ref_loss)},
            )
        )
    notes = output_notes(measurement)
    if flags["ok"]:
        return Report(
            passed=True,
            verdict="correct",
            check=check,
            rows=rows,
            notes=notes,
            message="Your value loss is the mean squared error over the real steps, "
            "and its gradient reaches `values` only where mask = 1.",
        )
    if flags["padding_in_gradient"]:
        diagnosis, message = (
            "padding",
            "Padded steps (mask = 0) get a gradient: multiply the "
            "squared errors by the mask before summing.",
        )
    elif flags["divides_by_all"] and not flags["ok"]:
        diagnosis, message = (
            "divides_by_all",
            "You divide by all B·T entries, padding "
            "included; divide by the number of real steps, mask.sum().",
        )
    elif flags["sum"]:
        diagnosis, message = (
            "sum",
            "You return the sum of squared errors; take the mean over "
            "the real steps (divide by mask.sum()).",
        )
    elif flags["half"]:
        diagnosis, message = ("half", "Your loss is half the mean squared error; drop the ½.")
    else:
        diagnosis, message = ("mismatch", "Compute L = Σ mask·(values − targets)² / Σ mask.")
    return Report(
        passed=False,
        verdict="wrong",
        check=check,
        rows=rows,
        notes=notes,
        diagnosis=diagnosis,
        message=message,
    )


CHECK = Check("value_loss", measure_value_loss, judge_value_loss)


def check_value_loss(fn: Callable[..., Any], *, timeout: float = 5.0, **options: Any) -> Report:
    """Check a masked mean squared error ``fn(values [B,T], targets [B,T], mask [B,T])``:
    L = Σ mask·(V − G)² / Σ mask, with no gradient from padded steps."""
    return run_check(CHECK, fn, timeout=timeout, **options)
