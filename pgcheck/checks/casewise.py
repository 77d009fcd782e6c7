"""The shared engine of the actor-critic checks (TD target, GAE, PPO surrogate).

Each of those checks calls the learner's function on fixed random cases, reads one array per
case (and, where asked, the gradient of a scalar result with respect to one input, or whether
the result still carries a gradient into the critic's values), and compares it with an exact
reference and with the results of common mistakes. A check supplies:

* ``cases(seed)``: plain-data cases (lists and floats): the fixed ones for ``seed=None``,
  fresh ones of the same kinds for an int (the option ``seed``; both measure and judge
  rebuild them from it);
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
from pgcheck.rules import Rule, decide
from pgcheck.sandbox import single_thread

OPTIONS = ["timeout", "rtol", "atol", "seed"]
#: (value, gradient or None) for one case.
Answer = tuple[np.ndarray, np.ndarray | None]


@dataclass(frozen=True)
class CaseSpec:
    """What a casewise check is made of (see the module docstring)."""

    name: str  # registry name, e.g. "gae"
    public: str  # e.g. "check_gae"
    cases: Callable[[int | None], list[dict[str, Any]]]
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
    early = measure_precheck(spec.public, unknown, OPTIONS, seed=options.get("seed"))
    if early is not None:
        return early
    budget = Budget(float(options.get("timeout", 5.0)))
    name = "your function"
    records: list[dict[str, Any]] = []
    with single_thread():
        for case in spec.cases(options.get("seed")):
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


@dataclass
class CaseEvidence:
    """What the rules of a case-wise check decide on."""

    spec: CaseSpec
    rows: list[Row]
    notes: list[str]
    n_cases: int
    first_bad: tuple[dict[str, Any], dict[str, Any], Answer] | None  # (case, yours, exact)
    fits: dict[str, bool]  # mistake code -> it reproduces the learner's numbers on every case
    attached: bool  # the output still carries a gradient into the critic
    rtol: float
    atol: float

    def report(self, passed: bool, message: str, diagnosis: str | None = None) -> Report:
        return Report(
            passed=passed,
            verdict="correct" if passed else "wrong",
            check=self.spec.name,
            rows=self.rows,
            notes=self.notes,
            diagnosis=diagnosis,
            message=message,
        )

    def first_difference(self) -> str:
        """Where the learner's numbers first differ from the exact ones, in one sentence."""
        assert self.first_bad is not None
        case, rec, ref = self.first_bad
        where = self.spec.describe(case)
        if not close(np.array(rec["value"]), np.asarray(ref[0]).reshape(-1), self.rtol, self.atol):
            return (
                f"For {where} you return {fmt_vec(rec['value'])} but the exact "
                f"value is {fmt_vec(ref[0])}."
            )
        return (
            f"For {where} your value is right, but its gradient is "
            f"{fmt_vec(rec['grad'])} where the exact gradient is {fmt_vec(ref[1])}."
        )


def correct(ev: CaseEvidence) -> Report | None:
    """The exact value (and gradient) on every case, with nothing left attached."""
    if ev.first_bad is not None or ev.attached:
        return None
    return ev.report(True, f"Your function matches {ev.spec.formula} on {ev.n_cases} cases.")


def not_detached(ev: CaseEvidence) -> Report | None:
    """The right numbers, but the result still carries a gradient into the critic."""
    if ev.first_bad is not None:
        return None
    return ev.report(False, ev.spec.detach_message, ev.spec.detach_diagnosis)


def known_mistake(ev: CaseEvidence) -> Report | None:
    """A named mistake that reproduces the learner's numbers on every case."""
    code = next((k for k, ok in ev.fits.items() if ok), None)
    if code is None:
        return None
    return ev.report(False, f"{ev.first_difference()} {ev.spec.diagnoses[code]}", code)


def unrecognised(ev: CaseEvidence) -> Report:
    """Wrong, and no known mistake fits: say where and what to compute."""
    return ev.report(False, f"{ev.first_difference()} Compute {ev.spec.formula}.", "mismatch")


#: The rules in the order they are tried.
RULES: tuple[Rule[CaseEvidence], ...] = (correct, not_detached, known_mistake, unrecognised)


def judge_cases(spec: CaseSpec, measurement: dict[str, Any], options: dict[str, Any]) -> Report:
    """Compare with the exact reference on every case; name a mistake that fits every case."""
    unknown = {k: v for k, v in options.items() if k not in OPTIONS}
    early = judge_precheck(
        measurement, spec.name, spec.public, unknown, OPTIONS, seed=options.get("seed")
    )
    if early is not None:
        return early
    rtol, atol = float(options.get("rtol", 1e-6)), float(options.get("atol", 1e-9))
    cases = spec.cases(options.get("seed"))
    records = measurement.get("records")
    if not isinstance(records, list):
        return Report.error(
            "the measurement is malformed", check=spec.name, diagnosis=ErrorKind.USAGE
        )
    early = count_mismatch(records, len(cases), spec.name, spec.public)
    if early is not None:
        return early
    return decide(RULES, gather_evidence(spec, cases, records, measurement, rtol, atol))


def gather_evidence(
    spec: CaseSpec,
    cases: list[dict[str, Any]],
    records: list[dict[str, Any]],
    measurement: dict[str, Any],
    rtol: float,
    atol: float,
) -> CaseEvidence:
    """The table rows, the first case that differs, and which known mistakes fit every case."""
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
    return CaseEvidence(
        spec=spec,
        rows=rows,
        notes=output_notes(measurement),
        n_cases=len(cases),
        first_bad=first_bad,
        fits=fits,
        attached=any(bool(rec.get("attached")) for rec in records),
        rtol=rtol,
        atol=atol,
    )


def as_tensor(x: Any) -> torch.Tensor:
    """float64 tensor of plain data."""
    return torch.tensor(x, dtype=DTYPE)
