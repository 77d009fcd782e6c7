"""Grading: the one-line entry point of hidden test cells and the trusted isolated grader.

Hidden test cells of the course notebooks contain exactly one call::

    pgcheck.grading.hidden_test("<check name>", "<function name>", **literal_options)

Inside the student's kernel (``nbgrader autograde``, or a learner running the cell) this runs
the registered check on the learner's function and raises ``AssertionError("hidden test
failed")`` -- nothing else -- when it does not pass. That in-kernel score can be faked from
inside the notebook, so instructors grade with the trusted grader
(``python -m pgcheck.grading autograde``), one module per step:

* :mod:`~pgcheck.grading.spec`: the instructor's notebook -> hidden tests, setup, answer ids;
* :mod:`~pgcheck.grading.submission`: a submitted notebook read as text (answers, helpers);
* :mod:`~pgcheck.grading.jail`: the bubblewrap sandbox every execution of student code uses;
* :mod:`~pgcheck.grading.child`: the only code in the jail; it runs the answer cells and
  *calls* the student's functions on plain inputs;
* :mod:`~pgcheck.grading.protocol`: the grader's side of those calls (plain data only);
* :mod:`~pgcheck.grading.grader`: fresh instances, checks, references and verdicts, here;
* :mod:`~pgcheck.grading.pool`: many notebooks, on worker processes;
* :mod:`~pgcheck.grading.records`: the plain records in and out (submissions, grades);
* :mod:`~pgcheck.grading.gradebook`: nbgrader's gradebook, the CSV, sanitised text;
* :mod:`~pgcheck.grading.feedback`: feedback notebooks, hidden tests hidden;
* :mod:`~pgcheck.grading.cli`, :mod:`~pgcheck.grading.gradescope`: the commands.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["hidden_test"]

_FAILED = "hidden test failed"


def _find_function(function_name: str, caller_globals: dict[str, Any]) -> Any:
    """The learner's function: the caller's global of that name, else ``__main__``'s."""
    if function_name in caller_globals:
        return caller_globals[function_name]
    main = sys.modules.get("__main__")
    if main is not None and hasattr(main, function_name):
        return getattr(main, function_name)
    return None


def hidden_test(check: str, function_name: str, **options: Any) -> None:
    """Run the registered check ``check`` on the learner's function ``function_name``.

    Args:
        check: a key of :data:`pgcheck.checks.registry.REGISTRY` (e.g. ``"pseudo_loss"``).
        function_name: the name of the learner's function in the notebook's namespace.
        **options: literal options passed to the check.

    Returns:
        None (so that nbgrader never reads the cell's value as partial credit).

    Raises:
        AssertionError: ``"hidden test failed"``, with no further detail, when the function is
            missing or the check does not pass. Nothing is written to stdout or stderr.
    """
    __tracebackhide__ = True  # noqa: F841 - IPython hides this frame in tracebacks
    passed = False
    try:
        from pgcheck.checks.registry import REGISTRY
        from pgcheck.sandbox import quiet

        with quiet():
            caller = sys._getframe(1).f_globals
            fn = _find_function(function_name, caller)
            registered = REGISTRY.get(check)
            if callable(fn) and registered is not None:
                report = registered(fn, **options)
                passed = type(report.passed) is bool and report.passed is True
    except Exception:  # noqa: BLE001 - any failure is a failed hidden test, with no detail
        passed = False
    if not passed:
        raise AssertionError(_FAILED) from None
    return None
