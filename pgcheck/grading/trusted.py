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
            steps.extend(
                {
                    "label": f"answer {step.label}" + (f" copy {i + 1}" if i else ""),
                    "sources": [src],
                }
                for i, src in enumerate(sources)
            )
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
    from pgcheck.checks.registry import REGISTRY
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


Task = tuple[str, Any]  # ("hidden", HiddenTest) or ("visible", VisibleTest)

#: seconds allowed for the child's interpreter start-up (imports) before its answer cells
STARTUP_ALLOWANCE = 30.0


def _task_json(kind: str, test: Any) -> dict[str, Any]:
    if kind == "hidden":
        return {
            "type": "measure",
            "check": test.check,
            "function": test.function_name,
            "options": repr(test.options),
        }
    return {
        "type": "visible",
        "grade_id": test.grade_id,
        "label": f"test {test.grade_id}",
        "source": test.source,
    }


def plan(
    submission: Submission,
    spec: NotebookSpec,
    *,
    preload: Sequence[str] = (),
    timeout: float = DEFAULT_TIMEOUT,
    cell_timeout: float = DEFAULT_CELL_TIMEOUT,
    isolation: str = "notebook",
) -> list[tuple[dict[str, Any], list[Task]]]:
    """The child jobs of one submitted notebook, each with the tests it answers for.

    ``isolation="notebook"``: one ``python -I`` child runs the answer cells once, then every
    test in its own forked process. ``isolation="test"``: one ``python -I`` child per test.
    """
    answers = student_answers(submission.path)
    steps = _steps(spec, answers)
    base = {
        "steps": steps,
        "preload": list(preload),
        "cell_timeout": cell_timeout,
        "task_timeout": timeout,
        "sys_path": [str(spec.path.parent.resolve())],
    }
    tasks: list[Task] = [("hidden", t) for t in spec.hidden] + [
        ("visible", v) for v in spec.visible
    ]
    groups = [tasks] if isolation == "notebook" else [[t] for t in tasks]
    return [
        (dict(base, tasks=[_task_json(kind, test) for kind, test in group]), group)
        for group in groups
        if group
    ]


def _limits(job: dict[str, Any]) -> tuple[float, float]:
    sources = sum(len(step["sources"]) for step in job["steps"])
    cells = STARTUP_ALLOWANCE + job["cell_timeout"] * max(sources, 1)
    tasks = 5.0 + (job["task_timeout"] + 5.0) * len(job["tasks"])
    return cells, tasks


def _task_results(outcome: ChildOutcome, count: int) -> list[tuple[dict[str, Any], float]]:
    """One result dict per task of a job, whatever happened to the child."""
    if outcome.status != "ok":
        failure = {"status": outcome.status, "message": outcome.detail}
        return [(failure, outcome.seconds)] * count
    payload = outcome.payload
    if payload.get("status") != "ok":
        failure = {
            "status": str(payload.get("status", "bad-output")),
            "message": str(payload.get("message", ""))[:500],
        }
        return [(failure, outcome.seconds)] * count
    results = payload.get("tasks")
    if not isinstance(results, list) or len(results) != count:
        return [
            ({"status": "bad-output", "message": "wrong number of results"}, outcome.seconds)
        ] * count
    return [
        (r if isinstance(r, dict) else {"status": "bad-output"}, outcome.seconds) for r in results
    ]


def assemble(
    submission: Submission, spec: NotebookSpec, results: dict[str, tuple[dict[str, Any], float]]
) -> list[CellGrade]:
    """Trusted cell grades from the task results (by grade_id) of one submitted notebook."""
    grades: list[CellGrade] = []
    passed_functions: dict[str, bool] = {}
    missing = ({"status": "crashed", "message": "not run"}, 0.0)

    def outcome(grade_id: str) -> tuple[dict[str, Any], str, str, float]:
        result, seconds = results.get(grade_id, missing)
        return (
            result,
            str(result.get("status", "bad-output")),
            str(result.get("message", ""))[:500],
            seconds,
        )

    def cell(
        test: Any, kind: str, passed: bool, status: str, message: str, seconds: float
    ) -> CellGrade:
        return CellGrade(
            submission.student,
            submission.assignment,
            spec.name,
            test.grade_id,
            kind,
            test.points,
            test.points if passed else 0.0,
            status,
            message,
            round(seconds, 3),
        )

    for test in spec.hidden:
        result, status, message, seconds = outcome(test.grade_id)
        passed = False
        if status == "ok":
            passed, message = _judge(test.check, result, test.options)
            status = "passed" if passed else "failed"
        passed_functions[test.function_name] = (
            passed_functions.get(test.function_name, True) and passed
        )
        grades.append(cell(test, "hidden", passed, status, message, seconds))
    for test in spec.visible:
        result, status, message, seconds = outcome(test.grade_id)
        passed = False
        if status == "ok":
            if result.get("error") is not None:
                status, message = "failed", f"raised {result.get('error')}"
            elif result.get("stderr") is not False:
                status, message = "failed", "wrote to stderr"
            else:
                failing = sorted(f for f in test.functions if not passed_functions.get(f))
                passed = not failing
                status = "passed" if passed else "failed"
                message = (
                    "" if passed else ("the hidden tests of " + ", ".join(failing) + " failed")
                )
        grades.append(cell(test, "visible", passed, status, message, seconds))
    return grades


def grade_submissions(
    items: Iterable[tuple[Submission, NotebookSpec]],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    cell_timeout: float = DEFAULT_CELL_TIMEOUT,
    preload: Sequence[str | Path] = (),
    jobs: int | None = None,
    isolation: str = "notebook",
    python: str | None = None,
) -> list[CellGrade]:
    """Grade many submitted notebooks; all their children share one pool of ``jobs`` workers.

    Args:
        items: (submission, parsed source notebook) pairs.
        timeout: seconds per test (hidden test or visible test cell).
        cell_timeout: seconds per answer or setup cell.
        preload: trusted Python files that register extra checks (parent and children).
        jobs: children run at once (default: the number of CPUs).
        isolation: ``"notebook"`` (one interpreter per notebook, a fork per test) or
            ``"test"`` (one interpreter per test).
        python: the children's interpreter (default: this one).

    A submission whose children hang, crash or cheat gets zeros for those tests; it never
    stops the others.
    """
    if isolation not in ("notebook", "test"):
        raise ValueError(f"isolation must be 'notebook' or 'test', not {isolation!r}")
    paths = _preloaded(preload)
    work = [
        (
            sub,
            spec,
            plan(
                sub,
                spec,
                preload=paths,
                timeout=timeout,
                cell_timeout=cell_timeout,
                isolation=isolation,
            ),
        )
        for sub, spec in items
    ]
    flat = [job for _, _, jobs_ in work for job, _ in jobs_]

    def one(job: dict[str, Any]) -> ChildOutcome:
        cells, tasks = _limits(job)
        return run_child(job, cells_limit=cells, tasks_limit=tasks, python=python)

    workers = max(1, jobs or os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        outcomes = list(pool.map(one, flat))
    grades: list[CellGrade] = []
    index = 0
    for sub, spec, jobs_ in work:
        results: dict[str, tuple[dict[str, Any], float]] = {}
        for (_, tasks), outcome in zip(jobs_, outcomes[index : index + len(jobs_)], strict=True):
            for (_, test), result in zip(tasks, _task_results(outcome, len(tasks)), strict=True):
                results[test.grade_id] = result
        index += len(jobs_)
        grades.extend(assemble(sub, spec, results))
    return grades


def grade_notebook(
    source: str | Path,
    submission: str | Path,
    *,
    student: str = "student",
    assignment: str = "",
    **kwargs: Any,
) -> list[CellGrade]:
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
                    raise MissingEntry(
                        f"assignment {grade.assignment!r} is not in the gradebook "
                        "(release it first)"
                    ) from None
                gb.update_or_create_student(grade.student)
                gb.add_submission(grade.assignment, grade.student)
            try:
                row = gb.find_grade(grade.grade_id, grade.notebook, grade.assignment, grade.student)
            except MissingEntry:
                continue
            row.auto_score = float(grade.score)
            row.needs_manual_grade = False
            written += 1
        gb.db.commit()
    return written
