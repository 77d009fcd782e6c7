"""The shared engine of the actor-critic checks (TD target, GAE, PPO surrogate).

Each of those checks calls the learner's function on fixed random cases, reads one array per
case (and, where asked, the gradient of a scalar result with respect to one input, or whether
the result still carries a gradient into the critic's values), and compares it with an exact
reference and with the results of common mistakes. A check supplies:

* ``cases()``: plain-data cases (lists and floats);
* ``arguments(case)``: the learner's positional arguments as float64 tensors, in order;
* ``reference(case)``: the exact array (and gradient);
* ``candidates(case)``: name → the array (and gradient) a known mistake produces.

A mistake is named when it reproduces the learner's numbers on every case.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pgcheck.checks.base import (
    DTYPE,
    Budget,
    close,
    count_mismatch,
    failed,
    fmt_vec,
    judge_precheck,
    learner_call,
    measure_precheck,
    output_notes,
    read_output,
)
from pgcheck.errors import ErrorKind
from pgcheck.report import Report, Row
from pgcheck.sandbox import single_thread

OPTIONS = ["timeout", "rtol", "atol"]
#: (value, gradient or None) for one case.
Answer = tuple[np.ndarray, np.ndarray | None]


@dataclass(frozen=True)
class CaseSpec:
    """What a casewise check is made of (see the module docstring)."""

    name: str  # registry name, e.g. "gae"
    public: str  # e.g. "check_gae"
    cases: Callable[[], list[dict[str, Any]]]
    arguments: Callable[[dict[str, Any]], dict[str, Any]]
    shape: Callable[[dict[str, Any]], tuple[int, ...]]
    what: str  # e.g. "the advantages Â_t"
    reference: Callable[[dict[str, Any]], Answer]
    candidates: Callable[[dict[str, Any]], dict[str, Answer]]
    diagnoses: dict[str, str]
    formula: str
    describe: Callable[[dict[str, Any]], str]
    grad_of: str | None = None  # gradient of the (scalar) result w.r.t. this argument
    critic: str | None = None  # argument that must not receive gradient from the result
    detach_diagnosis: str = "critic_not_detached"
    detach_message: str = ""


def measure_cases(spec: CaseSpec, fn: Callable[..., Any], options: dict[str, Any]) -> dict:
    """Call ``fn`` on every case; plain numbers only (value, gradient, attached), never raises."""
    unknown = {k: v for k, v in options.items() if k not in OPTIONS}
    early = measure_precheck(spec.public, unknown, OPTIONS)
    if early is not None:
        return early
    budget = Budget(float(options.get("timeout", 5.0)))
    name = "your function"
    records: list[dict[str, Any]] = []
    with single_thread():
        for case in spec.cases():
            args = spec.arguments(case)
            leaves = [k for k in (spec.grad_of, spec.critic) if k is not None]
            for key in leaves:
                args[key] = args[key].detach().clone().requires_grad_(True)
            value, err = learner_call(fn, args, budget, name)
            if err:
                return err
            shape = spec.shape(case)
            arr, msg = read_output(value, shape, name, spec.what)
            if msg is not None:
                return failed(ErrorKind.OUTPUT, f"{msg} (case: {spec.describe(case)})")
            rec: dict[str, Any] = {"value": arr.reshape(-1).tolist(), "grad": None}
            rec["attached"] = False
            is_graph = isinstance(value, torch.Tensor) and value.requires_grad
            if spec.critic is not None and is_graph:
                (g,) = torch.autograd.grad(
                    value.sum(), args[spec.critic], allow_unused=True, retain_graph=True
                )
                rec["attached"] = g is not None and bool(torch.any(g != 0))
            if spec.grad_of is not None:
                grad = np.zeros(tuple(args[spec.grad_of].shape))
                if is_graph and value.numel() == 1:
                    (g,) = torch.autograd.grad(
                        value.reshape(()), args[spec.grad_of], allow_unused=True
                    )
                    if g is not None:
                        grad = g.detach().to(DTYPE).numpy()
                rec["grad"] = grad.reshape(-1).tolist()
            records.append(rec)
    return {"check": spec.name, "records": records, "output": budget.output}


def _same(rec: dict[str, Any], answer: Answer, rtol: float, atol: float) -> bool:
    value, grad = answer
    if not close(np.array(rec["value"]), np.asarray(value).reshape(-1), rtol, atol):
        return False
    if grad is None or rec.get("grad") is None:
        return True
    return close(np.array(rec["grad"]), np.asarray(grad).reshape(-1), rtol, atol)


def judge_cases(spec: CaseSpec, measurement: dict[str, Any], options: dict[str, Any]) -> Report:
    """Compare with the exact reference on every case; name a mistake that fits every case."""
    unknown = {k: v for k, v in options.items() if k not in OPTIONS}
    early = judge_precheck(measurement, spec.name, spec.public, unknown, OPTIONS)
    if early is not None:
        return early
    rtol, atol = float(options.get("rtol", 1e-6)), float(options.get("atol", 1e-9))
    cases = spec.cases()
    records = measurement.get("records")
    if not isinstance(records, list):
        return Report.error(
            "the measurement is malformed", check=spec.name, diagnosis=ErrorKind.USAGE
        )
    early = count_mismatch(records, len(cases), spec.name, spec.public)
    if early is not None:
        return early
    notes = output_notes(measurement)
    rows: list[Row] = []
    first_bad: tuple[dict[str, Any], dict[str, Any], Answer] | None = None
    fits: dict[str, bool] = {}
    for case, rec in zip(cases, records, strict=True):
        ref = spec.reference(case)
        yours = np.array(rec["value"], dtype=np.float64)
        columns: dict[str, Any] = {
            "yours": yours.tolist(),
            "exact": np.asarray(ref[0]).reshape(-1).tolist(),
            "max |diff|": float(np.max(np.abs(yours - np.asarray(ref[0]).reshape(-1)))),
        }
        if ref[1] is not None and rec.get("grad") is not None:
            columns["your gradient"] = list(rec["grad"])
            columns["exact gradient"] = np.asarray(ref[1]).reshape(-1).tolist()
        rows.append(Row(spec.describe(case), columns))
        if first_bad is None and not _same(rec, ref, rtol, atol):
            first_bad = (case, rec, ref)
        for key, answer in spec.candidates(case).items():
            fits[key] = fits.get(key, True) and _same(rec, answer, rtol, atol)
    attached = any(bool(rec.get("attached")) for rec in records)
    if first_bad is None and not attached:
        return Report(
            passed=True,
            verdict="correct",
            check=spec.name,
            rows=rows,
            notes=notes,
            message=f"Your function matches {spec.formula} on {len(cases)} cases.",
        )
    if first_bad is None:
        return Report(
            passed=False,
            verdict="wrong",
            check=spec.name,
            rows=rows,
            notes=notes,
            diagnosis=spec.detach_diagnosis,
            message=spec.detach_message,
        )
    case, rec, ref = first_bad
    value_wrong = not close(np.array(rec["value"]), np.asarray(ref[0]).reshape(-1), rtol, atol)
    if value_wrong:
        first = (
            f"For {spec.describe(case)} you return {fmt_vec(rec['value'])} but the exact "
            f"value is {fmt_vec(ref[0])}."
        )
    else:
        first = (
            f"For {spec.describe(case)} your value is right, but its gradient is "
            f"{fmt_vec(rec['grad'])} where the exact gradient is {fmt_vec(ref[1])}."
        )
    diagnosis = next((k for k, ok in fits.items() if ok), None)
    advice = spec.diagnoses[diagnosis] if diagnosis else f"Compute {spec.formula}."
    return Report(
        passed=False,
        verdict="wrong",
        check=spec.name,
        rows=rows,
        notes=notes,
        diagnosis=diagnosis or "mismatch",
        message=f"{first} {advice}",
    )


def as_tensor(x: Any) -> torch.Tensor:
    """float64 tensor of plain data."""
    return torch.tensor(x, dtype=DTYPE)
