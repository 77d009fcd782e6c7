"""Calling a learner's function safely: time limit, captured output, guarded global state.

Two layers:

* :func:`call_learner` runs one call of the learner's function with a **CPU-time** limit
  (``ITIMER_PROF``: the learner's own CPU seconds, so a loaded machine gives the same verdict
  as a quiet one), captured output and guarded global state. It never raises and never
  writes to stderr: every failure comes back as a :class:`LearnerError`.
* :func:`run_in_child` runs a whole measurement in a forked child process: the child has
  fds 1 and 2 on /dev/null, SIGINT ignored, an ``RLIMIT_CPU`` backstop, and sends back only
  plain JSON data over a pipe; the parent enforces a wall limit (generous, so that load
  cannot trip it: :func:`wall_limit`). ``os._exit``, a crash, a signal handler that swallows
  the alarm, a ``fork`` inside the learner's code or an exception that escapes every guard
  then end the child, never the learner's kernel, and become an ``"error"`` measurement.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import random
import select
import signal
import struct
import sys
import tempfile
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
    cpu_seconds: float = 0.0  # CPU time of the call (the learner's budget counts only this)


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
        "recursion limit": sys.getrecursionlimit(),
        "default dtype setter called": _DTYPE_CALLS[0],
    }


#: How often torch.set_default_dtype was called (only counted inside :func:`run_in_child`,
#: where the setter is wrapped; a call that sets the dtype it already had is still reported).
_DTYPE_CALLS = [0]


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
    if sys.getrecursionlimit() != state["recursion limit"]:
        sys.setrecursionlimit(state["recursion limit"])


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
    """Raise :class:`LearnerTimeout` in the running code after ``seconds`` of **CPU time**.

    In the main thread: ``ITIMER_PROF`` (user + system CPU time of the process, so the limit
    does not shrink when other processes share the cores). Elsewhere: a trace function that
    compares ``time.thread_time()``. A learner that blocks or swallows the signal is stopped
    by the wall limit of :func:`run_in_child`.
    """
    seconds = max(seconds, 0.01)
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):

        def on_alarm(signum: int, frame: Any) -> None:
            raise LearnerTimeout

        previous = signal.signal(signal.SIGPROF, on_alarm)
        signal.setitimer(signal.ITIMER_PROF, seconds)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
            signal.signal(signal.SIGPROF, previous)
        return
    deadline = time.thread_time() + seconds
    wall_deadline = time.monotonic() + wall_limit(seconds)
    old_trace = sys.gettrace()

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        if time.thread_time() > deadline or time.monotonic() > wall_deadline:
            raise LearnerTimeout
        return tracer

    sys.settrace(tracer)
    try:
        yield
    finally:
        sys.settrace(old_trace)


def wall_limit(cpu_seconds: float) -> float:
    """The wall-clock limit that goes with a CPU budget: W = 2·budget + 5 s.

    Generous on purpose: with both cores busy a process gets about half a core, so a loss
    within its CPU budget still finishes well inside W; W only stops code that sleeps, blocks
    or swallows the CPU-time alarm.
    """
    return 2.0 * cpu_seconds + 5.0


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
    pid = os.getpid()
    snapshots = {k: v.detach().clone() for k, v in kwargs.items() if isinstance(v, torch.Tensor)}
    versions = {k: v._version for k, v in kwargs.items() if isinstance(v, torch.Tensor)}
    result = CallResult()
    before = _global_state()
    cpu_start = time.process_time()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        buffer = _Tee(MAX_OUTPUT_CHARS + 1)
        try:
            with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
                with _time_limit(seconds):
                    try:
                        result.value = fn(**kwargs)
                    finally:
                        if os.getpid() != pid:  # the learner forked: the copy ends here
                            os._exit(0)
        except LearnerTimeout:
            result.error = LearnerError(
                ErrorKind.TIMEOUT,
                f"{name} did not finish within {seconds:.1f} s of CPU time. Look for a loop "
                "that never ends (a `while` whose condition never changes).",
            )
        except KeyboardInterrupt as exc:
            result.error = LearnerError(
                ErrorKind.EXCEPTION,
                f"{name} was interrupted (KeyboardInterrupt){_learner_frames(exc)}; "
                "nothing was checked.",
            )
        except RecursionError as exc:
            result.error = LearnerError(
                ErrorKind.RECURSION,
                f"{name} recursed without end (RecursionError: more than "
                f"{sys.getrecursionlimit():,} nested calls{_learner_frames(exc)}). pgcheck "
                f"allows at most {RECURSION_CAP:,}, even after sys.setrecursionlimit: write the "
                "recursion as a loop.",
            )
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
            result.cpu_seconds = time.process_time() - cpu_start
    result.output = buffer.getvalue()
    result.warnings = [str(w.message) for w in caught]
    if result.error is None and buffer.total > MAX_OUTPUT_CHARS:
        result.error = LearnerError(
            ErrorKind.OUTPUT,
            f"{name} printed {buffer.total:,} characters. Remove the print statements "
            "from inside loops (print a summary once instead).",
        )
    if result.error is None:
        changed = [k for k in _changed(before, after) if k not in ("grad mode", "default dtype")]
        if (
            before["default dtype"] != after["default dtype"]
            or before["default dtype setter called"] != after["default dtype setter called"]
        ):
            changed.insert(0, "default dtype")
        changed = [c for c in changed if c != "default dtype setter called"] + (
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
                    "torch.set_num_threads, sys.setrecursionlimit or seed the RNG inside "
                    "your function."
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


# --------------------------------------------------------------------------- the child process
#: Largest result (bytes of JSON) a child may send back.
MAX_RESULT_BYTES = 64 * 1024 * 1024


def isolation_available() -> bool:
    """Whether :func:`run_in_child` forks (POSIX with ``os.fork``), else it runs in-process."""
    return hasattr(os, "fork") and sys.platform != "win32"


def _child_error(kind: ErrorKind, message: str) -> dict[str, Any]:
    return {"error": {"kind": str(kind), "message": message}}


def _count_dtype_calls(setter: Callable[..., Any]) -> Callable[..., Any]:
    def counted(*args: Any, **kwargs: Any) -> Any:
        _DTYPE_CALLS[0] += 1
        return setter(*args, **kwargs)

    return counted


#: How many characters written to fds 1/2 in the child are sent back (as a report note).
FD_OUTPUT_CHARS = 2000
#: The largest recursion limit a learner's code may set in the child.
RECURSION_CAP = 10_000
_set_recursion_limit = sys.setrecursionlimit


def _capped_recursion_limit(limit: int) -> None:
    """sys.setrecursionlimit for the learner's code in the child: at most RECURSION_CAP."""
    _set_recursion_limit(min(int(limit), max(RECURSION_CAP, sys.getrecursionlimit())))


def _read_sink(sink: Any) -> str:
    """The first FD_OUTPUT_CHARS characters written to the child's fds 1 and 2."""
    try:
        sink.seek(0)
        return sink.read(FD_OUTPUT_CHARS).decode("utf-8", "replace")
    except (OSError, ValueError):
        return ""


def _child_main(work: Callable[[], dict[str, Any]], write_fd: int, cpu_limit: float) -> None:
    """In the forked child: isolate, run ``work``, send ``len + JSON`` on ``write_fd``, _exit."""
    me = os.getpid()
    code = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
        # C-level and fd-level writes go to a private file, never to the terminal (Python's
        # print is captured separately); the first FD_OUTPUT_CHARS are sent back as a note.
        sink = tempfile.TemporaryFile()
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        with contextlib.suppress(ImportError, ValueError, OSError):
            import resource

            resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 22, 1 << 22))
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past it fails, no kill
        # A learner's sys.setrecursionlimit is capped, so a recursion without end is a clean
        # RecursionError instead of minutes of stack growth or a crash.
        sys.setrecursionlimit = _capped_recursion_limit
        with contextlib.suppress(ImportError, ValueError, OSError):
            import resource

            soft = max(1, math.ceil(cpu_limit))
            resource.setrlimit(resource.RLIMIT_CPU, (soft, soft + 1))
        # In the disposable child, count calls of the dtype setter (see _global_state).
        torch.set_default_dtype = _count_dtype_calls(torch.set_default_dtype)
        # Move the global RNGs on from wherever they are: right after e.g. torch.manual_seed(0)
        # a learner's own manual_seed(0) would leave the state unchanged and go unnoticed.
        torch.rand(1)
        np.random.random()
        random.random()
        with quiet():
            try:
                result = work()
            except BaseException as exc:  # noqa: BLE001 - whatever escaped every guard
                result = _child_error(
                    ErrorKind.EXCEPTION,
                    f"your code raised {type(exc).__name__} where pgcheck could not catch it "
                    f"(e.g. from a returned object's __bool__ or __del__): {exc}",
                )
        if os.getpid() != me:  # a fork of the learner's that got this far says nothing
            os._exit(0)
        if isinstance(result, dict):
            fd_text = _read_sink(sink)
            if fd_text:
                result["fd_output"] = fd_text
        try:
            data = json.dumps(result, allow_nan=True).encode()
        except (TypeError, ValueError) as exc:
            data = json.dumps(
                _child_error(ErrorKind.INTERNAL, f"the measurement is not plain data: {exc}")
            ).encode()
        data = struct.pack("!Q", len(data)) + data
        while data:
            data = data[os.write(write_fd, data) :]
    except BaseException:  # noqa: BLE001 - the child must end here, whatever happened
        code = 1
    finally:
        os._exit(code)


def run_in_child(
    work: Callable[[], dict[str, Any]], *, cpu_seconds: float, wall_seconds: float | None = None
) -> dict[str, Any]:
    """Run ``work() -> plain dict`` in a forked child and return its result (never raises).

    ``cpu_seconds`` is the learner's budget; the child gets an ``RLIMIT_CPU`` backstop of
    ``cpu_seconds + 5`` (pgcheck's own work in the child included) and the parent kills it
    after ``wall_seconds`` (default :func:`wall_limit`). A child that dies, is killed or sends
    nothing gives an ``"error"`` measurement saying so. Without ``os.fork`` (Windows),
    ``work`` runs in-process.
    """
    wall = wall_limit(cpu_seconds) if wall_seconds is None else wall_seconds
    if not isolation_available():
        return work()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child (measured through the parent)
        os.close(read_fd)
        _child_main(work, write_fd, cpu_seconds + 5.0)
    os.close(write_fd)
    buffer = bytearray()
    need: int | None = None
    deadline = time.monotonic() + wall
    timed_out = interrupted = False
    try:
        while need is None or len(buffer) < need + 8:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([read_fd], [], [], min(left, 0.5))
            if not ready:
                continue
            chunk = os.read(read_fd, 1 << 20)
            if not chunk:
                break
            buffer.extend(chunk)
            if need is None and len(buffer) >= 8:
                need = struct.unpack("!Q", bytes(buffer[:8]))[0]
                if need > MAX_RESULT_BYTES:
                    break
    except KeyboardInterrupt:
        interrupted = True
    finally:
        os.close(read_fd)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    if interrupted:
        return _child_error(ErrorKind.EXCEPTION, "the check was interrupted (KeyboardInterrupt).")
    if need is not None and len(buffer) >= need + 8:
        try:
            result = json.loads(bytes(buffer[8 : 8 + need]))
        except ValueError:
            result = None
        if isinstance(result, dict):
            return result
    if timed_out:
        return _child_error(
            ErrorKind.TIMEOUT,
            f"your code did not finish within the wall-clock limit of {wall:.0f} s (the CPU "
            f"budget is {cpu_seconds:.1f} s). Look for a loop that never ends, a sleep, or "
            "code that catches or blocks pgcheck's time limit (signal handlers).",
        )
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig in (signal.SIGXCPU, signal.SIGKILL):
            return _child_error(
                ErrorKind.TIMEOUT,
                f"your code used more than {cpu_seconds:.1f} s of CPU time and ignored "
                "pgcheck's time limit; it was stopped.",
            )
        return _child_error(
            ErrorKind.EXCEPTION,
            f"your code crashed the process (signal {signal.Signals(sig).name}); a common "
            "cause is recursion without end after sys.setrecursionlimit was raised.",
        )
    exit_code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
    return _child_error(
        ErrorKind.EXCEPTION,
        f"your code ended the process (exit status {exit_code}, e.g. os._exit) before pgcheck "
        "could finish; don't call os._exit, sys.exit or os.kill in it.",
    )
