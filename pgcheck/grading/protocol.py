"""The parent's side of the call protocol with a jailed child.

The parent never imports, unpickles or calls anything the student made. It sends plain
arrays; it gets back plain JSON, which :func:`decode` turns into fresh tensors/arrays built
here. Two ways of calling the student's function:

* :class:`RemoteFunction`: a parent-built callable with the student's parameter names; a call
  sends the arguments (tensors, arrays, numbers, lists, dicts; any other object -- an
  environment, a callable, a random generator -- stays here as a *handle* whose public
  attributes and calls the child may ask for), gets the value back and, for a tensor on the
  autograd graph, its Jacobian w.r.t. the arguments that required grad, which a small
  :class:`torch.autograd.Function` uses as its backward. Any check's ``measure`` can then run
  here unchanged: its references and verdict never see a student object.
* :class:`RemoteLoss`: the "caller" of :class:`pgcheck.exact.expectation.Evaluator`: one call
  of a pseudo-loss, built in the child from the leaves the parent names, backpropagated to
  those leaves; the engine, expectations and probes stay in the parent.

Every request has an id; a reply with another id, a second reply, or anything but a reply
kills the jail (the parent got exactly the calls it asked for, or nothing).
"""

from __future__ import annotations

import contextlib
import inspect
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from pgcheck.errors import ErrorKind, LearnerError
from pgcheck.grading.jail import Jail, JailDied, SandboxUnavailable

_DTYPES = {
    "float64": torch.float64,
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int64": torch.int64,
    "int32": torch.int32,
    "int16": torch.int16,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "bool": torch.bool,
}
_NP_DTYPES = {"float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint8", "bool"}
MAX_ELEMENTS = 2_000_000
#: seconds the parent waits past a limit the child enforces itself (its alarm for a cell or
#: a call) before it ends the jail: the child's own report of a time-out wins the race, so
#: a looping function gets its "did not finish" and its jail goes on to the next test; code
#: that ignores the alarm is stopped from outside this much later
CHILD_GRACE = 2.0


class ProtocolError(ValueError):
    """A reply that is not plain data of the documented shapes."""


class Opaque:
    """Stands for a value the child could not send as data (its type name only)."""

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name

    def __repr__(self) -> str:
        return f"<a {self.type_name}>"


def opaque_class(type_name: str) -> type:
    """A fresh parent-side class named like the student's type (for error messages)."""
    name = "".join(c for c in str(type_name) if c.isalnum() or c == "_")[:60] or "object"
    return type(name, (Opaque,), {})


# --------------------------------------------------------------------------- encoding
class Handles:
    """Parent objects the child may use by id: public attributes and calls only."""

    def __init__(self) -> None:
        self.objects: dict[int, Any] = {}

    def add(self, obj: Any) -> dict[str, Any]:
        ident = len(self.objects) + 1
        self.objects[ident] = obj
        return {"__t": "handle", "id": ident}


def encode(value: Any, handles: Handles, depth: int = 0) -> Any:
    """Plain JSON for an argument the parent sends (anything else becomes a handle)."""
    if depth > 8:
        raise ProtocolError("argument nested too deep")
    if value is None or isinstance(value, bool | str):
        return value
    if type(value) in (int, float):
        return value
    if isinstance(value, torch.Tensor):
        t = value.detach()
        return {
            "__t": "tensor",
            "dtype": str(t.dtype).replace("torch.", ""),
            "shape": list(t.shape),
            "data": t.reshape(-1).tolist(),
            "rg": bool(value.requires_grad),
        }
    if isinstance(value, np.ndarray | np.generic) and str(np.asarray(value).dtype) in _NP_DTYPES:
        a = np.asarray(value)
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
            "items": [encode(v, handles, depth + 1) for v in value],
        }
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {
            "__t": "dict",
            "items": [[k, encode(v, handles, depth + 1)] for k, v in value.items()],
        }
    return handles.add(value)


def _numbers(data: Any, count: int) -> list[Any]:
    if not isinstance(data, list) or len(data) != count:
        raise ProtocolError("array data of the wrong length")
    for x in data:
        if type(x) not in (int, float, bool):
            raise ProtocolError("array data that is not numbers")
    return data


def _shape(shape: Any) -> tuple[int, ...]:
    if not isinstance(shape, list) or len(shape) > 8:
        raise ProtocolError("bad shape")
    if any(type(n) is not int or n < 0 for n in shape):
        raise ProtocolError("bad shape")
    size = math.prod(shape)
    if size > MAX_ELEMENTS:
        raise ProtocolError("array too large")
    return tuple(shape)


def decode(obj: Any, handles: Handles | None = None, depth: int = 0) -> Any:
    """A fresh parent-built value from the child's plain JSON (never the child's objects)."""
    if depth > 10:
        raise ProtocolError("value nested too deep")
    if obj is None or type(obj) in (bool, int, float, str):
        return obj
    if not isinstance(obj, dict):
        raise ProtocolError("not a value")
    kind = obj.get("__t")
    if kind == "tensor":
        dtype = _DTYPES.get(str(obj.get("dtype")))
        if dtype is None:
            return opaque_class(f"tensor of dtype {obj.get('dtype')}")(str(obj.get("dtype")))
        shape = _shape(obj.get("shape"))
        data = _numbers(obj.get("data"), math.prod(shape))
        return torch.tensor(data, dtype=dtype).reshape(shape)
    if kind == "ndarray":
        if obj.get("dtype") not in _NP_DTYPES:
            raise ProtocolError("bad array dtype")
        shape = _shape(obj.get("shape"))
        data = _numbers(obj.get("data"), math.prod(shape))
        a = np.asarray(data, dtype=obj["dtype"]).reshape(shape)
        return a[()] if obj.get("scalar") is True else a
    if kind in ("list", "tuple"):
        items = obj.get("items")
        if not isinstance(items, list):
            raise ProtocolError("bad list")
        out = [decode(v, handles, depth + 1) for v in items]
        return out if kind == "list" else tuple(out)
    if kind == "dict":
        items = obj.get("items")
        if not isinstance(items, list) or any(
            not isinstance(kv, list) or len(kv) != 2 or not isinstance(kv[0], str) for kv in items
        ):
            raise ProtocolError("bad dict")
        return {k: decode(v, handles, depth + 1) for k, v in items}
    if kind == "handle" and handles is not None:
        ident = obj.get("id")
        if type(ident) is int and ident in handles.objects:
            return handles.objects[ident]
        raise ProtocolError("unknown handle")
    if kind == "other":
        return opaque_class(str(obj.get("type", "object")))(str(obj.get("type", "object")))
    raise ProtocolError("unknown value kind")


# --------------------------------------------------------------------------- session
class Session:
    """A jail whose child has run the answer cells and now answers calls.

    ``deadline`` (a :func:`time.monotonic` time, set by :meth:`budget`) caps every request:
    the calls one test makes share one time limit, as the grader's ``--timeout`` promises
    ("seconds per test"), instead of each call getting it afresh.
    """

    def __init__(self, jail: Jail, functions: dict[str, Any], call_timeout: float) -> None:
        self.jail = jail
        self.functions = functions
        self.call_timeout = call_timeout
        self.next_id = 0
        self.output = ""
        self.deadline: float | None = None

    @contextlib.contextmanager
    def budget(self, seconds: float) -> Iterator[None]:
        """Within this block, all requests together get at most ``seconds``."""
        previous, self.deadline = self.deadline, time.monotonic() + seconds
        try:
            yield
        finally:
            self.deadline = previous

    def request(
        self, message: dict[str, Any], timeout: float, handles: Handles | None = None
    ) -> dict[str, Any]:
        """Send one request; answer its callbacks; return its one reply.

        Any failure of the exchange (a time-out, a wrong id, a broken line, or an exception
        raised here by a caller's time limit) ends the jail.
        """
        self.next_id += 1
        ident = self.next_id
        now = time.monotonic()
        if self.deadline is not None:  # what is left of the test's time limit
            timeout = min(timeout, self.deadline - now)
        timeout = max(timeout, 0.05)
        deadline = now + timeout + CHILD_GRACE
        try:
            self.jail.send(dict(message, id=ident, timeout=timeout))
            while True:
                reply = self.jail.receive(deadline, "while the grader called your function")
                if reply.get("type") == "cb" and handles is not None:
                    self.jail.send(_callback(reply, handles))
                    continue
                if reply.get("type") != "reply" or reply.get("id") != ident:
                    self.jail.kill("answered a call the grader did not make")
                    raise JailDied(self.jail.dead or "protocol")
                out = reply.get("output")
                if isinstance(out, str) and len(self.output) < 2000:
                    self.output += out[: 2000 - len(self.output)]
                return reply
        except JailDied:
            raise
        except BaseException:
            self.jail.kill("was stopped by the grader's time limit")
            raise

    def close(self) -> None:
        self.jail.close()


def _callback(message: dict[str, Any], handles: Handles) -> dict[str, Any]:
    """Serve one attribute read or call of a parent object for the child (public names only)."""
    ident = message.get("handle")
    obj = handles.objects.get(ident) if type(ident) is int else None
    if obj is None:
        return {"type": "cb-reply", "error": "unknown object"}
    try:
        if message.get("call") is True:
            args = [decode(a, handles) for a in message.get("args", [])]
            kwargs = message.get("kwargs", {})
            if not isinstance(kwargs, dict) or any(
                not isinstance(k, str) or k.startswith("_") for k in kwargs
            ):
                raise ProtocolError("bad keyword arguments")
            value = obj(*args, **{k: decode(v, handles) for k, v in kwargs.items()})
        else:
            name = message.get("attr")
            if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
                raise AttributeError("only public attributes")
            value = getattr(obj, name)
        return {"type": "cb-reply", "value": encode(value, handles)}
    except Exception as exc:  # noqa: BLE001 - reported to the student's code as an error
        return {"type": "cb-reply", "error": f"{type(exc).__name__}: {exc}"[:300]}


def _raise_error(reply: dict[str, Any], name: str) -> None:
    """Re-raise a failure the child reported, as a parent-built exception."""
    err = reply.get("error")
    if err is None:
        return
    kind = err.get("kind") if isinstance(err, dict) else None
    message = str(err.get("message", "")) if isinstance(err, dict) else ""
    if kind == "not_implemented":
        raise NotImplementedError(message)
    if kind == "timeout":
        raise TimeoutError(f"{name} did not finish within the time limit")
    raise StudentError(message or "raised an exception")


class StudentError(Exception):
    """An exception raised by the student's function in the jail (its text only)."""


# --------------------------------------------------------------------------- generic calls
class _JacobianFn(torch.autograd.Function):
    """value = f(inputs) with a backward from the Jacobians the child computed."""

    @staticmethod
    def forward(ctx: Any, value: torch.Tensor, jacs: list[Any], *inputs: torch.Tensor) -> Any:
        ctx.jacs = jacs
        ctx.shapes = [x.shape for x in inputs]
        ctx.dtypes = [x.dtype for x in inputs]
        return value.clone()

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> Any:
        grads: list[Any] = [None, None]
        flat = grad_out.reshape(-1).to(torch.float64)
        for jac, shape, dtype in zip(ctx.jacs, ctx.shapes, ctx.dtypes, strict=True):
            if jac is None:
                grads.append(None)
            else:
                grads.append((flat @ jac).reshape(shape).to(dtype))
        return tuple(grads)


def _jacobian(rows: Any, out_size: int, in_size: int) -> torch.Tensor | None:
    if not isinstance(rows, list) or len(rows) != out_size:
        raise ProtocolError("Jacobian of the wrong size")
    if all(r is None for r in rows):
        return None
    mat = torch.zeros(out_size, in_size, dtype=torch.float64)
    for j, row in enumerate(rows):
        if row is not None:
            mat[j] = torch.tensor(_numbers(row, in_size), dtype=torch.float64)
    return mat


class RemoteFunction:
    """Calls the student's function ``name`` in the jail; looks like it to pgcheck's checks."""

    def __init__(self, session: Session, name: str, params: list[list[Any]] | None) -> None:
        self.session = session
        self.name = name
        self.__name__ = name
        self.__qualname__ = name
        if params:
            kinds = {k.name: k for k in inspect._ParameterKind}
            self.__signature__ = inspect.Signature(
                [
                    inspect.Parameter(
                        str(p[0]),
                        kinds.get(str(p[1]), inspect.Parameter.POSITIONAL_OR_KEYWORD),
                        default=None if p[2] else inspect.Parameter.empty,
                    )
                    for p in params
                    if isinstance(p, list) and len(p) == 3 and str(p[0]).isidentifier()
                ]
            )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        handles = Handles()
        message = {
            "op": "call",
            "function": self.name,
            "args": [encode(a, handles) for a in args],
            "kwargs": {k: encode(v, handles) for k, v in kwargs.items()},
        }
        try:
            reply = self.session.request(message, self.session.call_timeout, handles)
        except JailDied as died:
            raise StudentError(f"your function's sandbox ended: {died.reason}") from None
        _raise_error(reply, self.name)
        value = decode(reply.get("value"), handles)
        changed = reply.get("in_place")
        if isinstance(changed, list) and changed and type(changed[0]) is int:
            index = changed[0]
            if 0 <= index < len(args) and isinstance(args[index], torch.Tensor):
                with torch.no_grad():  # mirror the edit: pgcheck's own in-place check reports it
                    args[index].add_(0)
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            return value
        jacs_in = reply.get("jacobians") or {}
        if not isinstance(jacs_in, dict) or not jacs_in:
            return value
        inputs: list[torch.Tensor] = []
        jacs: list[Any] = []
        for index, arg in enumerate(args):
            if isinstance(arg, torch.Tensor) and arg.requires_grad:
                inputs.append(arg)
                jacs.append(_jacobian(jacs_in.get(f"a:{index}"), value.numel(), arg.numel()))
        for key, arg in kwargs.items():
            if isinstance(arg, torch.Tensor) and arg.requires_grad:
                inputs.append(arg)
                jacs.append(_jacobian(jacs_in.get(f"k:{key}"), value.numel(), arg.numel()))
        if not inputs or all(j is None for j in jacs):
            return value.detach().requires_grad_(True) if value.is_floating_point() else value
        return _JacobianFn.apply(value.to(torch.float64).to(value.dtype), jacs, *inputs)


# --------------------------------------------------------------------------- pseudo-loss
class RemoteLoss:
    """The Evaluator's caller: one pseudo-loss call in the jail, gradients to named leaves."""

    def __init__(self, session: Session, name: str) -> None:
        self.session = session
        self.name = name

    def __call__(
        self, inputs: dict[str, Any], leaves: dict[str, torch.Tensor], seconds: float, traj: Any
    ) -> tuple[Any, tuple[torch.Tensor | None, ...] | None]:
        """Send the leaves and data, return (a parent-built stand-in value, leaf gradients)."""
        from pgcheck.exact.expectation import LearnerFailure

        handles = Handles()
        data = {k: encode(v, handles) for k, v in inputs.items() if k not in _DERIVED}
        data["__actions"] = encode(traj.actions, handles)  # log π(a|s) needs the actions
        message = {
            "op": "loss",
            "function": self.name,
            "names": list(inputs),
            "leaves": {k: encode(v.detach(), handles) for k, v in leaves.items()},
            "data": data,
            "grad": True,
        }
        if handles.objects:
            raise ProtocolError("pseudo-loss inputs must be plain data")
        try:
            reply = self.session.request(message, max(seconds, 0.05))
        except JailDied as died:
            kind = ErrorKind.TIMEOUT if "timed out" in died.reason else ErrorKind.EXCEPTION
            raise LearnerFailure(LearnerError(kind, f"your loss {died.reason}")) from None
        err = reply.get("error")
        if isinstance(err, dict):
            kind = {
                "not_implemented": ErrorKind.NOT_IMPLEMENTED,
                "timeout": ErrorKind.TIMEOUT,
            }.get(str(err.get("kind")), ErrorKind.EXCEPTION)
            message_text = str(err.get("message", ""))[:500]
            if kind == ErrorKind.NOT_IMPLEMENTED:
                message_text = (
                    "your loss is not written yet: replace the line "
                    "`raise NotImplementedError()` with your code."
                )
            else:
                message_text = f"your loss raised {message_text}"
            raise LearnerFailure(LearnerError(kind, message_text))
        changed = reply.get("in_place")
        if isinstance(changed, str):
            raise LearnerFailure(
                LearnerError(
                    ErrorKind.IN_PLACE,
                    f"your loss modified its input `{changed[:40]}` in place. Use "
                    "out-of-place operations (x = x * g instead of x *= g) or x.clone().",
                )
            )
        raw = reply.get("value")
        value = decode(raw)
        if isinstance(raw, dict) and raw.get("__t") == "tensor" and isinstance(value, torch.Tensor):
            if raw.get("rg") is True and value.is_floating_point():
                value = value.requires_grad_(True)
        grads_in = reply.get("grads") or {}
        if not isinstance(grads_in, dict):
            raise ProtocolError("bad gradients")
        grads: list[torch.Tensor | None] = []
        for name, leaf in leaves.items():
            g = decode(grads_in.get(name))
            if g is not None and (not isinstance(g, torch.Tensor) or g.shape != leaf.shape):
                raise ProtocolError("a gradient of the wrong shape")
            grads.append(g)
        return value, (tuple(grads) if grads_in else None)


#: inputs the child builds from the leaves (never sent as data)
_DERIVED = frozenset({"log_probs", "logits", "probs", "dist", "mean", "std", "values"})


def start_session(
    jail: Jail,
    cells: list[dict[str, str]],
    functions: list[str],
    *,
    cell_timeout: float,
    startup: float,
    call_timeout: float,
) -> tuple[Session | None, list[dict[str, str]], str, int | None]:
    """Send the job, enforce the per-cell wall limit from outside, wait for "ready".

    The child's own alarm stops a cell at ``cell_timeout``; the parent kills the jail two
    seconds later (a cell can ignore SIGALRM). Returns (session or None, the cell errors the
    child reported, why it did not start, the index of the cell that was running then).

    Raises:
        SandboxUnavailable: the jail ended, or broke the protocol, before its first cell,
            when no submitted code had run: the machine, not the submission, is at fault, and
            no grade can be given (the grading run stops; nothing is written).
    """
    seen = -1
    try:
        jail.send({"cells": cells, "cell_timeout": cell_timeout, "functions": functions})
        deadline = time.monotonic() + startup + cell_timeout
        current = "while starting"
        while True:
            msg = jail.receive(deadline, current)
            if msg.get("type") == "cell" and type(msg.get("index")) is int:
                index = msg["index"]
                if not seen < index < len(cells):
                    jail.kill("reported cells out of order")
                    return None, [], jail.dead or "", max(seen, 0)
                seen = index
                current = f"after {cell_timeout:g} s in {cells[index]['label']}"
                deadline = time.monotonic() + cell_timeout + CHILD_GRACE
                continue
            if msg.get("type") == "ready":
                found = msg.get("functions")
                errors = msg.get("cell_errors")
                if not isinstance(found, dict):
                    jail.kill("sent a bad ready message")
                    return None, [], jail.dead or "", None
                clean_errors = [
                    {"label": str(e.get("label", ""))[:100], "error": str(e.get("error", ""))[:400]}
                    for e in (errors if isinstance(errors, list) else [])
                    if isinstance(e, dict)
                ]
                return Session(jail, found, call_timeout), clean_errors, "", None
            where = (
                "its first cell" if seen < 0 else f"its cells were done (in {cells[seen]['label']})"
            )
            jail.kill(f"sent something before {where}")
            raise JailDied(jail.dead or "")
    except JailDied as died:
        if seen < 0:  # nothing submitted has run: the jail itself cannot start here
            detail = f": {jail.stderr_tail}" if jail.stderr_tail else ""
            raise SandboxUnavailable(
                "refusing to grade: a jail stopped before running any cell "
                f"({died.reason}{detail}). "
                "No submitted code had run, so the sandbox or the interpreter is at fault "
                "(can bubblewrap create namespaces here, can an unprivileged uid read the "
                "Python environment, do the resource limits leave room for torch?)"
            ) from None
        return None, [], died.reason, seen


def remote_functions(session: Session, names: list[str]) -> dict[str, Callable[..., Any] | None]:
    """Parent-side stand-ins for the student's functions (None when not defined)."""
    out: dict[str, Callable[..., Any] | None] = {}
    for name in names:
        info = session.functions.get(name)
        if not isinstance(info, dict) or info.get("callable") is not True:
            out[name] = None
            continue
        params = info.get("params")
        out[name] = RemoteFunction(session, name, params if isinstance(params, list) else None)
    return out
