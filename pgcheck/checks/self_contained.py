"""A graded answer is self-contained: nothing it uses may come from pgcheck or pgcourse.

The grader runs the answer cells in a jail without pgcheck (the answer key) and without the
course library pgcourse (which imports pgcheck and holds earlier notebooks' answers, such as
``collect_episode``). A notebook function that reads a global bound to something from
either package would pass its instant feedback in the learner's kernel, then fail its grade
with a ``NameError``. :func:`borrowed_names` finds such names before a check runs, so that
the check fails at once with what to change: the feedback, the visible test and the hidden
test agree with the grade (one verdict).

Only functions defined in a notebook (``__module__ == "__main__"``) are looked into, with
the notebook functions they call; a name counts when the bytecode loads it as a global
(``LOAD_GLOBAL``/``LOAD_NAME``), so an attribute such as ``rewards.cumsum`` never does.
"""

from __future__ import annotations

import dis
import functools
import types
from collections.abc import Callable, Iterator
from typing import Any

#: packages the grader's jail does not have
NOT_IN_THE_JAIL = ("pgcheck", "pgcourse")
NOTEBOOK_MODULE = "__main__"


def _loaded_globals(code: types.CodeType) -> Iterator[str]:
    """The global names a code object (and every code object nested in it) loads."""
    for instruction in dis.get_instructions(code):
        if instruction.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
            yield str(instruction.argval)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _loaded_globals(const)


def _package(obj: Any) -> str:
    """The top-level package an object comes from ('' if it cannot be told)."""
    name: Any
    try:
        if isinstance(obj, types.ModuleType):
            name = obj.__name__
        else:
            name = getattr(obj, "__module__", None)
        return name.split(".", 1)[0] if isinstance(name, str) else ""
    except Exception:  # noqa: BLE001 - a learner object whose attributes raise: not ours
        return ""


def _unwrapped(fn: Any) -> Any:
    """The plain function behind a bound method or a functools.partial."""
    if isinstance(fn, types.MethodType):
        return fn.__func__
    if isinstance(fn, functools.partial):
        return fn.func
    return fn


def borrowed_names(fn: Callable[..., Any]) -> list[tuple[str, str]]:
    """``(name, package)`` for each global from :data:`NOT_IN_THE_JAIL` that ``fn``, or a
    notebook function it reads, uses; sorted, one entry per name."""
    found: dict[str, str] = {}
    seen: set[int] = set()
    todo: list[Any] = [fn]
    while todo:
        f = _unwrapped(todo.pop())
        if id(f) in seen or not isinstance(f, types.FunctionType):
            continue
        seen.add(id(f))
        if f.__module__ != NOTEBOOK_MODULE:
            continue
        for name in _loaded_globals(f.__code__):
            if name not in f.__globals__:
                continue
            value = f.__globals__[name]
            package = _package(value)
            if package in NOT_IN_THE_JAIL:
                found.setdefault(name, package)
            else:
                todo.append(value)
        for cell in f.__closure__ or ():
            try:
                todo.append(cell.cell_contents)
            except ValueError:  # an empty cell
                continue
    return sorted(found.items())


def borrowed_message(public: str, borrowed: list[tuple[str, str]]) -> str:
    """What to change when an answer uses names the grader does not have."""
    names = ", ".join(f"`{name}` (from {package})" for name, package in borrowed)
    return (
        f"pgcheck.{public}: your code uses {names}. Graded answers run without pgcheck and "
        "the course library pgcourse, so this would fail when graded: write what you need "
        "in your answer cell."
    )
