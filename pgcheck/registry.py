"""The registry of checks, split into a learner side and a reference side.

Every check ``check_X(fn, **options)`` is the composition
``judge(measure(fn, **options), **options)``:

* ``measure(fn, **options) -> dict`` calls the learner's code and returns only plain
  JSON-able numbers (lists of floats, ints, strings, bools);
* ``judge(measurement, **options) -> Report`` computes the references and the verdict
  without calling any learner code.

An isolated grader runs ``measure`` in a separate process next to the learner's code and
``judge`` in the trusted parent process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pgcheck.report import Report

Measure = Callable[..., dict[str, Any]]
Judge = Callable[..., Report]


@dataclass(frozen=True)
class Check:
    """A registered check: its learner-side ``measure`` and reference-side ``judge``."""

    name: str
    measure: Measure
    judge: Judge

    def __call__(self, fn: Callable[..., Any], **options: Any) -> Report:
        return run_check(self, fn, **options)


REGISTRY: dict[str, Check] = {}


def register(name: str, measure: Measure, judge: Judge) -> Check:
    """Register a check under ``name`` and return it."""
    check = Check(name, measure, judge)
    REGISTRY[name] = check
    return check


def run_check(check: Check, fn: Callable[..., Any], **options: Any) -> Report:
    """Measure then judge; an unexpected failure becomes an ``"error"`` report, not a traceback."""
    from pgcheck.sandbox import guarded_state, quiet, single_thread

    with quiet(), guarded_state(), single_thread():
        try:
            measurement = check.measure(fn, **options)
            return check.judge(measurement, **options)
        except Exception as exc:  # noqa: BLE001 - the learner must never see a traceback from pgcheck
            return Report.error(
                f"pgcheck could not run the check '{check.name}': {type(exc).__name__}: {exc}",
                check=check.name,
            )
