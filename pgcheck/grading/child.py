"""The jailed child: runs one student's code and only *calls* it (``python -I child.py UID``).

This file is copied alone into the sandbox (never the pgcheck package): it imports only the
standard library, numpy and torch. Everything it does after the first student cell runs is
under the student's control, so the parent trusts nothing it says beyond plain numbers that
must equal the correct function's outputs on instances the student never saw.

Protocol (one JSON object per line; requests on stdin, replies on a private copy of stdout):

1. it drops to the unprivileged uid given on the command line, reads the job
   ``{"cells": [{"label", "source"}], "cell_timeout", "functions": [names]}``, sends
   ``{"type": "cell", "index": i}`` before each cell (the parent's per-cell wall limit starts),
   then ``{"type": "ready", "functions": {name: {"callable", "params"}}, "cell_errors"}``;
2. then answers requests by ``id``:

   * ``{"op": "loss", "function", "names", "leaves", "data", "grad"}``: build the pseudo-loss
     inputs from the plain leaves (``logits`` or ``mean``/``std``, ``values``) and data, call
     the function by keyword, backpropagate the value to the leaves; reply the value, the
     gradients and any input changed in place;
   * ``{"op": "call", "function", "args", "kwargs"}``: call the function positionally/by
     keyword on decoded plain arguments; reply the encoded value and, when it is a tensor on
     the autograd graph, its Jacobian w.r.t. every argument that requires grad.  Arguments
     the parent could not send as data are *handles*: attribute reads and calls on them go
     back to the parent as ``{"type": "cb", ...}`` messages;
   * ``{"op": "visible", "source", "label", "timeout"}``: run a visible test cell;
   * ``{"op": "quit"}``.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import signal
import sys
import traceback
from typing import Any

_OUTPUT_CAP = 4_000


class _Capped(io.StringIO):
    """Keeps the first few thousand characters of what the student prints."""

    def write(self, s: Any) -> int:
        s = str(s)
        if self.tell() < _OUTPUT_CAP:
            super().write(s[: _OUTPUT_CAP - self.tell()])
        return len(s)


class _CellTimeout(BaseException):  # noqa: N818 - BaseException: `except Exception` can't eat it
    pass


class _Shell:
    """A do-nothing ``get_ipython()``: magics are no-ops, input transformers inert."""

    def __init__(self) -> None:
        self.input_transformers_post: list[Any] = []
        self.input_transformers_cleanup: list[Any] = []
        self.user_ns: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def _drop_privileges(uid: int) -> None:
    """Become ``uid`` (no groups, no capabilities) when started as root; else stay."""
    if os.geteuid() != 0 or uid <= 0:
        return
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)


# --------------------------------------------------------------------------- wire format
_OUT: Any = None  # the private reply stream
_IN: Any = None


def _send(obj: dict[str, Any]) -> None:
    _OUT.write(json.dumps(obj, allow_nan=True) + "\n")
    _OUT.flush()


def _receive() -> dict[str, Any]:
    line = _IN.readline()
    if not line:
        os._exit(0)
    return json.loads(line)


def _exc_text(exc: BaseException) -> str:
    """``Type: message`` plus the last line of the student's own code that raised it."""
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if f.filename.startswith("<") and f.filename != "<string>"
    ]
    where = f" (in {frames[-1].filename.strip('<>')}, line {frames[-1].lineno})" if frames else ""
    if isinstance(exc, _CellTimeout):  # this file's alarm: say what happened, in plain words
        return f"TimeoutError: did not finish within the time limit{where}"
    return f"{type(exc).__name__}: {str(exc)[:300]}{where}"


def _error_kind(exc: BaseException) -> str:
    if isinstance(exc, NotImplementedError):
        return "not_implemented"
    if isinstance(exc, RecursionError):
        return "exception"
    if isinstance(exc, _CellTimeout):
        return "timeout"
    return "exception"


class _Alarm:
    """A best-effort in-process alarm (the parent enforces the real wall limit)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = max(float(seconds), 0.01)

    def __enter__(self) -> None:
        def on_alarm(signum: int, frame: Any) -> None:
            raise _CellTimeout

        signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def __exit__(self, *exc: Any) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)


# --------------------------------------------------------------------------- values
def _encode(value: Any, depth: int = 0) -> Any:
    """Plain JSON for a value the student's function returned."""
    import numpy as np
    import torch

    if depth > 8:
        return {"__t": "other", "type": "nested too deep"}
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        return value if type(value) in (int, float) else {"__t": "other", "type": "number subclass"}
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu()
        if t.is_complex():
            return {"__t": "other", "type": "complex tensor"}
        return {
            "__t": "tensor",
            "dtype": str(t.dtype).replace("torch.", ""),
            "shape": list(t.shape),
            "data": t.reshape(-1).tolist(),
            "rg": bool(value.requires_grad),
        }
    if isinstance(value, np.ndarray | np.generic):
        a = np.asarray(value)
        if a.dtype == object or np.iscomplexobj(a):
            return {"__t": "other", "type": f"numpy array of dtype {a.dtype}"}
        return {
            "__t": "ndarray",
            "dtype": str(a.dtype),
            "shape": list(a.shape),
            "data": a.reshape(-1).tolist(),
            "scalar": isinstance(value, np.generic),
        }
    if isinstance(value, list | tuple):
        return {
            "__t": "list" if isinstance(value, list) else "tuple",
            "items": [_encode(v, depth + 1) for v in value[:10_000]],
        }
    if isinstance(value, dict):
        return {
            "__t": "dict",
            "items": [[str(k), _encode(v, depth + 1)] for k, v in list(value.items())[:1000]],
        }
    if isinstance(value, _Handle):
        return {"__t": "handle", "id": object.__getattribute__(value, "_id")}
    return {"__t": "other", "type": type(value).__name__[:80]}


def _decode(obj: Any) -> Any:
    """Arguments from the parent (trusted plain data) as tensors, arrays, handles."""
    import numpy as np
    import torch

    if not isinstance(obj, dict):
        return obj
    kind = obj.get("__t")
    if kind == "tensor":
        t = torch.tensor(obj["data"], dtype=getattr(torch, obj["dtype"])).reshape(obj["shape"])
        return t.requires_grad_(True) if obj.get("rg") else t
    if kind == "ndarray":
        a = np.asarray(obj["data"], dtype=obj["dtype"]).reshape(obj["shape"])
        return a[()] if obj.get("scalar") else a
    if kind in ("list", "tuple"):
        items = [_decode(v) for v in obj["items"]]
        return items if kind == "list" else tuple(items)
    if kind == "dict":
        return {k: _decode(v) for k, v in obj["items"]}
    if kind == "handle":
        return _Handle(obj["id"])
    return None


class _Handle:
    """An object that lives in the parent (an environment, a callable, a random generator).

    Public attribute reads and calls are sent to the parent, which answers with plain data
    or another handle.
    """

    def __init__(self, ident: int) -> None:
        object.__setattr__(self, "_id", ident)

    def _ask(self, message: dict[str, Any]) -> Any:
        message.update(type="cb", handle=object.__getattribute__(self, "_id"))
        _send(message)
        reply = _receive()
        if reply.get("error"):
            raise RuntimeError(str(reply["error"]))
        return _decode(reply.get("value"))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return self._ask({"attr": name})

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._ask(
            {
                "call": True,
                "args": [_encode(a) for a in args],
                "kwargs": {k: _encode(v) for k, v in kwargs.items()},
            }
        )

    def __iter__(self) -> Any:
        raise TypeError("this object cannot be iterated while grading")


# --------------------------------------------------------------------------- requests
def _loss_inputs(request: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pseudo-loss inputs by name, built from leaves (as pgcheck's vocabulary does)."""
    import torch

    leaves = {k: _decode(v).requires_grad_(True) for k, v in request["leaves"].items()}
    data = {k: _decode(v) for k, v in request["data"].items()}
    names = request["names"]
    inputs: dict[str, Any] = {}
    actions = data.pop("__actions", data.get("actions"))
    if "logits" in leaves:
        logits = leaves["logits"]
        if "log_probs" in names:
            inputs["log_probs"] = (
                torch.log_softmax(logits, -1).gather(-1, actions[..., None]).squeeze(-1)
            )
        if "logits" in names:
            inputs["logits"] = logits
        if "probs" in names:
            inputs["probs"] = torch.softmax(logits, -1)
        if "dist" in names:
            inputs["dist"] = torch.distributions.Categorical(logits=logits, validate_args=False)
    if "mean" in leaves:
        dist = torch.distributions.Normal(leaves["mean"], leaves["std"], validate_args=False)
        if "log_probs" in names:
            inputs["log_probs"] = dist.log_prob(actions)
        if "dist" in names:
            inputs["dist"] = dist
        for key in ("mean", "std"):
            if key in names:
                inputs[key] = leaves[key]
    if "values" in leaves:
        inputs["values"] = leaves["values"]
    for key, value in data.items():
        if key in names:
            inputs[key] = value.clone() if isinstance(value, torch.Tensor) else value
    return {k: inputs[k] for k in names if k in inputs}, leaves


def _changed_inputs(inputs: dict[str, Any], before: dict[str, Any]) -> str | None:
    import torch

    for name, value in inputs.items():
        if not isinstance(value, torch.Tensor):
            continue
        old = before[name]
        if value._version != old[0] or not torch.equal(value.detach(), old[1]):
            return name
    return None


def _loss(fn: Any, request: dict[str, Any]) -> dict[str, Any]:
    import torch

    inputs, leaves = _loss_inputs(request)
    before = {
        k: (v._version, v.detach().clone())
        for k, v in inputs.items()
        if isinstance(v, torch.Tensor)
    }
    with torch.enable_grad(), _Alarm(request.get("timeout", 30.0)):
        value = fn(**inputs)
        grads: dict[str, Any] = {}
        usable = (
            isinstance(value, torch.Tensor)
            and value.numel() == 1
            and value.requires_grad
            and value.is_floating_point()
        )
        if usable and request.get("grad", True) and leaves:
            names = list(leaves)
            got = torch.autograd.grad(
                value.reshape(()), [leaves[n] for n in names], allow_unused=True
            )
            grads = {
                n: (None if g is None else _encode(g)) for n, g in zip(names, got, strict=True)
            }
    return {"value": _encode(value), "grads": grads, "in_place": _changed_inputs(inputs, before)}


def _call(fn: Any, request: dict[str, Any]) -> dict[str, Any]:
    import torch

    args = [_decode(a) for a in request.get("args", [])]
    kwargs = {k: _decode(v) for k, v in request.get("kwargs", {}).items()}
    with torch.enable_grad(), _Alarm(request.get("timeout", 30.0)):
        value = fn(*args, **kwargs)
        jac: dict[str, Any] = {}
        if isinstance(value, torch.Tensor) and value.requires_grad and value.numel() <= 4096:
            diff = [("a", i, a) for i, a in enumerate(args)] + [
                ("k", k, v) for k, v in kwargs.items()
            ]
            diff = [d for d in diff if isinstance(d[2], torch.Tensor) and d[2].requires_grad]
            if diff:
                flat = value.reshape(-1)
                rows: list[list[Any]] = [[] for _ in diff]
                for j in range(flat.numel()):
                    got = torch.autograd.grad(
                        flat[j], [d[2] for d in diff], retain_graph=True, allow_unused=True
                    )
                    for r, g in zip(rows, got, strict=True):
                        r.append(None if g is None else g.reshape(-1).tolist())
                jac = {f"{kind}:{key}": row for (kind, key, _), row in zip(diff, rows, strict=True)}
    changed = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor) and a._version != 0]
    return {"value": _encode(value), "jacobians": jac, "in_place": changed[:1]}


def _visible(namespace: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    """Run a visible test cell in a fork (its crash or exit stays its own)."""
    read_fd, write_fd = os.pipe()
    try:
        pid = os.fork()
    except OSError:  # no process left (the student's own forks): run it here instead
        os.close(read_fd)
        os.close(write_fd)
        return _visible_here(namespace, request)
    if pid == 0:
        os.close(read_fd)
        stderr = _Capped()
        sys.stdout, sys.stderr = _Capped(), stderr
        error = None
        try:
            with _Alarm(request.get("timeout", 30.0)):
                exec(compile(request["source"], f"<{request['label']}>", "exec"), namespace)  # noqa: S102
        except BaseException as exc:  # noqa: BLE001
            error = _exc_text(exc)
        os.write(write_fd, json.dumps({"error": error, "stderr": bool(stderr.getvalue())}).encode())
        os._exit(0)
    os.close(write_fd)
    data = b""
    while chunk := os.read(read_fd, 65536):
        data += chunk
    os.close(read_fd)
    os.waitpid(pid, 0)
    try:
        return json.loads(data)
    except ValueError:
        return {"error": "the test cell ended the process", "stderr": False}


def _visible_here(namespace: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    stderr = _Capped()
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Capped(), stderr
    error = None
    try:
        with _Alarm(request.get("timeout", 30.0)):
            exec(compile(request["source"], f"<{request['label']}>", "exec"), namespace)  # noqa: S102
    except BaseException as exc:  # noqa: BLE001
        error = _exc_text(exc)
    sys.stdout, sys.stderr = saved
    return {"error": error, "stderr": bool(stderr.getvalue())}


def main() -> None:
    """Run the job; see the module docstring."""
    global _OUT, _IN
    _drop_privileges(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    _OUT = os.fdopen(os.dup(1), "w", buffering=1)
    _IN = os.fdopen(os.dup(0), "r")
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):
        os.dup2(null, fd)
    captured = _Capped()
    sys.stdout = sys.stderr = captured
    sys.stdin = io.StringIO()
    import warnings

    warnings.simplefilter("ignore")
    job = _receive()
    import torch

    torch.set_num_threads(1)
    main_module = type(sys)("__main__")
    namespace = main_module.__dict__
    namespace["__builtins__"] = builtins
    shell = _Shell()
    namespace["get_ipython"] = lambda: shell
    sys.modules["__main__"] = main_module
    errors: list[dict[str, str]] = []
    for index, cell in enumerate(job["cells"]):
        _send({"type": "cell", "index": index})
        try:
            with _Alarm(job.get("cell_timeout", 30.0)):
                exec(compile(cell["source"], f"<{cell['label']}>", "exec"), namespace)  # noqa: S102
        except BaseException as exc:  # noqa: BLE001 - SystemExit too: a notebook survives it
            errors.append({"label": cell["label"], "error": _exc_text(exc)})
    functions = {}
    for name in job.get("functions", []):
        fn = namespace.get(name)
        params: list[list[Any]] | None = None
        try:
            import inspect

            params = [
                [p.name, p.kind.name, p.default is not p.empty]
                for p in inspect.signature(fn).parameters.values()  # type: ignore[arg-type]
            ]
        except Exception:  # noqa: BLE001
            params = None
        functions[name] = {"callable": callable(fn), "params": params}
    _send({"type": "ready", "functions": functions, "cell_errors": errors[:50]})
    while True:
        request = _receive()
        op = request.get("op")
        if op == "quit":
            os._exit(0)
        reply: dict[str, Any] = {"type": "reply", "id": request.get("id")}
        sys.stdout = sys.stderr = printed = _Capped()
        try:
            if op == "visible":
                reply.update(_visible(namespace, request))
            else:
                fn = namespace.get(request["function"])
                reply.update(_loss(fn, request) if op == "loss" else _call(fn, request))
        except BaseException as exc:  # noqa: BLE001
            reply["error"] = {"kind": _error_kind(exc), "message": _exc_text(exc)}
        sys.stdout = sys.stderr = captured
        reply["output"] = printed.getvalue()[:2000]
        _send(reply)


if __name__ == "__main__":
    main()
