"""Command line: ``pgcheck path/to/file.py:function`` prints the report.

Exit status: 0 passed, 1 failed, 2 error (including a file or function that cannot be loaded).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pgcheck.checks.base import validate_timeout
from pgcheck.checks.registry import REGISTRY
from pgcheck.errors import ErrorKind
from pgcheck.report import Report
from pgcheck.sandbox import call_learner


def _load(target: str, seconds: float) -> tuple[Any, str | None]:
    path_text, sep, name = target.rpartition(":")
    if not sep or not path_text or not name:
        return None, f"expected path/to/file.py:function, got {target!r}"
    path = Path(path_text)
    if not path.is_file():
        return None, f"no such file: {path}"
    spec = importlib.util.spec_from_file_location(f"_pgcheck_target_{path.stem}", path)
    if spec is None or spec.loader is None:
        return None, f"cannot import {path}"
    loader = spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent.resolve()))
    try:
        loaded = call_learner(
            lambda: loader.exec_module(module),
            {},
            seconds=seconds,
            name=f"importing {path.name}",
        )
    finally:
        sys.path.pop(0)
    if loaded.error is not None and loaded.error.kind not in (ErrorKind.GLOBAL_STATE,):
        return None, loaded.error.message
    fn = getattr(module, name, None)
    if not callable(fn):
        return None, f"{path.name} defines no function named {name!r}"
    return fn, None


def main(argv: Sequence[str] | None = None) -> int:
    """Run a check on a function in a file; print the report; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="pgcheck",
        description="Check that the gradient of your pseudo-loss is a correct "
        "policy gradient (or run another pgcheck check).",
    )
    parser.add_argument("target", help="path/to/file.py:function")
    parser.add_argument(
        "--check",
        default="pseudo_loss",
        choices=sorted(REGISTRY),
        help="which check to run (default: pseudo_loss)",
    )
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an option of the check, VALUE as JSON (e.g. "
        "accept_missing_gamma_t=true, problem='\"mdp-linear\"')",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        help="CPU seconds for the function's calls (default 5)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    options: dict[str, Any] = {"timeout": args.timeout}
    for item in args.option:
        key, _, value = item.partition("=")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    bad = validate_timeout("cli", args.timeout)
    fn: Any = None
    problem: str | None
    if bad is not None:
        problem = bad.replace("pgcheck.cli: timeout=", "--timeout ")
    else:
        fn, problem = _load(args.target, args.timeout)
    if problem is not None or fn is None:
        report = Report.error(problem or "nothing to check", check=args.check)
    else:
        report = REGISTRY[args.check](fn, **options)
    try:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) if args.json else report)
        sys.stdout.flush()
    except BrokenPipeError:  # e.g. piped into `head`
        sys.stdout = None
    if report.passed:
        return 0
    return 2 if report.verdict == "error" else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
