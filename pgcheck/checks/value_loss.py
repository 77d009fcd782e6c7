"""Check a learner's value-function loss: a masked mean squared error over a padded batch.

``check_value_loss(fn)`` (registered as ``"value_loss"``) calls ``fn(values [B,T], targets
[B,T], mask [B,T])`` and expects L = Σ mask·(V − G)² / Σ mask, with no gradient from padded
steps: ∂L/∂V_it = 2 mask_it (V_it − G_it) / Σ mask.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np

from pgcheck.checks.base import (
    DEFAULT_TIMEOUT,
    Budget,
    Check,
    Measurement,
    Rule,
    count_mismatch,
    decide,
    failed,
    instance_seed,
    judge_precheck,
    learner_call,
    measure_precheck,
    output_notes,
    run_check,
)
from pgcheck.diagnosis.mistakes import Mistake
from pgcheck.errors import ErrorKind
from pgcheck.report import Report, Row

NAME = "value_loss"
OPTIONS = ["timeout", "rtol", "atol", "seed"]

#: Each diagnosis of the value loss once: its code, the loss it computes, and its message.
MISTAKES: tuple[Mistake, ...] = (
    Mistake(
        "padding",
        "∂L/∂V_it ≠ 0 where mask_it = 0",
        "Padded steps (mask = 0) get a gradient: multiply the squared errors by the mask "
        "before summing.",
    ),
    Mistake(
        "divides_by_all",
        "L = Σ mask·(V − G)² / (B·T)",
        "You divide by all B·T entries, padding included; divide by the number of real steps, "
        "mask.sum().",
    ),
    Mistake(
        "sum",
        "L = Σ mask·(V − G)²",
        "You return the sum of squared errors; take the mean over the real steps (divide by "
        "mask.sum()).",
    ),
    Mistake(
        "half",
        "L = ½ Σ mask·(V − G)² / Σ mask",
        "Your loss is half the mean squared error; drop the ½.",
    ),
    Mistake(
        "mismatch",
        "none of the above",
        "Compute L = Σ mask·(values − targets)² / Σ mask.",
    ),
)
MESSAGES: dict[str, str] = {m.code: m.message for m in MISTAKES}
CORRECT = (
    "Your value loss is the mean squared error over the real steps, and its gradient reaches "
    "`values` only where mask = 1."
)


class ValueLossResult(TypedDict):
    """One padded batch: the learner's loss L and ∂L/∂values ([B][T])."""

    loss: float
    grad: list[list[float]]


class ValueLossMeasurement(Measurement, total=False):
    """What :func:`measure_value_loss` returns: one result per case of :func:`value_cases`."""

    check: str
    results: list[ValueLossResult]


def value_cases(seed: int | None = None) -> list[dict[str, list[list[float]]]]:
    """Padded batches (values, targets, mask) with episodes of different lengths (``seed``:
    fresh batches of the same sizes, see :func:`instance_seed`)."""
    rng = np.random.default_rng(instance_seed(2_024, seed))
    cases = []
    for B, T in ((1, 1), (2, 3), (3, 5), (4, 6)):
        top = T + 1 if seed is None else T  # fresh batches always have padding
        lengths = [T] + [int(rng.integers(1, top)) for _ in range(B - 1)]
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
    seed: int | None = None,
    **unknown: Any,
) -> ValueLossMeasurement:
    """Call ``fn(values, targets, mask)`` on fixed padded batches; record L and ∂L/∂values."""
    import torch

    early = measure_precheck("check_value_loss", unknown, OPTIONS, seed=seed)
    if early is not None:
        return early
    budget = Budget(timeout)
    name = "your value loss"
    out: list[ValueLossResult] = []
    for case in value_cases(seed):
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


@dataclass
class Evidence:
    """What the rules of :func:`judge_value_loss` decide on, over every case.

    ``ok``: L and ∂L/∂V match the reference on every case; ``padding_in_gradient``: some
    ∂L/∂V_it ≠ 0 where mask_it = 0; ``divides_by_all`` / ``summed`` / ``halved``: L equals
    Σ mask (V − G)² / (B·T), Σ mask (V − G)², ½ L_ref on every case.
    """

    rows: list[Row]
    notes: list[str]
    ok: bool = True
    padding_in_gradient: bool = False
    divides_by_all: bool = True
    summed: bool = True
    halved: bool = True

    def wrong(self, code: str) -> Report:
        """The failed report naming ``code`` with its message."""
        return Report(
            passed=False,
            verdict="wrong",
            check=NAME,
            rows=self.rows,
            notes=self.notes,
            diagnosis=code,
            message=MESSAGES[code],
        )


def gather_evidence(
    measurement: ValueLossMeasurement, cases: list[dict[str, Any]], rtol: float, atol: float
) -> Evidence:
    """Compare each case with L = Σ mask (V − G)² / Σ mask and ∂L/∂V = 2 mask (V − G) / Σ mask."""
    rows: list[Row] = []
    ev = Evidence(rows=rows, notes=[])
    for case, res in zip(cases, measurement.get("results", []), strict=True):
        v, g, m = (np.array(case[k]) for k in ("values", "targets", "mask"))
        n = m.sum()
        err_sq = (v - g) ** 2 * m
        ref_loss, ref_grad = err_sq.sum() / n, 2 * (v - g) * m / n
        loss, grad = res["loss"], np.array(res["grad"])
        ok = abs(loss - ref_loss) <= atol + rtol * abs(ref_loss) and np.allclose(
            grad, ref_grad, rtol=rtol, atol=atol
        )
        ev.ok &= ok
        ev.padding_in_gradient |= bool(np.any(np.abs(grad[m == 0]) > atol))
        ev.divides_by_all &= bool(np.isclose(loss, err_sq.sum() / m.size))
        ev.summed &= bool(np.isclose(loss, err_sq.sum()))
        ev.halved &= bool(np.isclose(loss, 0.5 * ref_loss))
        rows.append(
            Row(
                f"B×T = {v.shape[0]}×{v.shape[1]}, {int(n)} real steps",
                {"yours": loss, "exact": float(ref_loss)},
            )
        )
    ev.notes = output_notes(measurement)
    return ev


def correct(ev: Evidence) -> Report | None:
    """L and ∂L/∂V match the masked mean squared error on every case."""
    if not ev.ok:
        return None
    return Report(
        passed=True, verdict="correct", check=NAME, rows=ev.rows, notes=ev.notes, message=CORRECT
    )


def padding_gets_gradient(ev: Evidence) -> Report | None:
    """Some padded step (mask = 0) gets a gradient."""
    return ev.wrong("padding") if ev.padding_in_gradient else None


def divides_by_all(ev: Evidence) -> Report | None:
    """L = Σ mask (V − G)² / (B·T): the padding is counted in the mean."""
    return ev.wrong("divides_by_all") if ev.divides_by_all and not ev.ok else None


def sum_not_mean(ev: Evidence) -> Report | None:
    """L = Σ mask (V − G)²: the sum, not the mean."""
    return ev.wrong("sum") if ev.summed else None


def half_mse(ev: Evidence) -> Report | None:
    """L = ½ Σ mask (V − G)² / Σ mask."""
    return ev.wrong("half") if ev.halved else None


def unrecognised(ev: Evidence) -> Report:
    """Wrong in a way none of the rules above recognises."""
    return ev.wrong("mismatch")


#: The rules in the order they are tried; the last always answers.
RULES: tuple[Rule[Evidence], ...] = (
    correct,
    padding_gets_gradient,
    divides_by_all,
    sum_not_mean,
    half_mse,
    unrecognised,
)


def judge_value_loss(
    measurement: ValueLossMeasurement,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    seed: int | None = None,
    **unknown: Any,
) -> Report:
    """Compare with L = Σ mask (V − G)² / Σ mask and its gradient; name common mistakes.

    Prechecks (options, a recorded error, the number of cases), then the :class:`Evidence`,
    then the first of :data:`RULES` that answers.
    """
    early = judge_precheck(measurement, NAME, "check_value_loss", unknown, OPTIONS, seed=seed)
    if early is not None:
        return early
    cases = value_cases(seed)
    early = count_mismatch(measurement.get("results", []), len(cases), NAME, "check_value_loss")
    if early is not None:
        return early
    return decide(RULES, gather_evidence(measurement, cases, rtol, atol))


CHECK = Check(NAME, measure_value_loss, judge_value_loss, fresh_instances=True)


def check_value_loss(fn: Callable[..., Any], *, timeout: float = 5.0, **options: Any) -> Report:
    """Check a masked mean squared error ``fn(values [B,T], targets [B,T], mask [B,T])``:
    L = Σ mask·(V − G)² / Σ mask, with no gradient from padded steps."""
    return run_check(CHECK, fn, timeout=timeout, **options)
