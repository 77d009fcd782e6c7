"""The trusted grader: grades that cannot be faked from inside the student's notebook.

For every submitted notebook and every hidden test call parsed from the instructor's source
notebook (never from the student's file), a separate isolated child
(:func:`pgcheck.grading.isolated.run_child`) runs the instructor's setup code and only the
student's answer cells, then the registered check's ``measure`` on the learner's function,
and sends back plain JSON. The parent calls the check's ``judge`` on those plain numbers:
the verdict never depends on an object the learner's code built.

Visible test cells are re-run in one more isolated child; a visible test earns its points
only if it passes there *and* every hidden test of the functions it uses passed (so a
float subclass that fools an ``assert`` earns nothing).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pgcheck.grading.isolated import ChildOutcome, run_child
from pgcheck.grading.notebook import NotebookSpec, parse_source, student_answers

DEFAULT_TIMEOUT = 60.0
DEFAULT_CELL_TIMEOUT = 30.0


@dataclass
class CellGrade:
    """The trusted score of one graded cell of one submission."""

    student: str
    assignment: str
    notebook: str
    grade_id: str
    kind: str  # "hidden" or "visible"
    points: float
    score: float
    status: str  # "passed", "failed", or why it could not be graded
    message: str = ""
    seconds: float = 0.0


@dataclass
class Submission:
    """One student's copy of one notebook."""

    student: str
    assignment: str
    path: Path


def _steps(spec: NotebookSpec, answers: dict[str, list[str]]) -> list[dict[str, Any]]:
    steps = []
    for step in spec.steps:
        if step.kind == "answer":
            sources = answers.get(step.label, [])
            steps.extend({"label": f"answer {step.label}" + (f" copy {i + 1}" if i else ""),
                          "sources": [src]} for i, src in enumerate(sources))
        else:
            steps.append({"label": step.label, "sources": list(step.sources)})
    return steps


def _preloaded(preload: Sequence[str | Path]) -> list[str]:
    paths = [str(Path(p).resolve()) for p in preload]
    for path in paths:
        _import_file(path)
    return paths


def _import_file(path: str) -> None:
    """Import a preload file in the parent too (so its checks' ``judge`` is available)."""
    import importlib.util
    import sys

    name = Path(path).stem
    if name in sys.modules and getattr(sys.modules[name], "__file__", None) == path:
        return
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)


def _judge(check: str, payload: dict[str, Any], options: dict[str, Any]) -> tuple[bool, str]:
    """Call the check's judge on the child's plain measurement; never raises."""
    import pgcheck  # noqa: F401 - registers the checks
    from pgcheck.registry import REGISTRY
    from pgcheck.sandbox import quiet

    registered = REGISTRY.get(check)
    if registered is None:
        return False, f"no check named {check!r} in the grader"
    try:
        with quiet():
            report = registered.judge(payload["measurement"], **options)
        passed = getattr(report, "passed", False)
        return (type(passed) is bool and passed), str(getattr(report, "message", ""))
    except Exception as exc:  # noqa: BLE001 - a malformed measurement is a failed test
        return False, f"measurement rejected: {type(exc).__name__}"


def _outcome_message(outcome: ChildOutcome) -> tuple[str, str]:
    if outcome.status != "ok":
        return outcome.status, outcome.detail
    status = str(outcome.payload.get("status", "bad-output"))
    return status, str(outcome.payload.get("message", ""))[:500]


def plan(submission: Submission, spec: NotebookSpec, *, preload: Sequence[str] = (),
         cell_timeout: float = DEFAULT_CELL_TIMEOUT) -> list[dict[str, Any]]:
    """The child jobs for one submitted notebook: one per hidden test, one for visible tests."""
    answers = student_answers(submission.path)
    steps = _steps(spec, answers)
    base = {"steps": steps, "preload": list(preload), "cell_timeout": cell_timeout,
            "sys_path": [str(spec.path.parent.resolve())]}
    jobs = [dict(base, task={"type": "measure", "check": test.check,
                             "function": test.function_name, "options": repr(test.options)})
            for test in spec.hidden]
    if spec.visible:
        jobs.append(dict(base, task={"type": "visible", "cells": [
            {"grade_id": v.grade_id, "label": f"test {v.grade_id}", "source": v.source}
            for v in spec.visible]}))
    return jobs


def assemble(submission: Submission, spec: NotebookSpec,
             outcomes: list[ChildOutcome]) -> list[CellGrade]:
    """Turn the children's outcomes (in :func:`plan` order) into trusted cell grades."""
    grades: list[CellGrade] = []
    passed_functions: dict[str, bool] = {}
    for test, outcome in zip(spec.hidden, outcomes, strict=False):
        status, message = _outcome_message(outcome)
        passed = False
        if status == "ok":
            passed, message = _judge(test.check, outcome.payload, test.options)
            status = "passed" if passed else "failed"
        passed_functions[test.function_name] = passed_functions.get(
            test.function_name, True) and passed
        grades.append(CellGrade(submission.student, submission.assignment, spec.name,
                                test.grade_id, "hidden", test.points,
                                test.points if passed else 0.0, status, message,
                                round(outcome.seconds, 3)))
    if spec.visible:
        outcome = outcomes[len(spec.hidden)] if len(outcomes) > len(spec.hidden) else \
            ChildOutcome("crashed", detail="not run")
        status, message = _outcome_message(outcome)
        results = {r.get("grade_id"): r for r in outcome.payload.get("visible", [])
                   if isinstance(r, dict)} if status == "ok" else {}
        for test in spec.visible:
            result = results.get(test.grade_id)
            cell_status, cell_message = status, message
            passed = False
            if status == "ok":
                if result is None:
                    cell_status, cell_message = "crashed", "no result"
                elif result.get("error") is not None:
                    cell_status, cell_message = "failed", f"raised {result.get('error')}"
                elif result.get("stderr") is not False:
                    cell_status, cell_message = "failed", "wrote to stderr"
                else:
                    failing = sorted(f for f in test.functions if not passed_functions.get(f))
                    passed = not failing
                    cell_status = "passed" if passed else "failed"
                    cell_message = "" if passed else (
                        "the hidden tests of " + ", ".join(failing) + " failed")
            grades.append(CellGrade(submission.student, submission.assignment, spec.name,
                                    test.grade_id, "visible", test.points,
                                    test.points if passed else 0.0, cell_status, cell_message,
                                    round(outcome.seconds, 3)))
    return grades


def grade_submissions(items: Iterable[tuple[Submission, NotebookSpec]], *,
                      timeout: float = DEFAULT_TIMEOUT,
                      cell_timeout: float = DEFAULT_CELL_TIMEOUT,
                      preload: Sequence[str | Path] = (), jobs: int | None = None,
                      python: str | None = None) -> list[CellGrade]:
    """Grade many submitted notebooks; all their children share one pool of ``jobs`` workers.

    A submission whose children hang, crash or cheat gets zeros for those tests; it never
    stops the others.
    """
    paths = _preloaded(preload)
    work = [(sub, spec, plan(sub, spec, preload=paths, cell_timeout=cell_timeout))
            for sub, spec in items]
    flat = [job for _, _, js in work for job in js]
    workers = max(1, jobs or os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        outcomes = list(pool.map(lambda j: run_child(j, timeout=timeout, python=python), flat))
    grades: list[CellGrade] = []
    index = 0
    for sub, spec, js in work:
        grades.extend(assemble(sub, spec, outcomes[index:index + len(js)]))
        index += len(js)
    return grades


def grade_notebook(source: str | Path, submission: str | Path, *, student: str = "student",
                   assignment: str = "", **kwargs: Any) -> list[CellGrade]:
    """Grade one submitted notebook against its instructor source notebook."""
    spec = parse_source(source)
    sub = Submission(student, assignment or Path(source).parent.name, Path(submission))
    return grade_submissions([(sub, spec)], **kwargs)


# --------------------------------------------------------------------------- recording
CSV_FIELDS = [f for f in CellGrade.__dataclass_fields__]


def write_csv(grades: Sequence[CellGrade], path: str | Path) -> Path:
    """Write one row per graded cell (student, assignment, notebook, grade_id, score, ...)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for grade in grades:
            writer.writerow(asdict(grade))
    return path


def record_in_gradebook(grades: Sequence[CellGrade], db_url: str) -> int:
    """Write the trusted scores as the ``auto_score`` of those grade cells in nbgrader's gradebook.

    Students and submissions that ``nbgrader autograde`` could not record (a crashed kernel,
    a duplicated answer cell) are created, so ``nbgrader export`` lists every student.
    Returns the number of grades written.
    """
    from nbgrader.api import Gradebook, MissingEntry

    written = 0
    with Gradebook(db_url) as gb:
        for grade in grades:
            try:
                gb.find_submission(grade.assignment, grade.student)
            except MissingEntry:
                try:
                    gb.find_assignment(grade.assignment)
                except MissingEntry:
                    raise MissingEntry(f"assignment {grade.assignment!r} is not in the gradebook "
                                       "(release it first)") from None
                gb.update_or_create_student(grade.student)
                gb.add_submission(grade.assignment, grade.student)
            try:
                row = gb.find_grade(grade.grade_id, grade.notebook, grade.assignment,
                                    grade.student)
            except MissingEntry:
                continue
            row.auto_score = float(grade.score)
            row.needs_manual_grade = False
            written += 1
        gb.db.commit()
    return written
