"""Instructor commands: ``python -m pgcheck.grading {release,autograde,grade}``.

* ``release [NAME ...]``: check the grading contract of every source notebook, then
  regenerate the student notebooks in ``notebooks/`` with ``nbgrader generate_assignment``.
* ``autograde NAME [--student ID ...]``: the trusted grader runs every submission in its own
  jail; its scores go into the gradebook (through nbgrader's API: nbgrader never executes a
  submission), ``course/trusted/NAME.csv`` and the notebooks for ``generate_feedback``.
* ``grade SOURCE SUBMISSION``: trusted-grade one notebook file and print the cell grades.
* ``gradescope-bundle NAME OUT.zip`` / ``gradescope-run``: a Gradescope autograder that runs
  this same sandboxed grader on one submission (see :mod:`pgcheck.grading.gradescope`).

Run them from the course root (the folder with ``nbgrader_config.py``) or pass ``--root``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pgcheck.grading.feedback import write_feedback_notebooks
from pgcheck.grading.gradebook import plain_text, record_in_gradebook, summary_lines, write_csv
from pgcheck.grading.jail import SandboxUnavailable
from pgcheck.grading.pool import worker_count
from pgcheck.grading.records import DEFAULT_CELL_TIMEOUT, DEFAULT_TIMEOUT, CellGrade, Submission
from pgcheck.grading.spec import GradingSpecError, assignment_notebooks, parse_source


def course_config(root: Path) -> Any:
    """nbgrader's CourseDirectory for the course at ``root`` (reads its nbgrader_config.py,
    which names the course root as ``"."``: call it with ``root`` as the working directory
    where the root matters)."""
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    return CourseDirectory(config=config), config


def _with_interpreter_on_path() -> None:
    """nbgrader's gradebook runs ``alembic`` from PATH: put this interpreter's bin/ first."""
    bindir = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if bindir not in path.split(os.pathsep):
        os.environ["PATH"] = bindir + (os.pathsep + path if path else "")


def _generate_assignment(name: str, root: Path) -> int:
    """``nbgrader generate_assignment NAME --force`` through nbgrader's API, in this process
    (a second interpreter would import nbgrader again: about a second per assignment)."""
    from nbgrader.apps.api import NbGraderAPI

    _with_interpreter_on_path()  # a new gradebook asks ``alembic`` for its version
    print(f"$ nbgrader generate_assignment {name} --force", flush=True)
    with contextlib.chdir(root):
        coursedir, config = course_config(root)
        result = NbGraderAPI(coursedir, config=config).generate_assignment(name, force=True)
    print(result.get("log", ""), end="", file=sys.stderr, flush=True)
    if not result.get("success"):
        print(result.get("error", "generate_assignment failed"), file=sys.stderr, flush=True)
        return 1
    return 0


def _assignments(root: Path, source_directory: str, names: Sequence[str]) -> list[str]:
    found = sorted(
        p.name
        for p in (root / source_directory).iterdir()
        if p.is_dir() and not p.name.startswith((".", "_"))
    )
    if not names:
        return found
    missing = [n for n in names if n not in found]
    if missing:
        raise SystemExit(f"no such assignment in {source_directory}/: {', '.join(missing)}")
    return list(names)


def cmd_release(args: argparse.Namespace) -> int:
    """Check the contract, then regenerate the student notebooks of the assignments."""
    root = Path(args.root).resolve()
    coursedir, _ = course_config(root)
    names = _assignments(root, coursedir.source_directory, args.names)
    problems = []
    for name in names:
        for path in assignment_notebooks(root / coursedir.source_directory / name):
            try:
                parse_source(path)
            except GradingSpecError as exc:
                problems.append(str(exc))
    if problems:
        print("the grading contract is broken:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    status = 0
    for name in names:
        code = _generate_assignment(name, root)
        status |= code
        if code == 0:
            for path in assignment_notebooks(root / coursedir.release_directory / name):
                stamp_kernel_metadata(path)
    return status


def _say_unsandboxed() -> None:
    bar = "!" * 78
    print(
        f"{bar}\nWARNING: --no-sandbox: student code runs WITHOUT the jail, with your rights.\n"
        "It can read solutions/, change the gradebook and other submissions, and outlive\n"
        f"the grader. Use this only for notebooks you wrote yourself.\n{bar}",
        file=sys.stderr,
        flush=True,
    )


def _grade(items: list[tuple[Submission, Any]], args: argparse.Namespace) -> list[CellGrade] | None:
    """Run the trusted grader; None (after saying why and how to fix it) if it cannot start."""
    from pgcheck.grading.pool import grade_submissions

    if args.no_sandbox:
        _say_unsandboxed()
    try:
        return grade_submissions(
            items,
            timeout=args.timeout,
            cell_timeout=args.cell_timeout,
            preload=args.preload,
            jobs=args.jobs,
            sandbox=not args.no_sandbox,
        )
    except SandboxUnavailable as exc:
        print(str(exc), file=sys.stderr)
        return None


def kernel_metadata() -> dict[str, Any]:
    """The notebook metadata JupyterLab writes when it opens a notebook with this kernel.

    A notebook that already carries exactly this ``kernelspec`` and ``language_info`` is not
    marked modified when Lab opens it (Lab overwrites both from the kernel's info reply).
    ``language_info.version`` is the releasing interpreter's Python version.
    """
    import platform

    return {
        "kernelspec": {
            "display_name": "Python 3 (ipykernel)",
            "language": "python",
            "name": "python3",
        },
        "language_info": {
            "codemirror_mode": {"name": "ipython", "version": 3},
            "file_extension": ".py",
            "mimetype": "text/x-python",
            "name": "python",
            "nbconvert_exporter": "python",
            "pygments_lexer": "ipython3",
            "version": platform.python_version(),
        },
    }


def stamp_kernel_metadata(path: Path) -> None:
    """Give a released notebook the kernel metadata Lab would write (see kernel_metadata)."""
    import nbformat

    nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    wanted = kernel_metadata()
    if all(nb.metadata.get(k) == v for k, v in wanted.items()):
        return
    nb.metadata.update(wanted)
    nbformat.write(nb, path)


def cmd_autograde(args: argparse.Namespace) -> int:
    """Trusted-grade every submission in the jail; scores into the gradebook and a CSV.

    nbgrader never executes a submission: the scores go into the gradebook through its API
    and the notebooks for ``nbgrader generate_feedback`` are written here, unexecuted, with
    each test cell's trusted reason as its output.
    """
    root = Path(args.root).resolve()
    os.chdir(root)
    coursedir, config = course_config(root)
    name = args.assignment
    source_dir = root / coursedir.source_directory / name
    if not source_dir.is_dir():
        raise SystemExit(f"no such assignment: {source_dir}")
    submitted = root / coursedir.submitted_directory
    students = (
        args.student
        or sorted(
            p.name for p in submitted.iterdir() if (p / name).exists() or (p / name).is_symlink()
        )
        if submitted.is_dir()
        else []
    )
    if not students:
        print(f"no submissions of {name} in {submitted}")
        return 0
    started = time.monotonic()
    specs = [parse_source(p) for p in assignment_notebooks(source_dir)]
    items = []
    for student in students:
        for spec in specs:
            path = submitted / student / name / spec.path.name
            items.append((Submission(student, name, path, submitted / student), spec))
    print(
        f"trusted grader: {len(items)} notebook(s), {worker_count(args.jobs, len(items))} "
        "worker(s)",
        flush=True,
    )
    grades = _grade(items, args)
    if grades is None:
        return 3
    csv_path = write_csv(grades, args.csv or root / "course" / "trusted" / f"{name}.csv")
    _with_interpreter_on_path()
    written = record_in_gradebook(grades, coursedir.db_url)
    write_feedback_notebooks(
        grades, items, root / coursedir.autograded_directory, root / coursedir.release_directory
    )
    print("\n".join(summary_lines(grades)))
    print(
        f"{written} trusted grades written to {coursedir.db_url}; table: {csv_path}; "
        f"{time.monotonic() - started:.1f} s"
    )
    return 0


def cmd_grade(args: argparse.Namespace) -> int:
    """Trusted-grade one notebook file against its source and print the grades as JSON."""
    spec = parse_source(args.source)
    path = Path(args.submission)
    sub = Submission(args.student, Path(args.source).parent.name, path, path.parent)
    grades = _grade([(sub, spec)], args)
    if grades is None:
        return 3
    rows = [{k: (plain_text(v) if isinstance(v, str) else v) for k, v in asdict(g).items()}
            for g in grades]  # fmt: skip
    print(json.dumps(rows, indent=1))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m pgcheck.grading``."""
    parser = argparse.ArgumentParser(
        prog="python -m pgcheck.grading", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--jobs",
            type=int,
            default=None,
            help="worker processes grading at once (default: CPUs, at most one per notebook)",
        )
        p.add_argument(
            "--timeout",
            type=float,
            default=DEFAULT_TIMEOUT,
            help="seconds per test (default %(default)s)",
        )
        p.add_argument(
            "--cell-timeout",
            type=float,
            default=DEFAULT_CELL_TIMEOUT,
            help="seconds per answer cell inside the child (default %(default)s)",
        )
        p.add_argument(
            "--no-sandbox",
            action="store_true",
            help="UNSAFE: run student code without the jail (only for your own notebooks)",
        )
        p.add_argument(
            "--preload",
            action="append",
            default=[],
            metavar="FILE",
            help="trusted Python file that registers extra checks (repeatable)",
        )

    p = sub.add_parser("release", help="regenerate the student notebooks from solutions/")
    p.add_argument("names", nargs="*", help="assignments (default: all in solutions/)")
    p.add_argument("--root", default=".", help="course root (default: current directory)")
    p.set_defaults(func=cmd_release)

    p = sub.add_parser("autograde", help="nbgrader autograde + trusted isolated grades")
    p.add_argument("assignment")
    p.add_argument(
        "--student",
        action="append",
        default=[],
        help="only this student (repeatable; default: every submission)",
    )
    p.add_argument("--root", default=".", help="course root (default: current directory)")
    p.add_argument(
        "--csv",
        default=None,
        help="where to write the grade table (default course/trusted/NAME.csv)",
    )
    p.add_argument(
        "--skip-nbgrader",
        action="store_true",
        help="accepted for old scripts; nbgrader never executes submissions any more",
    )
    common(p)
    p.set_defaults(func=cmd_autograde)

    p = sub.add_parser("grade", help="trusted-grade one notebook file, print JSON")
    p.add_argument("source", help="the instructor's notebook in solutions/")
    p.add_argument("submission", help="the student's notebook")
    p.add_argument("--student", default="student")
    common(p)
    p.set_defaults(func=cmd_grade)

    from pgcheck.grading import gradescope

    gradescope.add_commands(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m pgcheck.grading``."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))
