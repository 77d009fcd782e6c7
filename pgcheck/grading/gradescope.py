"""A Gradescope autograder that runs this same sandboxed grader on one submission.

``python -m pgcheck.grading gradescope-bundle NAME OUT.zip`` writes a zip with Gradescope's
documented layout (unpacked by Gradescope into ``/autograder/source``):

* ``setup.sh``: installs Python 3.11, bubblewrap, torch (CPU) and this course's pgcheck;
* ``run_autograder``: ``python -m pgcheck.grading gradescope-run NAME``, which grades the
  notebook in ``/autograder/submission`` against ``source/solutions/NAME`` -- in the jail,
  exactly as ``autograde`` does -- and writes ``/autograder/results/results.json``;
* ``course/``: pyproject.toml, pgcheck/ and solutions/NAME (the answer key stays outside the
  jail, as on the instructor's machine).

``PGCHECK_AUTOGRADER_ROOT`` (default ``/autograder``) moves that root, for a local run.
results.json follows Gradescope's schema: ``score``, ``execution_time``, ``output``,
``stdout_visibility`` and ``tests`` (``name``, ``number``, ``score``, ``max_score``,
``output``, ``visibility``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

SETUP_SH = """#!/usr/bin/env bash
# Gradescope: runs once when the autograder image is built.
set -euo pipefail
apt-get update
apt-get install -y bubblewrap python3.11 python3.11-venv
python3.11 -m venv /autograder/venv
/autograder/venv/bin/pip install --quiet "torch==2.13.0" \\
    --index-url https://download.pytorch.org/whl/cpu
/autograder/venv/bin/pip install --quiet /autograder/source/course
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope: runs for every submission. Grades it in the sandbox, writes results.json.
set -uo pipefail
ROOT="${{PGCHECK_AUTOGRADER_ROOT:-/autograder}}"
PY="${{PGCHECK_PYTHON:-$ROOT/venv/bin/python}}"
cd "$ROOT/source/course"
exec "$PY" -m pgcheck.grading gradescope-run {name} --root "$ROOT" "$@"
"""


def build_bundle(course_root: Path, name: str, out: Path) -> Path:
    """Write the autograder zip for assignment ``name`` of the course at ``course_root``."""
    course_root = Path(course_root).resolve()
    solutions = course_root / "solutions" / name
    if not solutions.is_dir():
        raise SystemExit(f"no such assignment: {solutions}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    package = Path(__file__).resolve().parents[1]

    def add_tree(zf: zipfile.ZipFile, folder: Path, arc: str) -> None:
        for path in sorted(folder.rglob("*")):
            if (
                path.is_file()
                and "__pycache__" not in path.parts
                and ".ipynb_checkpoints" not in path.parts
            ):
                zf.write(path, f"{arc}/{path.relative_to(folder)}")

    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for filename, text in (
            ("setup.sh", SETUP_SH),
            ("run_autograder", RUN_AUTOGRADER.format(name=name)),
        ):
            info = zipfile.ZipInfo(filename)
            info.external_attr = 0o755 << 16
            zf.writestr(info, text)
        for extra in ("pyproject.toml", "README.md"):
            if (package.parent / extra).is_file():
                zf.write(package.parent / extra, f"course/{extra}")
        add_tree(zf, package, "course/pgcheck")
        add_tree(zf, solutions, f"course/solutions/{name}")
    return out


def _find_notebook(submission: Path, notebook: str) -> Path | None:
    exact = submission / notebook
    if exact.exists() or exact.is_symlink():
        return exact
    found = sorted(p for p in submission.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    return found[0] if len(found) == 1 else None


def run(name: str, root: Path, *, no_sandbox: bool = False, timeout: float = 60.0,
        cell_timeout: float = 30.0) -> dict[str, Any]:  # fmt: skip
    """Grade ``root/submission`` and write ``root/results/results.json``; returns the results."""
    from pgcheck.grading.gradebook import plain_text
    from pgcheck.grading.jail import SandboxUnavailable
    from pgcheck.grading.pool import grade_submissions
    from pgcheck.grading.records import Submission
    from pgcheck.grading.spec import assignment_notebooks, parse_source

    started = time.monotonic()
    source_dir = root / "source" / "course" / "solutions" / name
    submission = root / "submission"
    results_path = root / "results" / "results.json"
    results_path.parent.mkdir(parents=True, exist_ok=True)
    tests: list[dict[str, Any]] = []
    output = ""
    try:
        specs = [parse_source(p) for p in assignment_notebooks(source_dir)]
        items = []
        for spec in specs:
            path = _find_notebook(submission, spec.path.name) or submission / spec.path.name
            items.append((Submission("gradescope", name, path, submission), spec))
        grades = grade_submissions(
            items, timeout=timeout, cell_timeout=cell_timeout, jobs=1, sandbox=not no_sandbox
        )
        for number, g in enumerate(grades, 1):
            tests.append(
                {
                    "name": f"{g.notebook}: {g.grade_id}",
                    "number": str(number),
                    "score": g.score,
                    "max_score": g.points,
                    "output": plain_text(
                        f"{g.status}: {g.message}" if g.message else g.status, 2000
                    ),
                    "visibility": "visible",
                }
            )
    except SandboxUnavailable as exc:
        output = f"The autograder could not start its sandbox, so nothing was graded: {exc}"
    results = {
        "score": round(sum(t["score"] for t in tests), 6),
        "execution_time": round(time.monotonic() - started, 1),
        "output": output or f"Graded in a sandbox by pgcheck ({len(tests)} graded cells).",
        "stdout_visibility": "hidden",
        "tests": tests,
    }
    results_path.write_text(json.dumps(results, indent=1))
    return results


def cmd_bundle(args: argparse.Namespace) -> int:
    """``gradescope-bundle NAME OUT.zip``."""
    out = build_bundle(Path(args.root), args.assignment, Path(args.out))
    print(f"Gradescope autograder for {args.assignment}: {out}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """``gradescope-run NAME``: inside the Gradescope container."""
    root = Path(args.root or os.environ.get("PGCHECK_AUTOGRADER_ROOT", "/autograder"))
    results = run(args.assignment, root, no_sandbox=args.no_sandbox, timeout=args.timeout,
                  cell_timeout=args.cell_timeout)  # fmt: skip
    print(f"score {results['score']}", file=sys.stdout)
    return 0


def add_commands(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register ``gradescope-bundle`` and ``gradescope-run`` on the grading CLI."""
    p = sub.add_parser("gradescope-bundle", help="build a Gradescope autograder zip")
    p.add_argument("assignment")
    p.add_argument("out", help="where to write the zip")
    p.add_argument("--root", default=".", help="course root (default: current directory)")
    p.set_defaults(func=cmd_bundle)
    p = sub.add_parser("gradescope-run", help="(in the autograder) grade /autograder/submission")
    p.add_argument("assignment")
    p.add_argument(
        "--root",
        default=None,
        help="autograder root (default $PGCHECK_AUTOGRADER_ROOT or /autograder)",
    )
    common(p)
    p.set_defaults(func=cmd_run)
