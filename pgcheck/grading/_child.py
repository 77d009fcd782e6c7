"""The isolated child of the trusted grader: ``python -I -m pgcheck.grading._child``.

It reads one job (JSON) from stdin, then, in this order:

1. moves the real stdout away (learner output on fd 1 goes to /dev/null), captures
   Python-level stdout/stderr, imports torch and pgcheck, runs the preload files and binds
   the check's ``measure`` function -- all before any learner code runs;
2. snapshots the namespaces a learner could monkeypatch (pgcheck's modules, the registry,
   torch, numpy, builtins, json);
3. runs the job's steps in notebook order (the instructor's setup code and the learner's
   answer cells) in a fresh ``__main__``, each in its own try/except;
4. runs the task (``measure`` on the learner's function, or the visible test cells),
   refuses the result if a snapshotted namespace changed, and writes one line
   ``<nonce><json>`` to the saved stdout, then ``os._exit(0)`` (no atexit handlers).

Nothing here is trusted by the parent beyond the JSON line's plain numbers: the verdict is
computed in the parent.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import signal
import sys
import types
import warnings
from typing import Any

_OUTPUT_CAP = 20_000


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


def _identities(obj: Any) -> dict[str, int]:
    """Identity of each callable entry (functions, classes, modules) of a namespace.

    Data entries are left out: libraries cache data lazily in module globals.
    """
    space = obj if isinstance(obj, dict) else vars(obj)
    return {str(k): id(v) for k, v in list(space.items())
            if callable(v) or isinstance(v, types.ModuleType)}


def _snapshot(objects: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Identity of every callable entry of each watched namespace."""
    return {label: _identities(obj) for label, obj in objects.items()}


def _tampered(before: dict[str, dict[str, int]], objects: dict[str, Any]) -> list[str]:
    """Names of namespaces whose existing entries were replaced or deleted (additions are fine)."""
    changed = []
    for label, obj in objects.items():
        space = obj if isinstance(obj, dict) else vars(obj)
        now = {str(k): id(v) for k, v in list(space.items())}
        old = before[label]
        if any(now.get(k) != v for k, v in old.items()):
            changed.append(label)
    return changed


def _watched() -> dict[str, Any]:
    import numpy
    import torch
    import torch.autograd
    import torch.nn.functional

    import pgcheck
    import pgcheck.registry

    objects: dict[str, Any] = {
        "builtins": builtins, "json": json, "torch": torch, "torch.Tensor": torch.Tensor,
        "torch.autograd": torch.autograd, "torch.nn.functional": torch.nn.functional,
        "numpy": numpy, "pgcheck.registry.REGISTRY": pgcheck.registry.REGISTRY,
    }
    for name, module in list(sys.modules.items()):
        if (name == "pgcheck" or name.startswith("pgcheck.")) and module is not None:
            objects[name] = module
    for name, check in list(pgcheck.registry.REGISTRY.items()):
        objects[f"check {name}"] = check
    return objects


def _skip_builtins(snap: dict[str, dict[str, int]]) -> None:
    # names the interpreter itself rebinds
    for key in ("_", "__builtins__"):
        snap.get("builtins", {}).pop(key, None)


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
    write = os.write
    dumps = json.dumps
    exit_now = os._exit

    def send(payload: dict[str, Any]) -> None:
        try:
            data = (nonce + dumps(payload, allow_nan=True) + "\n").encode()
        except Exception as exc:  # noqa: BLE001 - unencodable measurement
            data = (nonce + dumps({"status": "error",
                                   "message": f"measurement not JSON: {type(exc).__name__}"})
                    + "\n").encode()
        while data:
            data = data[write(out_fd, data):]
        exit_now(0)

    captured = _Capped()
    sys.stdout = captured
    sys.stderr = captured
    warnings.simplefilter("ignore")
    try:
        import torch

        torch.set_num_threads(1)
        import pgcheck  # noqa: F401 - registers the checks
        from pgcheck.registry import REGISTRY

        for path in job.get("preload", []):
            _load_preload(path)
    except BaseException as exc:  # noqa: BLE001
        send({"status": "error", "message": f"grader setup failed: {type(exc).__name__}: {exc}"})
        return
    task = job["task"]
    measure = None
    if task["type"] == "measure":
        check = REGISTRY.get(task["check"])
        if check is None:
            send({"status": "unknown-check", "message": f"no check named {task['check']!r}"})
            return
        measure = check.measure
    try:
        # warm up: torch rebinds some of its functions on first use (e.g. importing
        # torch._dynamo wraps torch.manual_seed); let that happen before the snapshot
        from pgcheck.sandbox import call_learner

        call_learner(lambda: None, {}, seconds=30.0)
    except BaseException:  # noqa: BLE001
        pass
    watched = _watched()
    before = _snapshot(watched)
    _skip_builtins(before)

    for path in job.get("sys_path", []):
        sys.path.insert(0, path)
    main_module = types.ModuleType("__main__")
    namespace = main_module.__dict__
    namespace["__builtins__"] = builtins
    shell = _Shell()
    namespace["get_ipython"] = lambda: shell
    sys.modules["__main__"] = main_module
    cell_seconds = float(job.get("cell_timeout", 30.0))

    errors: list[str] = []
    for step in job["steps"]:
        for source in step["sources"]:
            error = _run(source, step["label"], namespace, cell_seconds)
            if error is not None:
                errors.append(f"{step['label']}: {error}")
    sys.stdout = captured
    sys.stderr = captured

    result: dict[str, Any]
    if task["type"] == "measure":
        fn = namespace.get(task["function"])
        if not callable(fn):
            result = {"status": "missing",
                      "message": f"no function named {task['function']!r} was defined"}
        elif _tampered(before, watched):
            result = {"status": "tampered",
                      "message": "the answer cells replaced library or pgcheck functions"}
        else:
            import ast

            options = ast.literal_eval(task["options"])
            try:
                measurement = measure(fn, **options)  # type: ignore[misc]
                result = {"status": "ok", "measurement": measurement}
            except BaseException as exc:  # noqa: BLE001
                result = {"status": "error", "message": f"measure raised {type(exc).__name__}"}
    else:
        outcomes = []
        for cell in task["cells"]:
            stderr_buffer = _Capped()
            sys.stdout = _Capped()
            sys.stderr = stderr_buffer
            error = _run(cell["source"], cell["label"], namespace, cell_seconds)
            sys.stdout = captured
            sys.stderr = captured
            outcomes.append({"grade_id": cell["grade_id"], "error": error,
                             "stderr": bool(stderr_buffer.getvalue())})
        result = {"status": "ok", "visible": outcomes}
    changed = _tampered(before, watched)
    if changed:
        result = {"status": "tampered",
                  "message": "the learner's code replaced library or pgcheck functions: "
                             + ", ".join(sorted(changed)[:5])}
    result["cell_errors"] = errors[:20]
    send(result)


if __name__ == "__main__":
    main()
