"""Shared machinery of the checks whose answer is a table computed from an MDP's tables.

The checks of the policy gradient theorem (:mod:`.q_values`, :mod:`.visitation`,
:mod:`.theorem_gradient`) call a learner's function on fixed exact cases (episodic tabular
MDPs from :mod:`pgcheck.problems.episodic`) and compare each result with the exact reference
(|yours − ref| ≤ atol + rtol·|ref|) and with the results of named wrong answers, computed on the
same case. A :class:`TableCase` holds one case; :func:`measure_tables` is the learner side,
:func:`judge_tables` the reference side, whose verdict is the first of an ordered tuple of small
named rules (:data:`RULES`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

import numpy as np
import torch

from pgcheck.checks.base import (
    Budget,
    Measurement,
    Rule,
    close,
    count_mismatch,
    decide,
    failed,
    fit_scale,
    fmt_vec,
    judge_precheck,
    learner_call,
    measure_precheck,
    output_notes,
    scale_hint,
    to_array,
)
from pgcheck.errors import ErrorKind
from pgcheck.report import Report, Row
from pgcheck.sandbox import single_thread

#: The options every table check accepts.
OPTIONS = ["timeout", "rtol", "atol"]


@dataclass(frozen=True)
class TableCase:
    """One exact case: the learner's inputs (in call order), the exact answer, and the answer
    of each named wrong computation on the same inputs (key ``code`` or ``code#variant``)."""

    label: str
    inputs: Mapping[str, Any]
    reference: np.ndarray
    candidates: Mapping[str, np.ndarray]


class TableValue(TypedDict):
    """The learner's result on one case, flattened, with its shape."""

    values: list[float]
    shape: list[int]


class TableMeasurement(Measurement, total=False):
    """What :func:`measure_tables` returns: one result per case."""

    check: str
    values: list[TableValue]


def _fresh(value: Any) -> Any:
    """A copy of an input, so a learner's in-place edit cannot reach the next call."""
    return value.detach().clone() if isinstance(value, torch.Tensor) else value


def measure_tables(
    fn: Callable[..., Any],
    cases: Sequence[TableCase],
    *,
    check: str,
    public: str,
    timeout: float,
    unknown: dict[str, Any],
) -> TableMeasurement:
    """Call ``fn(*case.inputs.values())`` on every case; plain numbers only, never raises.

    Any shape is recorded (the judge says what a wrong shape is); NaN or inf is a failure.
    """
    early = measure_precheck(public, unknown, OPTIONS)
    if early is not None:
        return early
    budget = Budget(timeout)
    name = "your function"
    values: list[TableValue] = []
    with single_thread():
        for case in cases:
            args = {k: _fresh(v) for k, v in case.inputs.items()}
            value, err = learner_call(fn, args, budget, name)
            if err:
                return err
            try:
                arr = to_array(value)
            except (TypeError, ValueError, RuntimeError) as exc:
                return failed(
                    ErrorKind.OUTPUT,
                    f"{name} returned {exc} on {case.label}; return a float64 torch tensor of "
                    f"shape {list(case.reference.shape)}.",
                )
            if not np.all(np.isfinite(arr)):
                return failed(
                    ErrorKind.OUTPUT,
                    f"{name} returned NaN or inf on {case.label}. Look for a singular solve, "
                    "log of 0 or division by 0.",
                )
            values.append({"values": arr.reshape(-1).tolist(), "shape": list(arr.shape)})
    return {"check": check, "values": values, "output": budget.output}


@dataclass
class TableEvidence:
    """What the rules decide on.

    ``yours[i]``: the learner's result on case i; ``first_bad``: the first case that differs
    from the reference; ``matches``: the codes of the wrong answers the learner's results equal
    on every case (in the order of the cases' candidates).
    """

    check: str
    what: str
    formula: str
    messages: Mapping[str, str]
    cases: Sequence[TableCase]
    yours: list[np.ndarray]
    rtol: float
    atol: float
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    first_bad: int | None = None
    matches: list[str] = field(default_factory=list)

    def first(self) -> str:
        """The first case that differs, in words."""
        assert self.first_bad is not None
        case, yours = self.cases[self.first_bad], self.yours[self.first_bad]
        shape = "" if yours.shape == case.reference.shape else f" (shape {list(yours.shape)})"
        return (
            f"On {case.label}, you return {fmt_vec(yours, 5)}{shape} but the exact "
            f"{self.what} is {fmt_vec(case.reference, 5)}."
        )

    def wrong(self, code: str, advice: str) -> Report:
        """The failed report: the first differing case, then ``advice``."""
        return Report(
            passed=False,
            verdict="wrong",
            check=self.check,
            rows=self.rows,
            notes=self.notes,
            diagnosis=code,
            message=f"{self.first()} {advice}",
        )

    def same_shapes(self) -> bool:
        """Whether every result has the reference's shape."""
        return all(
            y.shape == c.reference.shape for y, c in zip(self.yours, self.cases, strict=True)
        )


def gather_evidence(
    measurement: TableMeasurement,
    cases: Sequence[TableCase],
    *,
    check: str,
    what: str,
    formula: str,
    messages: Mapping[str, str],
    rtol: float,
    atol: float,
) -> TableEvidence:
    """Compare every case with its reference and with each of its named wrong answers."""
    yours = [
        np.array(rec["values"], dtype=np.float64).reshape(rec["shape"])
        for rec in measurement["values"]
    ]
    ev = TableEvidence(check, what, formula, messages, cases, yours, rtol, atol)
    ev.notes = output_notes(measurement)
    keys = list(cases[0].candidates) if cases else []
    ok = dict.fromkeys(keys, True)
    differs = dict.fromkeys(keys, False)
    for i, (case, y) in enumerate(zip(cases, yours, strict=True)):
        ref = case.reference
        same = y.shape == ref.shape
        ev.rows.append(
            Row(
                case.label,
                {
                    "yours": y.reshape(-1).tolist(),
                    "exact": ref.reshape(-1).tolist(),
                    "max |diff|": float(np.max(np.abs(y - ref))) if same else "shape differs",
                },
            )
        )
        if ev.first_bad is None and not close(y, ref, rtol, atol):
            ev.first_bad = i
        for key in keys:
            cand = case.candidates[key]
            ok[key] = ok[key] and close(y, cand, rtol, atol)
            differs[key] = differs[key] or not close(cand, ref, rtol, atol)
    ev.matches = [k.split("#")[0] for k in keys if ok[k] and differs[k]]
    return ev


def correct(ev: TableEvidence) -> Report | None:
    """Every case matches the exact reference."""
    if ev.first_bad is not None:
        return None
    return Report(
        passed=True,
        verdict="correct",
        check=ev.check,
        rows=ev.rows,
        notes=ev.notes,
        message=ev.messages["correct"].format(n=len(ev.cases)),
    )


def known_mistake(ev: TableEvidence) -> Report | None:
    """The results equal one named wrong answer on every case."""
    if not ev.matches:
        return None
    code = ev.matches[0]
    return ev.wrong(code, ev.messages[code])


def all_zero(ev: TableEvidence) -> Report | None:
    """Every result is zero (while the references are not)."""
    if not all(np.all(np.abs(y) <= ev.atol) for y in ev.yours):
        return None
    return ev.wrong("zero", ev.messages.get("zero", "You return zeros everywhere."))


def sign_flipped(ev: TableEvidence) -> Report | None:
    """Every result is the negative of the reference."""
    if not ev.same_shapes() or not all(
        close(y, -c.reference, ev.rtol, ev.atol) for y, c in zip(ev.yours, ev.cases, strict=True)
    ):
        return None
    return ev.wrong("sign_flipped", scale_hint(-1.0))


def scaled(ev: TableEvidence) -> Report | None:
    """The results are one constant multiple α ≠ 1 of the references (least squares, all cases)."""
    if not ev.same_shapes():
        return None
    y = np.concatenate([v.reshape(-1) for v in ev.yours])
    ref = np.concatenate([c.reference.reshape(-1) for c in ev.cases])
    alpha, resid = fit_scale(y, ref)
    if resid > 1e-6 or alpha == 0.0:
        return None
    return ev.wrong("scaled", scale_hint(alpha))


def wrong_shape(ev: TableEvidence) -> Report | None:
    """A result has another shape than the reference."""
    if ev.same_shapes():
        return None
    case = ev.cases[0]
    return ev.wrong(
        "wrong_shape",
        f"Return the {ev.what} as a tensor of shape {list(case.reference.shape)} on that case "
        f"({ev.formula}).",
    )


def unrecognised(ev: TableEvidence) -> Report:
    """Wrong in a way none of the rules above recognises."""
    return ev.wrong("mismatch", ev.messages["mismatch"])


#: The rules in the order they are tried; the last always answers.
RULES: tuple[Rule[TableEvidence], ...] = (
    correct,
    known_mistake,
    all_zero,
    sign_flipped,
    scaled,
    wrong_shape,
    unrecognised,
)


def judge_tables(
    measurement: TableMeasurement,
    cases: Sequence[TableCase],
    *,
    check: str,
    public: str,
    what: str,
    formula: str,
    messages: Mapping[str, str],
    rtol: float,
    atol: float,
    unknown: dict[str, Any],
    rules: Sequence[Rule[TableEvidence]] = RULES,
) -> Report:
    """Prechecks (options, a recorded error, the number of cases), then the
    :class:`TableEvidence`, then the first of ``rules`` (default :data:`RULES`) that answers."""
    early = judge_precheck(measurement, check, public, unknown, OPTIONS)
    if early is not None:
        return early
    early = count_mismatch(measurement["values"], len(cases), check, public)
    if early is not None:
        return early
    evidence = gather_evidence(
        measurement,
        cases,
        check=check,
        what=what,
        formula=formula,
        messages=messages,
        rtol=rtol,
        atol=atol,
    )
    return decide(rules, evidence)


def as_array(t: torch.Tensor) -> np.ndarray:
    """A detached float64 numpy copy of a tensor."""
    return t.detach().to(torch.float64).numpy().copy()
