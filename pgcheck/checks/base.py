"""What every check is made of: the measure/judge split, and the shared machinery.

Every check ``check_X(fn, **options)`` is the composition
``judge(measure(fn, **options), **options)``:

* ``measure(fn, **options) -> Measurement`` is the learner side: it calls the learner's code
  (only through :func:`pgcheck.sandbox.call_learner`) and returns plain JSON-able numbers;
  a failure is recorded under ``"error"`` as a :class:`~pgcheck.errors.MeasuredError`;
* ``judge(measurement, **options) -> Report`` is the reference side: it computes the
  references and the verdict without calling any learner code.

An isolated grader runs ``measure`` next to the learner's code and ``judge`` in the trusted
parent process. :func:`run_check` does the same on the learner's own machine: it validates
the options shared by every check (:func:`validate_timeout`), refuses an answer that uses
pgcheck or pgcourse, which grading lacks (:mod:`pgcheck.checks.self_contained`), runs
``measure`` in a forked child (:func:`pgcheck.sandbox.run_in_child`) and ``judge`` in the
calling process. Below: the time budget, calling the learner, reading its output into plain
numbers, and the bits of a report every check has.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np
import torch

from pgcheck.checks.self_contained import borrowed_message, borrowed_names
from pgcheck.errors import ErrorKind, MeasuredError, measured
from pgcheck.report import Report
from pgcheck.rules import Rule, decide, first_answer  # noqa: F401 - re-exported for the checks
from pgcheck.sandbox import call_learner, guarded_state, quiet, run_in_child, single_thread


class Measurement(TypedDict, total=False):
    """What ``measure`` returns: plain data. Every check records a learner failure under
    ``error``, what the learner printed under ``output``; the rest is check-specific."""

    error: MeasuredError
    output: str


Measure = Callable[..., Mapping[str, Any]]
Judge = Callable[..., Report]


@dataclass(frozen=True)
class Check:
    """A check: its learner-side ``measure`` and its reference-side ``judge``.

    ``prepare(fn, **options)``, if given, runs in the calling process before ``measure`` is
    forked off (it must not call ``fn``): it warms caches that the child would otherwise
    recompute on every check (e.g. the policies' Jacobians).
    """

    name: str
    measure: Measure
    judge: Judge
    prepare: Callable[..., None] | None = None
    #: ``measure`` and ``judge`` accept ``seed=None`` (the fixed, public instances) or an int
    #: (fresh instances of the same kinds, rebuilt from it by both): see :func:`instance_seed`.
    fresh_instances: bool = False

    def __call__(self, fn: Callable[..., Any], **options: Any) -> Report:
        return run_check(self, fn, **options)


def validate_timeout(public: str, value: Any) -> str | None:
    """A message when ``timeout`` is not a finite number of seconds > 0 (else None)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"pgcheck.{public}: timeout={value!r}; give a number of seconds, e.g. timeout=5."
    if not math.isfinite(value) or value <= 0:
        return f"pgcheck.{public}: timeout={value!r}; it must be a finite number of seconds > 0."
    return None


def run_check(check: Check, fn: Callable[..., Any], **options: Any) -> Report:
    """Measure (in a forked child) then judge; every failure is an ``"error"`` report.

    The learner's time budget is ``options["timeout"]`` CPU seconds of its own calls
    (:data:`DEFAULT_TIMEOUT` if absent); the child is also stopped at the wall limit
    :func:`pgcheck.sandbox.wall_limit` of that budget.
    """
    with quiet(), guarded_state(), single_thread():
        try:
            timeout = options.get("timeout", DEFAULT_TIMEOUT)
            bad = validate_timeout(f"check_{check.name}", timeout)
            if bad is not None:
                return Report.error(bad, check=check.name, diagnosis=ErrorKind.USAGE)
            borrowed = borrowed_names(fn)
            if borrowed:
                return Report.error(
                    borrowed_message(f"check_{check.name}", borrowed),
                    check=check.name,
                    diagnosis=ErrorKind.NOT_SELF_CONTAINED,
                )
            if check.prepare is not None:
                check.prepare(fn, **options)
            measurement = run_in_child(
                lambda: dict(check.measure(fn, **options)), cpu_seconds=float(timeout)
            )
            return check.judge(measurement, **options)
        except Exception as exc:  # noqa: BLE001 - the learner must never see a traceback from pgcheck
            return Report.error(
                f"pgcheck could not run the check '{check.name}': {type(exc).__name__}: {exc}",
                check=check.name,
                diagnosis=ErrorKind.INTERNAL,
            )


DTYPE = torch.float64
#: Seconds for all calls of the learner's function in one check, together.
DEFAULT_TIMEOUT = 5.0
#: Step of the central finite differences (as in torch.autograd.gradcheck).
FD_EPS = 1e-6


class Budget:
    """A CPU-time budget shared by all calls of the learner's function in one check.

    Only the CPU seconds of the learner's own calls count (``used``), so the same code gets
    the same verdict on a quiet and on a loaded machine; :func:`learner_call` adds each
    call's CPU time.
    """

    def __init__(self, seconds: float) -> None:
        self.total = float(seconds)
        self.used = 0.0
        self.output = ""

    def remaining(self) -> float:
        """CPU seconds left (may be ≤ 0)."""
        return self.total - self.used


def timeout_message(name: str, total: float) -> str:
    """The message for a learner's function that used up the time budget."""
    return (
        f"{name} did not finish within the time limit ({total:.1f} s of CPU time for all calls "
        "together). Look for a loop that never ends (a `while` whose condition never "
        "changes) or for work that grows with the input."
    )


def failed(kind: ErrorKind | str, message: str) -> Any:
    """A measurement that records a failure (the one error shape every check uses).

    Typed ``Any`` so that every check's typed measure (its own TypedDict) can return it.
    """
    return {"error": measured(kind, message)}


def instance_seed(default: int, seed: int | None) -> int:
    """The seed of one instance builder: ``default`` when ``seed`` is None, else a fresh one.

    ``seed=None`` keeps a check's fixed, public instances (the learner's instant feedback).
    An int gives s = ⌊SeedSequence([default, seed]).generate_state(1, uint64)[0] / 2⌋, a
    63-bit seed that differs for every builder (``default``) and every ``seed``: the grader
    draws ``seed`` itself, so nobody can precompute the instances. Both ``measure`` and
    ``judge`` rebuild the same instances from it (the measurement never holds the seed).
    """
    if seed is None:
        return default
    state = np.random.SeedSequence([int(default), int(seed)]).generate_state(1, np.uint64)
    return int(state[0]) >> 1


def seed_problem(public: str, seed: Any) -> str | None:
    """A message when ``seed`` is neither None nor an integer ≥ 0 (else None)."""
    if seed is None or (
        isinstance(seed, int | np.integer) and not isinstance(seed, bool) and seed >= 0
    ):
        return None
    return (
        f"pgcheck.{public}: seed={seed!r}; give None (the fixed test inputs) or an integer "
        "≥ 0 (fresh inputs drawn from it)."
    )


def learner_call(
    fn: Callable[..., Any], args: dict[str, Any], budget: Budget, name: str
) -> tuple[Any, Any]:
    """Call ``fn(*args.values())`` positionally through :func:`call_learner`.

    Returns ``(value, None)`` or ``(None, failed(kind, message))``.
    The learner's parameter names do not matter; the argument order does.
    """
    remaining = budget.remaining()
    if remaining <= 0:
        return None, failed(ErrorKind.TIMEOUT, timeout_message(name, budget.total))
    keys = list(args)

    def positional(**kwargs: Any) -> Any:
        return fn(*(kwargs[k] for k in keys))

    result = call_learner(positional, args, seconds=remaining, name=name)
    budget.used += result.cpu_seconds
    if result.output and len(budget.output) < 1000:
        budget.output += result.output[: 1000 - len(budget.output)]
    if result.error is not None:
        message = result.error.message
        if result.error.kind == ErrorKind.TIMEOUT:
            message = timeout_message(name, budget.total)
        elif result.error.kind == ErrorKind.GLOBAL_STATE:
            message = message.replace(
                "A pseudo-loss must be a deterministic function of the batch it is given.",
                "It must be a deterministic function "
                "of its inputs: don't seed or draw random numbers in it.",
            )
        elif "requires grad" in message and "numpy" in message:
            message += (
                " pgcheck passes inputs that require grad because this quantity must "
                "be differentiable: compute it with torch operations, not numpy."
            )
        return None, failed(result.error.kind, message)
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
        return np.array(parts, dtype=np.float64).reshape(
            (len(parts),) + (parts[0].shape if parts else (0,))
        )
    if value is None:
        raise TypeError("None (did you forget `return`?)")
    raise TypeError(f"a {type(value).__name__}")


def read_output(
    value: Any, shape: tuple[int, ...], name: str, what: str, allow_nonfinite: bool = False
) -> tuple[Any, str | None]:
    """Convert and shape-check a learner's output; ``(array, None)`` or ``(None, message)``.

    A single number is accepted where a 0-d or one-element result is expected. The array is
    typed ``Any`` because it is None exactly when the message is not (mypy cannot see that).
    """
    try:
        arr = to_array(value)
    except (TypeError, ValueError, RuntimeError) as exc:
        return None, (
            f"{name} returned {exc}; return {what} as a float64 torch tensor of "
            f"shape {list(shape)}."
        )
    size = int(np.prod(shape)) if shape else 1
    if arr.shape != shape:
        if arr.size == size and (len(shape) == 0 or shape == (1,)):
            arr = arr.reshape(shape)
        else:
            hint = ""
            if arr.size == size:
                hint = (
                    " The numbers are there but the shape differs; a [N,1] result broadcasts "
                    "to [N,N] in later arithmetic, so flatten it (e.g. .squeeze(-1))."
                )
            return None, (
                f"{name} returned shape {list(arr.shape)}; expected {what} of shape "
                f"{list(shape)}.{hint}"
            )
    if not allow_nonfinite and not np.all(np.isfinite(arr)):
        bad = np.flatnonzero(~np.isfinite(arr.reshape(-1)))[:5].tolist()
        return None, (
            f"{name} returned NaN or inf (at flat positions {bad}). Look for log of 0, "
            "division by 0 or exp of a large number."
        )
    return arr, None


def finite_or_none(arr: np.ndarray) -> list[Any]:
    """A flat list for a measurement, which is strict JSON (no NaN, no Infinity): floats, and
    the strings "nan", "inf" and "-inf" for the others, so that a log π of −inf is shown as −inf
    and not as None (``np.array(..., dtype=float64)`` and ``float()`` read the strings back)."""
    out: list[Any] = []
    for v in arr.reshape(-1).tolist():
        if math.isnan(v):
            out.append("nan")
        elif math.isinf(v):
            out.append("inf" if v > 0 else "-inf")
        else:
            out.append(float(v))
    return out


def _clean_value(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # "nan" / "inf": readable, JSON-able, and equal to itself
    if isinstance(v, list | tuple):
        return [_clean_value(u) for u in v]
    return v


def finite_rows(judge: Callable[..., Report]) -> Callable[..., Report]:
    """Decorate a judge so that NaN/inf in its report's table become the strings "nan"/"inf"."""

    @functools.wraps(judge)
    def wrapped(measurement: Any, **options: Any) -> Report:
        report = judge(measurement, **options)
        for row in report.rows:
            row.columns = {k: _clean_value(v) for k, v in row.columns.items()}
        return report

    return wrapped


def usage_error(check: str, message: str) -> Any:
    """A measurement that records a wrong option (the caller's mistake, not the learner's)."""
    return failed(ErrorKind.USAGE, f"pgcheck.{check}: {message}")


def measure_precheck(
    public: str,
    unknown: dict[str, Any],
    valid: list[str],
    kind: tuple[str, str, tuple[str, ...]] | None = None,
    seed: Any = None,
) -> Any:
    """The start of every measure: a measurement recording an unknown option, a bad ``seed``
    (:func:`seed_problem`), or a ``kind = (option name, value, allowed values)`` outside the
    allowed ones; else None."""
    bad = unknown_options(public, unknown, valid) or seed_problem(public, seed)
    if bad:
        return failed(ErrorKind.USAGE, bad)
    if kind is not None and kind[1] not in kind[2]:
        key, value, allowed = kind
        return usage_error(public, f"{key}={value!r}; use one of {allowed}.")
    return None


def error_report(measurement: Mapping[str, Any], check: str) -> Report | None:
    """The error report for a measurement that recorded an error, else None."""
    err = measurement.get("error")
    if err is None:
        return None
    if not isinstance(err, dict) or not isinstance(err.get("message"), str):
        return Report.error("the measurement is malformed", check=check, diagnosis=ErrorKind.USAGE)
    return Report.error(err["message"], check=check, diagnosis=str(err.get("kind") or "error"))


def judge_precheck(
    measurement: Mapping[str, Any],
    check: str,
    public: str,
    unknown: dict[str, Any],
    valid: list[str],
    kind: tuple[str, str, tuple[str, ...]] | None = None,
    seed: Any = None,
) -> Report | None:
    """The start of every judge: an unknown option or a bad ``seed``, an error that
    ``measure`` recorded, or a ``kind = (option name, value, allowed values)`` that the
    measurement was not made for."""
    bad = unknown_options(public, unknown, valid) or seed_problem(public, seed)
    if bad:
        return Report.error(bad, check=check, diagnosis=ErrorKind.USAGE)
    early = error_report(measurement, check)
    if early is None and kind is not None:
        key, value, allowed = kind
        if value not in allowed or measurement.get(key) != value:
            return Report.error(
                f"pgcheck.{public}: {key}={value!r} does not match the "
                f"measurement (use one of {allowed}).",
                check=check,
                diagnosis=ErrorKind.USAGE,
            )
    return early


def count_mismatch(got: list[Any], expected: int, check: str, public: str) -> Report | None:
    """An error report when a measurement holds another number of cases than the judge's."""
    if len(got) == expected:
        return None
    return Report.error(
        f"pgcheck.{public}: the measurement does not match the cases.",
        check=check,
        diagnosis=ErrorKind.USAGE,
    )


def output_notes(measurement: Mapping[str, Any]) -> list[str]:
    """A note with what the learner's function printed, if anything."""
    notes = []
    for key, what in (("output", "printed"), ("fd_output", "wrote to fd 1/2")):
        out = measurement.get(key) or ""
        if isinstance(out, str) and out:
            notes.append(f"your function {what}: {out[:200]!r}" + (" …" if len(out) > 200 else ""))
    return notes


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
    return f"pgcheck.{check}: unknown option(s) {sorted(unknown)}; valid options are {valid}."


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
    return (
        f"Your result is {alpha:.6g} × the correct one: look for a stray constant factor "
        "(a 2, a ½, a mean where a sum belongs, or a log base other than e)."
    )
