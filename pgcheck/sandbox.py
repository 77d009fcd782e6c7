"""Calling a learner's function safely: time limit, captured output, guarded global state.

:func:`call_learner` never raises and never writes to stderr: every failure of the
learner's code comes back as a :class:`LearnerError` with a message that says what to change.
"""

from __future__ import annotations

import contextlib
import io
import random
import signal
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from pgcheck.errors import ErrorKind, LearnerError

#: How many characters of the learner's printed output are accepted before it is an error.
MAX_OUTPUT_CHARS = 20_000


class LearnerTimeout(BaseException):  # noqa: N818 - BaseException so `except Exception` cannot swallow it
    """Raised inside the learner's code when its time is up."""


@dataclass
class CallResult:
    """The outcome of :func:`call_learner`."""

    value: Any = None
    error: LearnerError | None = None
    output: str = ""
    warnings: list[str] = field(default_factory=list)


class _Tee(io.StringIO):
    """A StringIO that stops growing after a cap (so a print loop cannot eat the memory)."""

    def __init__(self, cap: int) -> None:
        super().__init__()
        self.cap = cap
        self.total = 0

    def write(self, s: str) -> int:
        self.total += len(s)
        if self.tell() < self.cap:
            super().write(s[: self.cap - self.tell()])
        return len(s)


@contextlib.contextmanager
def quiet() -> Iterator[_Tee]:
    """Capture stdout, stderr and warnings, so nothing reaches the notebook's stderr."""
    buffer = _Tee(MAX_OUTPUT_CHARS + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            yield buffer


# --------------------------------------------------------------------------- global state
def _global_state() -> dict[str, Any]:
    return {
        "default dtype": torch.get_default_dtype(),
        "grad mode": torch.is_grad_enabled(),
        "number of threads": torch.get_num_threads(),
        "deterministic algorithms": torch.are_deterministic_algorithms_enabled(),
        "anomaly detection": torch.is_anomaly_enabled(),
        "torch random state": torch.random.get_rng_state(),
        "numpy random state": np.random.get_state(),
        "python random state": random.getstate(),
    }


def _restore(state: dict[str, Any]) -> None:
    """Put back what changed (and only that: some setters are slow, e.g. deterministic mode)."""
    if torch.get_default_dtype() != state["default dtype"]:
        torch.set_default_dtype(state["default dtype"])
    torch.set_grad_enabled(state["grad mode"])
    if torch.get_num_threads() != state["number of threads"]:
        torch.set_num_threads(state["number of threads"])
    if torch.are_deterministic_algorithms_enabled() != state["deterministic algorithms"]:
        torch.use_deterministic_algorithms(state["deterministic algorithms"])
    if torch.is_anomaly_enabled() != state["anomaly detection"]:
        torch.autograd.set_detect_anomaly(state["anomaly detection"])
    torch.random.set_rng_state(state["torch random state"])
    np.random.set_state(state["numpy random state"])
    random.setstate(state["python random state"])


def _changed(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    changed = []
    for key, old in before.items():
        new = after[key]
        if isinstance(old, torch.Tensor):
            same = torch.equal(old, new)
        elif key == "numpy random state":
            same = old[0] == new[0] and np.array_equal(old[1], new[1]) and old[2:] == new[2:]
        else:
            same = old == new
        if not same:
            changed.append(key)
    return changed


@contextlib.contextmanager
def guarded_state() -> Iterator[None]:
    """Restore torch's, numpy's and Python's global state (RNG, grad mode, dtype, threads)."""
    state = _global_state()
    try:
        yield
    finally:
        _restore(state)


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one thread (tiny tensors: threads only add contention), then restore."""
    before = torch.get_num_threads()
    if before != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


# --------------------------------------------------------------------------- time limit
@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`LearnerTimeout` in the running code after ``seconds``.

    Uses SIGALRM in the main thread (no overhead), a trace function elsewhere.
    """
    seconds = max(seconds, 0.01)
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):

        def on_alarm(signum: int, frame: Any) -> None:
            raise LearnerTimeout

        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        return
    deadline = time.monotonic() + seconds
    old_trace = sys.gettrace()

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        if time.monotonic() > deadline:
            raise LearnerTimeout
        return tracer

    sys.settrace(tracer)
    try:
        yield
    finally:
        sys.settrace(old_trace)


# --------------------------------------------------------------------------- the call
def _learner_frames(exc: BaseException) -> str:
    """The last line of the learner's own code in the traceback (not pgcheck's, not torch's)."""
    frames = traceback.extract_tb(exc.__traceback__)
    own = [
        f
        for f in frames
        if "/pgcheck/" not in f.filename
        and "/torch/" not in f.filename
        and "/site-packages/" not in f.filename
    ]
    if not own:
        return ""
    f = own[-1]
    where = (
        "your code"
        if f.filename.startswith("<") or "ipykernel" in f.filename
        else f.filename.rsplit("/", 1)[-1]
    )
    code = f": {f.line}" if f.line else ""
    return f" (in {where}, line {f.lineno}{code})"


def call_learner(
    fn: Callable[..., Any], kwargs: dict[str, Any], *, seconds: float, name: str = "your function"
) -> CallResult:
    """Call ``fn(**kwargs)`` with a time limit, captured output and guarded global state.

    Inputs that are tensors are compared before and after the call, so an in-place edit is
    reported. Never raises (except KeyboardInterrupt), never prints.
    """
    snapshots = {k: v.detach().clone() for k, v in kwargs.items() if isinstance(v, torch.Tensor)}
    versions = {k: v._version for k, v in kwargs.items() if isinstance(v, torch.Tensor)}
    result = CallResult()
    before = _global_state()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        buffer = _Tee(MAX_OUTPUT_CHARS + 1)
        try:
            with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
                with _time_limit(seconds):
                    result.value = fn(**kwargs)
        except LearnerTimeout:
            result.error = LearnerError(
                ErrorKind.TIMEOUT,
                f"{name} did not finish within {seconds:.1f} s. Look for a loop that never "
                "ends (a `while` whose condition never changes).",
            )
        except KeyboardInterrupt:
            raise
        except RecursionError:
            result.error = LearnerError(ErrorKind.EXCEPTION, f"{name} recursed without end.")
        except NotImplementedError:
            result.error = LearnerError(
                ErrorKind.NOT_IMPLEMENTED,
                f"{name} is not written yet: replace the line "
                "`raise NotImplementedError()` with your code.",
            )
        except BaseException as exc:  # noqa: BLE001 - SystemExit and friends too
            result.error = LearnerError(
                ErrorKind.EXCEPTION,
                f"{name} raised {type(exc).__name__}: {exc}{_learner_frames(exc)}",
            )
        finally:
            after = _global_state()
            _restore(before)
    result.output = buffer.getvalue()
    result.warnings = [str(w.message) for w in caught]
    if result.error is None and buffer.total > MAX_OUTPUT_CHARS:
        result.error = LearnerError(
            ErrorKind.OUTPUT,
            f"{name} printed {buffer.total:,} characters. Remove the print statements "
            "from inside loops (print a summary once instead).",
        )
    if result.error is None:
        changed = [k for k in _changed(before, after) if k != "grad mode"] + (
            ["grad mode"] if before["grad mode"] != after["grad mode"] else []
        )
        if changed:
            rng = [c for c in changed if "random" in c]
            if rng and len(rng) == len(changed):
                msg = (
                    f"{name} used random numbers ({', '.join(rng)} advanced). A pseudo-loss "
                    "must be a deterministic function of the batch it is given."
                )
            else:
                msg = (
                    f"{name} changed global state ({', '.join(changed)}); pgcheck restored it. "
                    "Don't call torch.set_default_dtype, torch.set_grad_enabled, "
                    "torch.set_num_threads or seed the RNG inside your function."
                )
            result.error = LearnerError(ErrorKind.GLOBAL_STATE, msg)
    if result.error is None:
        for k, v in kwargs.items():
            if isinstance(v, torch.Tensor) and (
                v._version != versions[k] or not _same(v, snapshots[k])
            ):
                result.error = LearnerError(
                    ErrorKind.IN_PLACE,
                    f"{name} modified its input `{k}` in place. Use out-of-place "
                    "operations (x = x * g instead of x *= g) or work on x.clone().",
                )
                break
    return result


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    a = a.detach()
    return a.shape == b.shape and bool(torch.equal(a, b) or torch.allclose(a, b, equal_nan=True))
