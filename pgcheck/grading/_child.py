"""The isolated child of the trusted grader: ``python -I -m pgcheck.grading._child``.

It reads one job (JSON) from stdin, then, in this order:

1. applies its resource limits, moves the real stdout away (learner output on fd 1 goes to
   /dev/null), captures Python-level stdout/stderr, imports torch and pgcheck, runs the
   preload files and binds every task's ``measure`` function -- all before learner code;
2. snapshots the namespaces a learner could monkeypatch (pgcheck's modules, the registry,
   torch, numpy, builtins, json): a replaced or deleted function is "tampered";
3. runs the job's steps in notebook order (the instructor's setup code and the learner's
   answer cells) in a fresh ``__main__``, each in its own try/except with an alarm;
4. runs each task (``measure`` on the learner's function, or one visible test cell) in its
   own forked process with its own time limit and its own stderr pipe, so that a task that
   hangs, exits, kills itself or writes to stderr fails alone;
5. writes one line ``<nonce><json>`` to the saved stdout and leaves with ``os._exit``.

Nothing here is trusted by the parent beyond the plain numbers of that line: the verdict is
computed in the parent by the check's ``judge``.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import select
import signal
import sys
import time
import types
import warnings
from typing import Any

_OUTPUT_CAP = 20_000
_RESULT_CAP = 4_000_000
_STDERR_CAP = 4_000


class _Capped(io.StringIO):
    """Swallows writes beyond a cap (learner prints)."""

    def write(self, s: str) -> int:  # type: ignore[override]
        if self.tell() < _OUTPUT_CAP:
            super().write(str(s)[: _OUTPUT_CAP - self.tell()])
        return len(s) if isinstance(s, str) else 0


class _CellTimeout(BaseException):  # noqa: N818 - BaseException so learner code can't swallow it
    pass


class _Shell:
    """A do-nothing stand-in for ``get_ipython()``: magics are no-ops, transformers inert."""

    def __init__(self) -> None:
        self.input_transformers_post: list[Any] = []
        self.input_transformers_cleanup: list[Any] = []
        self.user_ns: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


# --------------------------------------------------------------------------- tampering
def _identities(obj: Any) -> dict[str, int]:
    """Identity of each callable entry (functions, classes, modules) of a namespace.

    Data entries are left out: libraries cache data lazily in module globals.
    """
    space = obj if isinstance(obj, dict) else vars(obj)
    return {
        str(k): id(v)
        for k, v in list(space.items())
        if callable(v) or isinstance(v, types.ModuleType)
    }


def _snapshot(objects: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Identity of every callable entry of each watched namespace."""
    snap = {label: _identities(obj) for label, obj in objects.items()}
    for key in ("_", "__builtins__"):
        snap.get("builtins", {}).pop(key, None)
    return snap


def _tampered(before: dict[str, dict[str, int]], objects: dict[str, Any]) -> list[str]:
    """Namespaces whose existing entries were replaced or deleted (additions are fine)."""
    changed = []
    for label, obj in objects.items():
        space = obj if isinstance(obj, dict) else vars(obj)
        now = {str(k): id(v) for k, v in list(space.items())}
        if any(now.get(k) != v for k, v in before[label].items()):
            changed.append(label)
    return sorted(changed)


def _watched() -> dict[str, Any]:
    import numpy
    import torch
    import torch.autograd
    import torch.nn.functional

    import pgcheck.checks.registry

    objects: dict[str, Any] = {
        "builtins": builtins,
        "json": json,
        "os": os,
        "torch": torch,
        "torch.Tensor": torch.Tensor,
        "torch.autograd": torch.autograd,
        "torch.nn.functional": torch.nn.functional,
        "numpy": numpy,
        "pgcheck.checks.registry.REGISTRY": pgcheck.checks.registry.REGISTRY,
    }
    for name, module in list(sys.modules.items()):
        if (name == "pgcheck" or name.startswith("pgcheck.")) and module is not None:
            objects[name] = module
    for name, check in list(pgcheck.checks.registry.REGISTRY.items()):
        objects[f"check {name}"] = check
    return objects


# --------------------------------------------------------------------------- running code
def _load_preload(path: str) -> None:
    import importlib.util

    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)


def _run(code: str, label: str, namespace: dict[str, Any], seconds: float) -> str | None:
    """Exec ``code``; return the exception's type name (or None). A per-cell alarm is set."""

    def on_alarm(signum: int, frame: Any) -> None:
        raise _CellTimeout

    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        exec(compile(code, f"<{label}>", "exec"), namespace)  # noqa: S102 - isolated child
        return None
    except _CellTimeout:
        return "Timeout"
    except KeyboardInterrupt:
        return "KeyboardInterrupt"
    except BaseException as exc:  # noqa: BLE001 - SystemExit too: a notebook survives it
        return type(exc).__name__
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _in_fork(work: Any, seconds: float) -> dict[str, Any]:
    """Run ``work() -> dict`` in a forked process with a time limit and its own stderr pipe."""
    result_r, result_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the task's process
        os.close(result_r)
        os.close(err_r)
        os.dup2(err_w, 2)
        os.close(err_w)
        os.setpgid(0, 0)
        try:
            payload = work()
        except BaseException as exc:  # noqa: BLE001
            payload = {"status": "error", "message": f"{type(exc).__name__}"}
        try:
            data = json.dumps(payload, allow_nan=True).encode()
        except Exception as exc:  # noqa: BLE001 - unencodable measurement
            data = json.dumps(
                {"status": "error", "message": f"measurement not JSON: {type(exc).__name__}"}
            ).encode()
        while data:
            data = data[os.write(result_w, data) :]
        os._exit(0)
    os.close(result_w)
    os.close(err_w)
    out, err = bytearray(), bytearray()
    deadline = time.monotonic() + seconds
    open_fds = {result_r: out, err_r: err}
    status = None
    while open_fds:
        left = deadline - time.monotonic()
        if left <= 0:
            status = "timeout"
            break
        ready, _, _ = select.select(list(open_fds), [], [], left)
        for fd in ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                del open_fds[fd]
                continue
            sink = open_fds[fd]
            sink.extend(chunk)
            if len(out) > _RESULT_CAP or len(err) > _STDERR_CAP:
                status = "flood"
        if status:
            break
    for fd in (result_r, err_r):
        os.close(fd)
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    os.waitpid(pid, 0)
    if status == "timeout":
        return {"status": "timeout", "message": f"did not finish within {seconds:g} s"}
    if status == "flood":
        return {"status": "flood", "message": "wrote too much output"}
    if err:
        return {
            "status": "stderr",
            "message": "wrote to stderr: " + bytes(err[:200]).decode("utf-8", "replace"),
        }
    try:
        payload = json.loads(bytes(out))
    except ValueError:
        return {"status": "crashed", "message": "the process ended without a result"}
    if not isinstance(payload, dict):
        return {"status": "crashed", "message": "no result"}
    return payload


def main() -> None:
    """Run one job from stdin; see the module docstring."""
    job = json.loads(sys.stdin.read())
    sys.stdin.close()
    try:
        import resource

        for name, value in job.get("limits", {}).items():
            resource.setrlimit(getattr(resource, name), (value, value))
    except (ImportError, ValueError, OSError, AttributeError):
        pass
    nonce: str = job["nonce"]
    out_fd = os.dup(1)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.close(null)
    write, dumps, exit_now = os.write, json.dumps, os._exit

    def send(payload: dict[str, Any]) -> None:
        data = (nonce + dumps(payload, allow_nan=True) + "\n").encode()
        while data:
            data = data[write(out_fd, data) :]
        exit_now(0)

    captured = _Capped()
    sys.stdout = captured
    sys.stderr = captured
    warnings.simplefilter("ignore")
    try:
        import torch

        torch.set_num_threads(1)
        from pgcheck.checks.registry import REGISTRY
        from pgcheck.sandbox import call_learner

        for path in job.get("preload", []):
            _load_preload(path)
        # warm up: torch rebinds some of its functions on first use (importing torch._dynamo
        # wraps torch.manual_seed); let that happen before the snapshot
        call_learner(lambda: None, {}, seconds=30.0)
    except BaseException as exc:  # noqa: BLE001
        send({"status": "error", "message": f"grader setup failed: {type(exc).__name__}: {exc}"})
        return
    tasks: list[dict[str, Any]] = job["tasks"]
    measures = [
        REGISTRY[t["check"]].measure if t["type"] == "measure" and t["check"] in REGISTRY else None
        for t in tasks
    ]
    watched = _watched()
    before = _snapshot(watched)

    for path in job.get("sys_path", []):
        sys.path.insert(0, path)
    main_module = types.ModuleType("__main__")
    namespace = main_module.__dict__
    namespace["__builtins__"] = builtins
    shell = _Shell()
    namespace["get_ipython"] = lambda: shell
    sys.modules["__main__"] = main_module
    cell_seconds = float(job.get("cell_timeout", 30.0))
    task_seconds = float(job.get("task_timeout", 60.0))

    errors: list[str] = []
    for step in job["steps"]:
        for source in step["sources"]:
            error = _run(source, step["label"], namespace, cell_seconds)
            if error is not None:
                errors.append(f"{step['label']}: {error}")
    sys.stdout = captured
    sys.stderr = captured
    try:  # tell the parent the cells are done: the tasks' own time budget starts now
        marker = (nonce + "CELLS-DONE\n").encode()
        while marker:
            marker = marker[write(out_fd, marker) :]
    except OSError:
        pass
    changed = _tampered(before, watched)
    if changed:
        send(
            {
                "status": "tampered",
                "cell_errors": errors[:20],
                "message": "the answer cells replaced library or pgcheck functions: "
                + ", ".join(changed[:5]),
            }
        )
        return

    def measure_task(task: dict[str, Any], measure: Any) -> dict[str, Any]:
        import ast

        if measure is None:
            return {"status": "unknown-check", "message": f"no check named {task['check']!r}"}
        fn = namespace.get(task["function"])
        if not callable(fn):
            return {
                "status": "missing",
                "message": f"no function named {task['function']!r} was defined",
            }
        options = ast.literal_eval(task["options"])
        measurement = measure(fn, **options)
        changed = _tampered(before, watched)
        if changed:
            return {
                "status": "tampered",
                "message": "the learner's function replaced library or pgcheck functions: "
                + ", ".join(changed[:5]),
            }
        return {"status": "ok", "measurement": measurement}

    def visible_task(task: dict[str, Any]) -> dict[str, Any]:
        stderr_buffer = _Capped()
        sys.stdout = _Capped()
        sys.stderr = stderr_buffer
        error = _run(task["source"], task["label"], namespace, task_seconds)
        sys.stdout = sys.stderr = captured
        changed = _tampered(before, watched)
        if changed:
            return {
                "status": "tampered",
                "message": "the test replaced library or pgcheck functions: "
                + ", ".join(changed[:5]),
            }
        return {"status": "ok", "error": error, "stderr": bool(stderr_buffer.getvalue())}

    results = []
    for task, measure in zip(tasks, measures, strict=True):
        if task["type"] == "measure":
            results.append(_in_fork(lambda t=task, m=measure: measure_task(t, m), task_seconds))
        else:
            results.append(_in_fork(lambda t=task: visible_task(t), task_seconds + 5))
    send({"status": "ok", "tasks": results, "cell_errors": errors[:20]})


if __name__ == "__main__":
    main()
