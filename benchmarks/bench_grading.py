"""Throughput of grading: the sandboxed trusted grader vs plain ``nbgrader autograde``.

Simulates a class of submissions of the whole collection (every assignment in solutions/):
students cycle through correct, partially wrong (the last exercise's sign flipped), broken
(the untouched student notebook) and adversarial (pgcheck monkeypatched and an IPython input
transformer that turns every later test cell into ``pass``). Both graders grade the same
submissions in the same temporary course; reported: seconds per submission (one student's
whole collection), the CPU seconds of the grading processes and their children (robust to
load), and the projected total for 100 students on this machine. ``--skip-plain`` leaves
out plain nbgrader (it executes the submissions with your rights).

    .venv/bin/python benchmarks/bench_grading.py --quick     # 4 students (one of each kind)
    .venv/bin/python benchmarks/bench_grading.py --students 8
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fixtures"))

from course_tools import (  # noqa: E402
    REPO,
    Assignment,
    answer_cells,
    gradebook_scores,
    make_course,
    nbgrader,
    pgrade,
    read,
    submit,
    total,
    with_sign_error,
)

from pgcheck.grading.spec import assignment_notebooks  # noqa: E402

ADVERSARIAL = """
import pgcheck
from pgcheck.checks.base import Check
from pgcheck.checks.registry import REGISTRY
from pgcheck.report import Report

def _always(*args, **kwargs):
    return Report(passed=True, verdict="correct", message="fine")

for _name in list(REGISTRY):
    REGISTRY[_name] = Check(_name, lambda fn, **options: {}, _always)

def _rewrite(lines):
    return ["pass\\n"] if any("assert" in l or "hidden_test" in l for l in lines) else lines

get_ipython().input_transformers_post.append(_rewrite)
"""
KINDS = ["correct", "partially_wrong", "broken", "adversarial"]


def _submissions(course: Path, name: str, students: list[str]) -> None:
    for index, student in enumerate(students):
        kind = KINDS[index % len(KINDS)]
        notebooks = {}
        for source in assignment_notebooks(course / "solutions" / name):
            solution = read(source)
            if kind == "correct":
                nb = solution
            elif kind == "partially_wrong":
                nb, _ = with_sign_error(solution)
            elif kind == "broken":
                nb = read(course / "notebooks" / name / source.name)
            else:
                nb = read(course / "notebooks" / name / source.name)
                first = answer_cells(nb)[0]
                first.source = first.source + "\n" + ADVERSARIAL
            notebooks[source.name] = nb
        submit(course, student, name, notebooks)


def _children_cpu() -> float:
    """CPU seconds (user + system) of every finished child process and its descendants."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    """Run the benchmark and print the figures (and JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="4 students, one of each kind")
    parser.add_argument(
        "--assignments",
        nargs="*",
        default=None,
        help="assignment names (default: every folder in solutions/)",
    )
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", default=None, help="also write the figures here")
    parser.add_argument("--skip-plain", action="store_true", help="no plain nbgrader run")
    args = parser.parse_args()
    n_students = 4 if args.quick else args.students
    names = args.assignments or sorted(
        p.name for p in (REPO / "solutions").iterdir() if p.is_dir() and any(p.glob("*.ipynb"))
    )
    students = [f"s{i:03d}_{KINDS[i % len(KINDS)]}" for i in range(n_students)]
    figures: dict[str, object] = {
        "students": n_students,
        "assignments": names,
        "cpus": os.cpu_count(),
        "jobs": args.jobs,
    }
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        course = Path(tmp) / "course_root"
        for name in names:
            make_course(course, Assignment(name, REPO))
        t0 = time.perf_counter()
        result = pgrade(["release", *names], course)
        if result.returncode != 0:
            raise SystemExit(result.stderr[-3000:])
        figures["release_s"] = round(time.perf_counter() - t0, 1)
        for name in names:
            _submissions(course, name, students)
        plain = plain_cpu = 0.0
        plain_scores: dict[str, dict] = {n: {} for n in names}
        if not args.skip_plain:
            t0, c0 = time.perf_counter(), _children_cpu()
            for name in names:
                nbgrader(["autograde", name], course)
            plain, plain_cpu = time.perf_counter() - t0, _children_cpu() - c0
            plain_scores = {n: gradebook_scores(course, n) for n in names}
        t0, c0 = time.perf_counter(), _children_cpu()
        for name in names:
            result = pgrade(
                ["autograde", name, "--skip-nbgrader", "--jobs", str(args.jobs)], course
            )
            if result.returncode != 0:
                raise SystemExit(result.stderr[-3000:])
        trusted, trusted_cpu = time.perf_counter() - t0, _children_cpu() - c0
        trusted_scores = {n: gradebook_scores(course, n) for n in names}
    per = {"trusted_grader": trusted / n_students}
    if not args.skip_plain:
        per["nbgrader_autograde"] = plain / n_students
    figures["cpu_seconds_per_submission"] = {
        "trusted_grader": round(trusted_cpu / n_students, 2),
        "nbgrader_autograde": round(plain_cpu / n_students, 2),
    }
    figures["seconds_per_submission"] = {k: round(v, 2) for k, v in per.items()}
    figures["projected_100_students_min"] = {k: round(100 * v / 60, 1) for k, v in per.items()}
    figures["scores"] = {
        student: {
            "nbgrader": sum(total(plain_scores[n].get(student, {}))[0] for n in names),
            "trusted": sum(total(trusted_scores[n].get(student, {}))[0] for n in names),
            "max": sum(total(trusted_scores[n].get(student, {}))[1] for n in names),
        }
        for student in students
    }
    print(
        f"{n_students} students x {len(names)} assignments ({', '.join(names)}), "
        f"{os.cpu_count()} CPUs, trusted grader with {args.jobs} worker(s)"
    )
    print(f"{'':28}{'s / submission':>16}{'CPU-s / subm.':>16}{'100 students (min)':>20}")
    cpu = figures["cpu_seconds_per_submission"]
    for key, value in per.items():
        print(f"{key:28}{value:16.1f}{cpu[key]:16.1f}{100 * value / 60:20.1f}")  # type: ignore[index]
    print("scores (nbgrader in-kernel / trusted / max):")
    for student, s in figures["scores"].items():  # type: ignore[union-attr]
        print(f"  {student:24} {s['nbgrader']:6.1f} {s['trusted']:6.1f} {s['max']:6.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
